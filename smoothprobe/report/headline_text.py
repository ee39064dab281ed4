"""The report's words: the opening paragraph and the key-number cards, from ``headline_numbers``."""

from __future__ import annotations

from typing import Any

from smoothprobe.report.format import fmt_num, short_label


def _times(iv: dict[str, Any]) -> str:
    v = iv["value"]
    if v is None:
        return "—"
    return f"{fmt_num(v)}× smaller" if v >= 1 else f"{fmt_num(1 / v)}× larger"


def _bracket(iv: dict[str, Any], unit: str = "×") -> str:
    low = fmt_num(iv["low"]) if iv["low"] is not None else "—"
    high = fmt_num(iv["high"]) if iv["high"] is not None else "∞"
    return f"{low}–{high}{unit}"


def _ends(iv: dict[str, Any]) -> str:
    low, high = short_label(iv["low_label"]), short_label(iv["high_label"])
    return f"both ends {low}" if low == high else f"ends: {low} / {high}"


def _loose(iv: dict[str, Any]) -> bool:
    return (
        iv["value"] is not None and iv["low"] is not None and iv["value"] < iv["low"] * (1 - 1e-9)
    )


def headline_text(numbers: dict[str, Any]) -> str:
    """The report's opening paragraph, from ``compare.headline_numbers`` (Markdown, ** = bold).

    Every number in the paragraph is ``fmt_num`` of a value in ``numbers``; the ratio
    "X× smaller" prints ``advantage.value`` when it is ≥ 1 and its reciprocal as "× larger"
    otherwise.

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
    if adv is not None:
        parts.append(
            f"In the ℓ∞ geometry this checkpoint's constant is **{_times(adv)}** than d·L₂ "
            f"(‖H‖₁,₁ = {fmt_num(linf['value'])} vs d·L₂ = {fmt_num(dl2['value'])}; true ratio "
            f"d·L₂/H∞ in {_bracket(adv)}, {_ends(adv)})"
            + ("; ‖H‖₁,₁ is loose here, since H∞ ≤ d·L₂ always" if _loose(adv) else "")
            + ("." if rot is None else ";")
        )
        if rot is not None:
            parts.append(
                f"rotated ({numbers['rotated_basis']}), it is **{_times(rot)}** "
                f"(true ratio in {_bracket(rot)}, {_ends(rot)}"
                + ("; ‖H‖₁,₁ is loose there, since H∞ ≤ d·L₂ always" if _loose(rot) else "")
                + ")"
                + "."
            )
        adam = (
            "Adam's predicted advantage over SGD (T_SGD/T_Adam = d·L₂/H∞, MATH.md §5) is "
            f"therefore **{fmt_num(adv['value'])}×** in the original basis"
        )
        if rot is not None and cost is not None:
            adam += (
                f" and **{fmt_num(rot['value'])}×** after rotation: rotation is predicted to "
                f"slow Adam by **{fmt_num(cost['value'])}×** (H∞ rotated/original in "
                f"{_bracket(cost)}, {_ends(cost)}) and to leave SGD unchanged."
            )
        else:
            adam += "."
        parts.append(adam)
    elif dl2 is not None:
        parts.append(
            f"d·L₂ = {fmt_num(dl2['value'])} ({_bracket(dl2, '')}); no ℓ∞ records, so Adam's "
            "predicted advantage cannot be stated."
        )
    elif linf is not None:
        parts.append(
            f"H∞ lies in {_bracket(linf, '')} ({_ends(linf)}), but no ℓ2 record (L₂) was "
            "measured, so ρ and the predicted advantage cannot be stated."
        )
    if numbers["blockwise"]:
        items = [
            f"{fmt_num(v['value'])}× for {v['optimizer']} (Φ = {p}; "
            + (f"U(Φ) loose, true ratio {_bracket(v)})" if _loose(v) else f"{_bracket(v)})")
            for p, v in numbers["blockwise"].items()
        ]
        parts.append("Blockwise, d·L₂/H(Φ) is " + ", ".join(items) + ".")
    noise = numbers.get("noise")
    if noise is not None:
        r = noise["ratio"]
        batch = f" at batch size {noise['batch_size']}" if noise["batch_size"] is not None else ""
        parts.append(
            f"Gradient noise{batch}: ‖σ‖₁ = {fmt_num(r['value'])} × √d·‖σ‖₂ "
            f"({_bracket(r, '')}, {_ends(r)}): Adam's noise term is that fraction of SGD's "
            "(structure only)."
        )
    parts.append(
        "Point values use the upper-bound surrogates ‖H‖₁,₁ and U(Φ) as the seed paper does; "
        "the seed paper's β₂/ε constants for Adam itself are not reproduced (structure only)."
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
    if adv is not None:
        items.append(_item("Adam's predicted advantage T_SGD/T_Adam = d·L₂/H∞", adv))
    if rot is not None:
        items.append(_item(f"the same after rotation ({numbers['rotated_basis']})", rot))
    if cost is not None:
        items.append(_item("rotation slows Adam by (H∞ rotated / original)", cost))
    if numbers["dl2"] is not None:
        items.append(_item("d·L₂ (SGD's constant on the ℓ1 yardstick)", numbers["dl2"], unit=""))
    return items


def _item(what: str, iv: dict[str, Any], *, unit: str = "×") -> dict[str, str]:
    return {
        "what": what,
        "value": f"{fmt_num(iv['value'])}{unit}",
        "bracket": _bracket(iv, unit),
        "ends": _ends(iv),
    }
