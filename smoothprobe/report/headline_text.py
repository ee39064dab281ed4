"""The report's words: the opening paragraph and the key-number cards, from ``headline_numbers``."""

from __future__ import annotations

from typing import Any

from smoothprobe.report.format import fmt_num, short_label

THEORY = "docs/theory.md"


def _bracket(iv: dict[str, Any], unit: str = "×") -> str:
    low = fmt_num(iv["low"]) if iv["low"] is not None else "0"
    high = fmt_num(iv["high"]) if iv["high"] is not None else "∞"
    return f"[{low}{unit}, {high}{unit}]" if unit else f"[{low}, {high}]"


def _ends(iv: dict[str, Any]) -> str:
    low, high = short_label(iv["low_label"]), short_label(iv["high_label"])
    return f"both ends {low}" if low == high else f"ends: {low} / {high}"


def _where(numbers: dict[str, Any], basis: str) -> str:
    if basis == numbers["basis"] and numbers.get("basis_is_identity"):
        return "in the original basis"
    return f"in basis `{basis}`"


def _surrogate_words(numbers: dict[str, Any], basis: str, adv: dict[str, Any]) -> str:
    """The ‖H‖₁,₁ surrogate's reading, or why it says nothing in this basis."""
    s = numbers.get("surrogate", {}).get(basis)
    if not s or s["l11"] is None or s["dl2"] is None:
        return ""
    l11, dl2 = s["l11"], s["dl2"]
    if l11 >= dl2:
        return (
            f"; here ‖H‖₁,₁ = {fmt_num(l11)} ≥ d·L₂ = {fmt_num(dl2)}, so the ‖H‖₁,₁ surrogate "
            f"says nothing about H∞ (the seed paper's convention ‖H‖₁,₁/(d·L₂) = "
            f"{fmt_num(l11 / dl2)} is shown as such, not as a prediction)"
        )
    note = str(s.get("note") or "")
    for moved, end, other in (("lowered to the upper", "upper", "lower"),
                              ("raised to the lower", "lower", "upper")):  # fmt: skip
        if moved in note:
            return (
                f"; the ‖H‖₁,₁ surrogate (‖H‖₁,₁ = {fmt_num(l11)}, d·L₂ = {fmt_num(dl2)}) lies "
                f"outside what the records prove for H∞, so H∞'s point value is its {end} end "
                f"and the advantage's is its {other} end, {fmt_num(adv['value'])}×"
            )
    return (
        f"; the ‖H‖₁,₁ surrogate (capped at d·L₂) gives {fmt_num(adv['value'])}× "
        f"(‖H‖₁,₁ = {fmt_num(l11)}, d·L₂ = {fmt_num(dl2)})"
    )


def headline_text(numbers: dict[str, Any]) -> str:
    """The report's opening paragraph, from ``compare.headline_numbers`` (Markdown, ** = bold).

    It leads with the proven brackets (each end labelled), then names the surrogate point value
    (‖H‖₁,₁ capped at d·L₂, always inside the bracket) or says in words that it is uninformative
    (‖H‖₁,₁ ≥ d·L₂). Basis wording follows the bases actually measured.

    Args:
        numbers: the dict returned by ``compare.headline_numbers``.

    Returns:
        One paragraph of Markdown text.
    """
    if numbers.get("checkpoint") is None:
        return "These records contain no measurements."
    where = f"Checkpoint `{numbers['checkpoint']}`"
    details = []
    if numbers.get("step") is not None:
        details.append(f"step {numbers['step']}")
    if numbers.get("d") is not None:
        details.append(f"d = {numbers['d']}")
    if details:
        where += f" ({', '.join(details)})"
    parts = [where + "."]
    adv, rot, cost = numbers["advantage"], numbers["rotated_advantage"], numbers["rotation_cost"]
    linf, dl2 = numbers["linf"], numbers["dl2"]
    original, rotated = numbers["basis"], numbers.get("rotated_basis")
    if adv is not None:
        parts.append(
            f"Adam's predicted advantage over SGD, T_SGD/T_Adam = d·L₂/H∞ ({THEORY}), lies in "
            f"**{_bracket(adv)}** {_where(numbers, original)} ({_ends(adv)})"
            + _surrogate_words(numbers, original, adv)
            + "."
        )
        if rot is not None:
            parts.append(
                f"{_where(numbers, rotated).capitalize()} it lies in **{_bracket(rot)}** "
                f"({_ends(rot)})" + _surrogate_words(numbers, rotated, rot) + "."
            )
        if rot is not None and cost is not None:
            change = f"H∞ {_where(numbers, rotated)} over H∞ {_where(numbers, original)}"
            if cost["low"] is not None and cost["low"] > 1:
                verdict = (
                    "so rotation is predicted to slow Adam by that factor and to leave SGD "
                    "unchanged (L₂ is rotation invariant)"
                )
            elif cost["high"] is not None and cost["high"] < 1:
                verdict = "so rotation is predicted to speed Adam up by that factor"
            else:
                verdict = (
                    "which contains 1: these bounds do not resolve whether rotation slows Adam"
                )
            parts.append(
                f"The ratio {change} lies in **{_bracket(cost)}** ({_ends(cost)}), {verdict}."
            )
    elif dl2 is not None:
        parts.append(
            f"d·L₂ lies in {_bracket(dl2, '')} ({_ends(dl2)}); no ℓ∞ records, so Adam's "
            "predicted advantage cannot be stated."
        )
    elif linf is not None:
        parts.append(
            f"H∞ {_where(numbers, original)} lies in {_bracket(linf, '')} ({_ends(linf)}), but "
            "no ℓ2 record (L₂) was "
            "measured, so ρ and the predicted advantage cannot be stated."
        )
    if numbers["blockwise"]:
        items = [
            f"{_bracket(v)} for {v['optimizer']} (Φ = {p})" for p, v in numbers["blockwise"].items()
        ]
        parts.append(
            f"Blockwise {_where(numbers, original)}, d·L₂/H(Φ) lies in " + ", ".join(items) + "."
        )
    noise = numbers.get("noise")
    if noise is not None:
        r = noise["ratio"]
        batch = f" at batch size {noise['batch_size']}" if noise["batch_size"] is not None else ""
        parts.append(
            f"Gradient noise{batch}: ‖σ‖₁/(√d·‖σ‖₂) lies in {_bracket(r, '')} ({_ends(r)}): "
            "Adam's noise term is that fraction of SGD's (structure only)."
        )
    parts.append(
        "Brackets are what the measurements prove (each end says whether it is certified, "
        "statistical with its level, or probabilistic); point values are surrogates capped at "
        "d·L₂ and never outside their bracket. The seed paper's β₂/ε constants for Adam itself "
        f"are not reproduced (structure only). Definitions: {THEORY}."
    )
    if numbers["missing"]:
        parts.append("Not measured: " + "; ".join(numbers["missing"]) + ".")
    return " ".join(parts)


def key_numbers(numbers: dict[str, Any]) -> list[dict[str, str]]:
    """The headline's main numbers as display items (what, value, bracket, ends) for cards.

    Args:
        numbers: the dict returned by ``compare.headline_numbers``.

    Returns:
        Up to four items, each with keys ``what``, ``value``, ``bracket`` and ``ends``.
    """
    items = []
    adv, rot, cost = numbers["advantage"], numbers["rotated_advantage"], numbers["rotation_cost"]
    original = "original basis" if numbers.get("basis_is_identity") else numbers["basis"]
    rotated = numbers.get("rotated_basis")
    if adv is not None:
        items.append(
            _item(f"Adam's predicted advantage d·L₂/H∞ ({original})", adv, _note(numbers, None))
        )
    if rot is not None:
        items.append(_item(f"the same in basis {rotated}", rot, _note(numbers, rotated)))
    if cost is not None:
        items.append(
            _item(f"H∞ {rotated} / H∞ {original}", cost, "ratio of the two H∞ point values")
        )
    if numbers["dl2"] is not None:
        items.append(
            _item("d·L₂ (SGD's constant on the ℓ1 yardstick)", numbers["dl2"], "point", unit="")
        )
    return items


def _note(numbers: dict[str, Any], basis: str | None) -> str:
    """What the point value is: the H∞ bracket's own note (capped at d·L₂, or moved to an end
    of the bracket such as the SDP upper bound), flattened to one parenthesis."""
    s = numbers.get("surrogate", {}).get(basis or numbers["basis"])
    if s and s["l11"] is not None and s["dl2"] is not None and s["l11"] >= s["dl2"]:
        return "none: ‖H‖₁,₁ ≥ d·L₂"
    note = (s or {}).get("note") or "‖H‖₁,₁ surrogate (capped at d·L₂)"
    head, _, rest = str(note).partition(" (")
    return f"{head}, {rest.removesuffix(')')}" if rest else head


def _item(what: str, iv: dict[str, Any], note: str, *, unit: str = "×") -> dict[str, str]:
    value = f"{fmt_num(iv['value'])}{unit} ({note})" if not note.startswith("none") else note
    return {
        "what": what,
        "value": value,
        "bracket": _bracket(iv, unit),
        "ends": _ends(iv),
    }
