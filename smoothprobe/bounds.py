"""The comparison of MATH.md §5: from records to ρ(Φ), predicted iteration ratios and noise terms.

Every function here is pure: it takes a records DataFrame (``load_records``) and returns a tidy
DataFrame (or a dict), one row per checkpoint × basis × geometry/partition. Every number carries
an interval whose ends are labelled with the kind of bound they inherit (see ``interval.Kind``):

- H∞ ∈ [linf_lower, ‖H‖₁,₁]: the lower end is certified (sign ascent), the upper end is whatever
  the ``l11_norm`` record is (exact on a dense Hessian, a statistical confidence limit otherwise).
- H(Φ) ∈ [block_lower, block_upper] likewise; both are also capped by d·L₂ (H(Φ) ≤ d·L₂ for
  every Φ, MATH.md §2) and raised to L₂ (H(Φ) ≥ L₂).
- L₂ from ``l2_norm`` (fallbacks: λ_max/λ_min, then d_l2/d). A Ritz value is a Rayleigh quotient,
  so |θ| ≤ L₂ is certified; the upper end θ + residual holds when Lanczos found the extreme
  eigenpair (kind ``residual``). L₂ is rotation invariant: a basis without its own ℓ2 record
  borrows the checkpoint's identity-basis value (the ``source`` column says so).
- The point value of H∞ / H(Φ) is the upper-bound surrogate (‖H‖₁,₁ / U(Φ)), as in the seed paper,
  so ρ̂ = ‖H‖₁,₁/(d·L₂) is the paper's number; the interval brackets the true ρ(Φ) ≤ 1.

Predicted iteration ratios T_Φ/T_SGD equal ρ(Φ) (MATH.md §5, steepest descent in ‖·‖_Φ); for
Adam and its blockwise relatives the seed paper's theorem adds β₂/ε terms that are not reproduced
here, so those rows say "structure only".

Record conventions read here (anything absent is skipped): quantities ``l2_norm``,
``lambda_max``, ``lambda_min``, ``d_l2`` (residual in ``extra["residual"]``), ``l11_norm``,
``linf_lower``, ``block_upper``, ``block_lower`` (partition column), ``noise_l1``,
``noise_l2_sqrtd``, ``noise_block``, ``snr`` (batch size in ``settings["batch_size"]`` or the
``batch_size`` column).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from statistics import NormalDist
from typing import Any

import pandas as pd

from smoothprobe.interval import Interval, Kind, weaker
from smoothprobe.records import RECORD_COLUMNS

PARTITION_ORDER = ("singleton", "row", "head", "tensor", "layer", "one")
OPTIMIZER_FOR_PARTITION = {
    "singleton": "Adam",
    "row": "Adam-mini (neurons)",
    "head": "Adam-mini (heads)",
    "tensor": "per-tensor Adam",
    "layer": "Adalayer",
    "one": "AdaSGD",
}
STRUCTURE_ONLY = "structure only"
THEORY_NOTE = (
    "T_Φ/T_SGD = ρ(Φ) from the steepest-descent bound of MATH.md §5; the seed paper's Adam "
    "theorem has the same structure plus β₂/ε terms whose constants are not reproduced here "
    "(structure only)."
)
L2_QUANTITIES = ("l2_norm", "lambda_max", "lambda_min", "d_l2")
RESIDUAL_KEYS = ("residual", "ritz_residual")
NOISE_TERMS = {
    "noise_l1": "‖σ‖₁",
    "noise_l2_sqrtd": "√d·‖σ‖₂",
    "noise_block": "Σ_b √d_b·‖σ_b‖₂",
    "snr": "SNR",
    "snr_l1": "SNR ‖g‖₁/‖σ‖₁",
    "snr_l2": "SNR ‖g‖₂/‖σ‖₂",
    "snr_block": "SNR ‖g‖_Φ*/Σ_b √d_b·‖σ_b‖₂",
}
_SNR = ("snr", "snr_l1", "snr_l2", "snr_block")
_NOISE_PARTITION = {
    "noise_l1": "singleton",
    "snr_l1": "singleton",
    "noise_l2_sqrtd": "one",
    "snr_l2": "one",
}
_NORMALIZED = "smoothprobe_normalized"
_RECORD_FIELDS = [
    "basis",
    "partition",
    "d",
    "quantity",
    "value",
    "bound",
    "stderr",
    "ci_low",
    "ci_high",
    "confidence",
    "extra",
]
_NUMERIC = ("value", "stderr", "ci_low", "ci_high", "confidence", "d", "step", "batch_size")


# ----------------------------------------------------------------------------- records → frame


def normalize_records(frame: pd.DataFrame) -> pd.DataFrame:
    """Returns a copy with every record column present and defaults filled in.

    Basis defaults to ``"identity"``, partition to ``"one"`` for ℓ2 and ``"singleton"`` for ℓ∞
    records, ``settings``/``extra`` to ``{}``; numeric columns become floats (NaN when absent).

    Args:
        frame: records as loaded by ``load_records`` (or built from ``make_record`` dicts).

    Returns:
        The normalized DataFrame (index reset).
    """
    if frame.attrs.get(_NORMALIZED):
        return frame
    out = frame.copy().reset_index(drop=True)
    for col in RECORD_COLUMNS:
        if col not in out.columns:
            out[col] = None
    for col in _NUMERIC:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    out["quantity"] = out["quantity"].fillna("").astype(str)
    out["geometry"] = out["geometry"].fillna("").astype(str)
    out["checkpoint"] = [c if isinstance(c, str) and c else "(unnamed)" for c in out["checkpoint"]]
    out["basis"] = [b if isinstance(b, str) and b else "identity" for b in out["basis"]]
    out["bound"] = [b if isinstance(b, str) and b else "estimate" for b in out["bound"]]
    for col in ("settings", "extra"):
        out[col] = [x if isinstance(x, dict) else {} for x in out[col]]
    out["partition"] = [
        p if isinstance(p, str) and p else {"l2": "one", "linf": "singleton"}.get(g, "")
        for p, g in zip(out["partition"], out["geometry"], strict=True)
    ]
    out.attrs[_NORMALIZED] = True  # selections keep it (pandas propagates attrs)
    return out


def checkpoint_order(frame: pd.DataFrame) -> list[tuple[str, float]]:
    """Returns the (checkpoint, step) pairs in training order; the last one is the latest.

    Pairs with a step come after those without, sorted by step; ties keep their first appearance.
    """
    frame = normalize_records(frame)
    seen: dict[tuple[str, float], int] = {}
    for i, (c, s) in enumerate(zip(frame["checkpoint"], frame["step"], strict=True)):
        key = (c, step_key(s))
        seen.setdefault(key, i)
    return sorted(seen, key=lambda k: (not math.isnan(k[1]), _nan_to(k[1], -math.inf), seen[k]))


def basis_order(bases: Sequence[str]) -> list[str]:
    """Orders basis names: ``identity`` first, the rest by first appearance."""
    unique = list(dict.fromkeys(bases))
    return sorted(unique, key=lambda b: b != "identity")


def partition_order(partitions: Sequence[str]) -> list[str]:
    """Orders partitions from finest to coarsest (singleton … layer, custom ones, then one)."""
    unique = list(dict.fromkeys(p for p in partitions if p))

    def key(p: str) -> tuple[int, str]:
        if p in PARTITION_ORDER:
            rank = PARTITION_ORDER.index(p)
            return (rank if p != "one" else len(PARTITION_ORDER) + 1, p)
        return (len(PARTITION_ORDER), p)

    return sorted(unique, key=key)


def select_checkpoint(
    frame: pd.DataFrame, checkpoint: str | None = None, step: float | None = None
) -> pd.DataFrame:
    """Returns the normalized records of one checkpoint (the latest when none is named).

    Args:
        frame: records.
        checkpoint: checkpoint name; ``None`` picks the latest (see ``checkpoint_order``).
        step: the step, when one checkpoint name was measured at several steps (``None``: the
            latest of them; NaN: the records without a step).

    Returns:
        The matching records (empty when there are none).
    """
    frame = normalize_records(frame)
    if frame.empty:
        return frame
    if checkpoint is None:
        checkpoint, step = checkpoint_order(frame)[-1]
    elif step is None:  # the latest step measured under that name
        steps = [s for c, s in checkpoint_order(frame) if c == checkpoint]
        step = steps[-1] if steps else None
    mask = frame["checkpoint"] == checkpoint
    if step is not None and not (isinstance(step, float) and math.isnan(step)):
        mask &= frame["step"] == float(step)
    elif step is not None:
        mask &= frame["step"].isna()
    return frame[mask]


def _runs(frame: pd.DataFrame) -> Iterator[tuple[str, float, pd.DataFrame]]:
    """Yields (checkpoint, step, records) per checkpoint in training order."""
    for checkpoint, step in checkpoint_order(frame):
        yield checkpoint, step, select_checkpoint(frame, checkpoint, step)


def step_key(step: Any) -> float:
    """Returns a step as a float (NaN when absent), the form tables compare on."""
    try:
        value = float(step)
    except (TypeError, ValueError):
        return math.nan
    return math.nan if math.isnan(value) else value  # one NaN object: usable as a dict key


def _nan_to(x: float, fill: float) -> float:
    return fill if math.isnan(x) else x


def _step_out(step: float) -> int | None:
    return None if math.isnan(step) else int(step)


# ------------------------------------------------------------------------- record → interval


def record_interval(record: Mapping[str, Any]) -> Interval:
    """Turns one record into an Interval for the quantity it measured.

    Rules: ``exact`` → [v, v]; ``lower`` → [v, ci_high or ∞); ``upper`` → [ci_low or 0, v];
    ``estimate`` → its confidence interval, else v ± z·stderr, else a point without error bar.
    ℓ2 quantities with ``extra["residual"]`` r (a Ritz value θ) give [θ, θ + r] (θ certified
    by the Rayleigh quotient; the top holds when the extreme eigenpair was found), or
    [θ − r, θ] for ``lambda_min``; for ``d_l2`` the residual must already be scaled by d (as
    ``LanczosResult.to_estimates`` writes it).

    Args:
        record: a record dict or DataFrame row.

    Returns:
        The interval for the record's own quantity.
    """
    value = _float(record.get("value"))
    bound = record.get("bound") or "estimate"
    confidence = _float(record.get("confidence"))
    confidence = confidence if 0 < confidence < 1 else 0.95
    tail = (1.0 - confidence) / 2.0  # each end of an equal-tailed two-sided interval
    ci_low, ci_high = _float(record.get("ci_low")), _float(record.get("ci_high"))
    if bound == "exact":
        return Interval.exact(value)
    residual = _residual(record)
    if residual is not None and record.get("quantity") in L2_QUANTITIES:
        return _ritz_interval(record.get("quantity"), value, residual)
    if bound == "lower":
        if math.isfinite(ci_high):
            return Interval(value, value, ci_high, Kind.CERTIFIED, Kind.STATISTICAL, 0.0, tail)
        return Interval(value, value, math.inf, Kind.CERTIFIED, Kind.NONE)
    if bound == "upper":
        if math.isfinite(ci_low):
            return Interval(value, ci_low, value, Kind.STATISTICAL, Kind.CERTIFIED, tail, 0.0)
        return Interval(value, -math.inf, value, Kind.NONE, Kind.CERTIFIED)
    if math.isfinite(ci_low) and math.isfinite(ci_high):
        return Interval(value, ci_low, ci_high, Kind.STATISTICAL, Kind.STATISTICAL, tail, tail)
    stderr = _float(record.get("stderr"))
    if math.isfinite(stderr):
        z = NormalDist().inv_cdf(1.0 - tail)
        return Interval(
            value,
            value - z * stderr,
            value + z * stderr,
            Kind.STATISTICAL,
            Kind.STATISTICAL,
            tail,
            tail,
        )
    return Interval.point(value)


def _ritz_interval(quantity: str, value: float, residual: float) -> Interval:
    if quantity == "lambda_min":  # θ_min ≥ λ_min: the Ritz value is a certified upper end
        return Interval(value, value - residual, value, Kind.RESIDUAL, Kind.CERTIFIED)
    return Interval(value, value, value + residual, Kind.CERTIFIED, Kind.RESIDUAL)


def _residual(record: Mapping[str, Any]) -> float | None:
    extra = record.get("extra") or {}
    for key in RESIDUAL_KEYS:
        r = _float(extra.get(key)) if isinstance(extra, Mapping) else math.nan
        if math.isfinite(r) and r >= 0:
            return r
    return None


def _float(x: Any) -> float:
    try:
        return float(x) if x is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def combine_intervals(intervals: Sequence[Interval]) -> Interval | None:
    """Combines several measurements of one quantity into one interval.

    An exact measurement wins. Otherwise the narrowest interval (relative width; the later one
    on ties) is kept and tightened by every certified end of the others (the largest certified
    lower end, the smallest certified upper end). Statistical intervals are never intersected.

    Args:
        intervals: intervals for the same quantity.

    Returns:
        The combined interval, or None for an empty input.
    """
    if not intervals:
        return None
    exact = [iv for iv in intervals if iv.low_kind is Kind.EXACT and iv.high_kind is Kind.EXACT]
    if exact:
        return exact[-1]

    def width(iv: Interval) -> float:
        scale = abs(iv.value) if iv.value and math.isfinite(iv.value) else 1.0
        return (iv.high - iv.low) / scale

    best = min(reversed(intervals), key=width)
    for iv in intervals:
        if iv.low_kind is Kind.CERTIFIED:
            best = best.raise_low(iv.low, Kind.CERTIFIED)
        if iv.high_kind is Kind.CERTIFIED:
            best = best.cap_high(iv.high, Kind.CERTIFIED)
    return best


def _as_dicts(records: pd.DataFrame | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records with a value as plain dicts (only the columns the bounds read)."""
    if isinstance(records, pd.DataFrame):
        records = normalize_records(records)
        rows = records[records["value"].notna()]
        return rows[_RECORD_FIELDS].to_dict("records")
    return [r for r in records if not math.isnan(_float(r.get("value")))]


def quantity_interval(
    records: pd.DataFrame | list[dict[str, Any]], quantity: str
) -> Interval | None:
    """Returns the combined interval of one quantity among the given records (None if absent).

    Args:
        records: a records DataFrame, or record dicts.
        quantity: the quantity name.
    """
    rows = [r for r in _as_dicts(records) if r.get("quantity") == quantity]
    return combine_intervals([record_interval(r) for r in rows])


# --------------------------------------------------------------------------------- constants


def _abs_interval(iv: Interval) -> Interval:
    if iv.low >= 0:
        return iv
    if iv.high <= 0:
        return Interval(
            -iv.value, -iv.high, -iv.low, iv.high_kind, iv.low_kind, iv.high_alpha, iv.low_alpha
        )
    top = max(-iv.low, iv.high)
    top_kind, top_alpha = (
        (iv.low_kind, iv.low_alpha) if -iv.low >= iv.high else (iv.high_kind, iv.high_alpha)
    )
    return Interval(abs(iv.value), 0.0, top, Kind.NONE, top_kind, 0.0, top_alpha)


def _max_interval(a: Interval, b: Interval) -> Interval:
    low, low_kind, low_alpha = (
        (a.low, a.low_kind, a.low_alpha) if a.low >= b.low else (b.low, b.low_kind, b.low_alpha)
    )
    return Interval(
        max(a.value, b.value),
        low,
        max(a.high, b.high),
        low_kind,
        weaker(a.high_kind, b.high_kind),
        low_alpha,
        min(1.0, a.high_alpha + b.high_alpha),
    )


def l2_interval(
    records: pd.DataFrame | list[dict[str, Any]], d: float
) -> tuple[Interval, str] | None:
    """Returns L₂ = ‖H‖₂ as an interval and the quantity it came from.

    Args:
        records: records of one checkpoint and basis.
        d: number of parameters (used only for the ``d_l2`` fallback).

    Returns:
        (interval, source) or None when no ℓ2 quantity was measured.
    """
    records = _as_dicts(records)
    iv = quantity_interval(records, "l2_norm")
    if iv is not None:
        return _abs_interval(iv), "l2_norm"
    lam = [quantity_interval(records, q) for q in ("lambda_max", "lambda_min")]
    lam = [_abs_interval(x) for x in lam if x is not None]
    if lam:
        source = "lambda_max/lambda_min" if len(lam) == 2 else "lambda_max or lambda_min"
        out = lam[0] if len(lam) == 1 else _max_interval(*lam)
        if len(lam) == 1:  # one end of the spectrum only: max|λ| may be the other one
            out = Interval(out.value, out.low, math.inf, out.low_kind, Kind.NONE, out.low_alpha)
        return out, source
    iv = quantity_interval(records, "d_l2")
    if iv is not None and d > 0:
        return iv.scale(1.0 / d), "d_l2"
    return None


def _dimension(records: pd.DataFrame | list[dict[str, Any]]) -> float:
    values = records["d"] if isinstance(records, pd.DataFrame) else [r.get("d") for r in records]
    return next((float(x) for x in values if not math.isnan(_float(x))), math.nan)


def _interval_columns(iv: Interval | None, prefix: str = "") -> dict[str, Any]:
    if iv is None:
        iv = Interval(math.nan, math.nan, math.nan, Kind.NONE, Kind.NONE)
    return {
        f"{prefix}value": iv.value,
        f"{prefix}low": iv.low,
        f"{prefix}high": iv.high,
        f"{prefix}low_kind": iv.low_kind.value,
        f"{prefix}high_kind": iv.high_kind.value,
        f"{prefix}low_alpha": iv.low_alpha,
        f"{prefix}high_alpha": iv.high_alpha,
        f"{prefix}low_label": iv.low_label(),
        f"{prefix}high_label": iv.high_label(),
        f"{prefix}confidence": iv.confidence,
    }


def interval_from_row(row: Mapping[str, Any], prefix: str = "") -> Interval:
    """Rebuilds the Interval stored in a table row under ``prefix`` (inverse of the tables)."""
    return Interval(
        float(row[f"{prefix}value"]),
        float(row[f"{prefix}low"]),
        float(row[f"{prefix}high"]),
        Kind(row[f"{prefix}low_kind"]),
        Kind(row[f"{prefix}high_kind"]),
        float(row[f"{prefix}low_alpha"]),
        float(row[f"{prefix}high_alpha"]),
    )


def _bracket(
    lower: Interval | None,
    upper: Interval | None,
    l2: Interval | None,
    dl2: Interval | None,
) -> Interval:
    """H ∈ [lower bound's low end, upper bound's high end], capped by d·L₂ and raised to L₂."""
    low, low_kind, low_alpha = 0.0, Kind.NONE, 0.0
    high, high_kind, high_alpha = math.inf, Kind.NONE, 0.0
    if lower is not None:
        low, low_kind, low_alpha = lower.low, lower.low_kind, lower.low_alpha
    if upper is not None:
        high, high_kind, high_alpha = upper.high, upper.high_kind, upper.high_alpha
    value = upper.value if upper is not None else (lower.value if lower is not None else math.nan)
    iv = Interval(value, low, high, low_kind, high_kind, low_alpha, high_alpha)
    if dl2 is not None:
        iv = iv.cap_high(dl2.high, dl2.high_kind, alpha=dl2.high_alpha)
    if l2 is not None:
        iv = iv.raise_low(l2.low, l2.low_kind, alpha=l2.low_alpha)
    return iv


def _point_note(lower: Interval | None, upper: Interval | None, surrogate: str) -> str:
    if upper is not None:
        return f"{surrogate} (upper-bound surrogate)"
    if lower is not None:
        return "certified lower bound (no upper bound measured)"
    return ""


def constants_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The constants H(Φ) per checkpoint × basis × geometry/partition, with labelled intervals.

    Rows: ``d·L₂`` (geometry l2, partition one), ``H∞`` (linf, singleton) and ``H(Φ)`` for each
    blockwise partition; a row appears only when its records exist.

    Args:
        frame: records.

    Returns:
        DataFrame with columns checkpoint, step, basis, geometry, partition, constant, optimizer,
        d, source, point, then the interval: value, low, high, low_kind, high_kind, low_alpha,
        high_alpha, low_label, high_label, confidence.
    """
    rows: list[dict[str, Any]] = []
    frame = normalize_records(frame)
    if frame.empty:
        return pd.DataFrame(rows, columns=_CONSTANT_COLUMNS)
    for checkpoint, step, run_frame in _runs(frame):
        run = _as_dicts(run_frame)
        for basis in basis_order([r["basis"] for r in run]):
            recs = [r for r in run if r["basis"] == basis]
            d = _dimension(recs)
            d = _dimension(run) if math.isnan(d) else d
            found = l2_interval(recs, d)
            if found is None:  # L₂ is rotation invariant: borrow another basis's measurement
                found = _any_l2(run, d)
            l2, l2_source = found if found else (None, "")
            dl2 = l2.scale(d) if l2 is not None and d > 0 else None
            base = {"checkpoint": checkpoint, "step": _step_out(step), "basis": basis, "d": d}
            if dl2 is not None:
                rows.append(
                    {
                        **base,
                        "geometry": "l2",
                        "partition": "one",
                        "constant": "d·L₂",
                        "optimizer": "SGD",
                        "source": l2_source,
                        "point": "d·L₂",
                        **_interval_columns(dl2),
                    }
                )
            # H(singletons) = H∞: blockwise singleton records bound the same constant
            singleton = [r for r in recs if r["partition"] == "singleton"]
            lows = _pick(recs, "linf_lower") + _pick(singleton, "block_lower")
            ups = _pick(recs, "l11_norm") + _pick(singleton, "block_upper")
            if lows or ups:
                lower, upper = _combine_records(lows), _combine_records(ups)
                rows.append(
                    {
                        **base,
                        "geometry": "linf",
                        "partition": "singleton",
                        "constant": "H∞",
                        "optimizer": "Adam",
                        "source": _record_sources(lows + ups),
                        "point": _point_note(lower, upper, "‖H‖₁,₁"),
                        **_interval_columns(_bracket(lower, upper, l2, dl2)),
                    }
                )
            block = [
                r
                for r in recs
                if r["quantity"] in ("block_upper", "block_lower") and r["partition"] != "singleton"
            ]
            for partition in partition_order([r["partition"] for r in block]):
                part = [r for r in block if r["partition"] == partition]
                lows, ups = _pick(part, "block_lower"), _pick(part, "block_upper")
                lower, upper = _combine_records(lows), _combine_records(ups)
                rows.append(
                    {
                        **base,
                        "geometry": "block",
                        "partition": partition,
                        "constant": f"H(Φ={partition})",
                        "optimizer": OPTIMIZER_FOR_PARTITION.get(
                            partition, f"blockwise ({partition})"
                        ),
                        "source": _record_sources(lows + ups),
                        "point": _point_note(lower, upper, "U(Φ)"),
                        **_interval_columns(_bracket(lower, upper, l2, dl2)),
                    }
                )
    return pd.DataFrame(rows, columns=_CONSTANT_COLUMNS)


_CONSTANT_COLUMNS = [
    "checkpoint",
    "step",
    "basis",
    "geometry",
    "partition",
    "constant",
    "optimizer",
    "d",
    "source",
    "point",
    *_interval_columns(None).keys(),
]


def _any_l2(run: list[dict[str, Any]], d: float) -> tuple[Interval, str] | None:
    for basis in basis_order([r["basis"] for r in run]):
        found = l2_interval([r for r in run if r["basis"] == basis], d)
        if found is not None:
            return found[0], f"{found[1]} (basis {basis}; rotation-invariant)"
    return None


def _pick(records: list[dict[str, Any]], quantity: str) -> list[dict[str, Any]]:
    return [r for r in records if r["quantity"] == quantity]


def _combine_records(records: list[dict[str, Any]]) -> Interval | None:
    return combine_intervals([record_interval(r) for r in records])


def _record_sources(records: list[dict[str, Any]]) -> str:
    names = [
        r["quantity"] + (f"[{r['partition']}]" if r["quantity"].startswith("block") else "")
        for r in records
    ]
    return ", ".join(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------- ρ


def rho_table(frame: pd.DataFrame) -> pd.DataFrame:
    """ρ(Φ) = H(Φ)/(d·L₂) and the predicted T_Φ/T_SGD per checkpoint × basis × geometry/partition.

    ``rho_value`` is the surrogate ratio (the seed paper's ‖H‖₁,₁/(d·L₂) for ℓ∞, which can exceed
    1 when the surrogate is loose); [``rho_low``, ``rho_high``] brackets the true ρ(Φ) ≤ 1.
    ``advantage_*`` is 1/ρ: how many times smaller than d·L₂ the constant is, i.e. the predicted
    T_SGD/T_Φ. Rows without a d·L₂ for their checkpoint are dropped (ρ is undefined).

    Args:
        frame: records.

    Returns:
        DataFrame: the identifying columns of ``constants_table`` plus ``rho_*``, ``advantage_*``
        and ``t_ratio_*`` interval columns and ``t_ratio_status`` ("exact" for SGD itself,
        "structure only" otherwise).
    """
    consts = constants_table(frame)
    rows = []
    for _, row in consts.iterrows():
        same = consts[
            (consts["checkpoint"] == row["checkpoint"])
            & _same_step(consts["step"], row["step"])
            & (consts["basis"] == row["basis"])
            & (consts["geometry"] == "l2")
        ]
        if same.empty:
            continue
        h = interval_from_row(row)
        if row["geometry"] == "l2":
            rho = Interval.exact(1.0)
        else:
            rho = (h / interval_from_row(same.iloc[0])).cap_high(1.0, Kind.CERTIFIED)
        ident = {k: row[k] for k in _CONSTANT_COLUMNS[:10]}
        rows.append(
            {
                **ident,
                **_interval_columns(rho, "rho_"),
                **_interval_columns(rho.reciprocal(), "advantage_"),
                **_interval_columns(rho, "t_ratio_"),
                "t_ratio_status": "exact" if row["geometry"] == "l2" else STRUCTURE_ONLY,
            }
        )
    columns = [
        *_CONSTANT_COLUMNS[:10],
        *_interval_columns(None, "rho_"),
        *_interval_columns(None, "advantage_"),
        *_interval_columns(None, "t_ratio_"),
        "t_ratio_status",
    ]
    return pd.DataFrame(rows, columns=columns)


def _same_step(steps: pd.Series, step: Any) -> pd.Series:
    if step is None or (isinstance(step, float) and math.isnan(step)):
        return steps.isna()
    return steps == step


def rotation_table(frame: pd.DataFrame, *, original: str = "identity") -> pd.DataFrame:
    """Original vs rotated basis per checkpoint × geometry/partition.

    The change ``H_rotated / H_original`` equals ρ_rotated/ρ_original exactly (L₂ is rotation
    invariant), so it is computed from the constants alone: > 1 means rotation made that
    geometry worse, i.e. slowed the optimizer it explains (predicted, structure only).

    Args:
        frame: records.
        original: the basis treated as original.

    Returns:
        DataFrame with checkpoint, step, geometry, partition, constant, optimizer,
        basis_original, basis_rotated and interval columns ``original_rho_*``,
        ``rotated_rho_*`` and ``change_*``. Empty when only one basis was measured.
    """
    rho = rho_table(frame)
    consts = constants_table(frame)
    rows = []
    keys = ["checkpoint", "step", "geometry", "partition"]
    for _, row in rho[rho["basis"] != original].iterrows():
        if row["geometry"] == "l2":
            continue
        match = rho[(rho["basis"] == original) & _row_mask(rho, row, keys)]
        if match.empty:
            continue
        c_rot = consts[(consts["basis"] == row["basis"]) & _row_mask(consts, row, keys)]
        c_orig = consts[(consts["basis"] == original) & _row_mask(consts, row, keys)]
        change = interval_from_row(c_rot.iloc[0]) / interval_from_row(c_orig.iloc[0])
        rows.append(
            {
                **{k: row[k] for k in (*keys, "constant", "optimizer")},
                "basis_original": original,
                "basis_rotated": row["basis"],
                **_interval_columns(interval_from_row(match.iloc[0], "rho_"), "original_rho_"),
                **_interval_columns(interval_from_row(row, "rho_"), "rotated_rho_"),
                **_interval_columns(change, "change_"),
            }
        )
    columns = [
        *keys,
        "constant",
        "optimizer",
        "basis_original",
        "basis_rotated",
        *_interval_columns(None, "original_rho_"),
        *_interval_columns(None, "rotated_rho_"),
        *_interval_columns(None, "change_"),
    ]
    return pd.DataFrame(rows, columns=columns)


def _row_mask(table: pd.DataFrame, row: Mapping[str, Any], keys: Sequence[str]) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for k in keys:
        mask &= _same_step(table[k], row[k]) if k == "step" else table[k] == row[k]
    return mask


# ------------------------------------------------------------------------------------- noise


def noise_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Gradient-noise terms per checkpoint × basis × batch size, with ratios to √d·‖σ‖₂.

    ``ratio_*`` = term/(√d·‖σ‖₂) ≤ 1 (Cauchy–Schwarz; capped): the noise analogue of ρ. How the
    noise enters the seed paper's stochastic Adam bound is reproduced in structure only.

    Args:
        frame: records.

    Returns:
        DataFrame with checkpoint, step, basis, batch_size, quantity, term, partition, optimizer,
        the term's interval columns, ``ratio_*`` interval columns (NaN for SNR or without
        √d·‖σ‖₂) and ``status``. Empty when no noise was measured.
    """
    frame = normalize_records(frame)
    noise = frame[frame["quantity"].isin(NOISE_TERMS)].copy()
    rows = []
    if not noise.empty:
        noise["batch"] = [
            _float(s.get("batch_size", b))
            for s, b in zip(noise["settings"], noise["batch_size"], strict=True)
        ]
    for checkpoint, step, _ in _runs(noise) if not noise.empty else ():
        run = noise[(noise["checkpoint"] == checkpoint) & _same_step(noise["step"], step)]
        for basis in basis_order(run["basis"]):
            recs = run[run["basis"] == basis]
            for batch in sorted(set(recs["batch"].fillna(-1.0))):
                group = recs[recs["batch"].fillna(-1.0) == batch]
                ref = quantity_interval(group, "noise_l2_sqrtd")
                for quantity in NOISE_TERMS:
                    sub = group[group["quantity"] == quantity]
                    blockwise = quantity in ("noise_block", "snr_block")
                    parts = partition_order(sub["partition"]) if blockwise else [""]
                    for partition in parts:
                        psub = sub[sub["partition"] == partition] if partition else sub
                        iv = quantity_interval(psub, quantity)
                        if iv is None:
                            continue
                        ratio = None
                        if ref is not None and quantity not in _SNR:
                            ratio = (iv / ref).cap_high(1.0, Kind.CERTIFIED)
                        part = partition or _NOISE_PARTITION.get(quantity, "")
                        rows.append(
                            {
                                "checkpoint": checkpoint,
                                "step": _step_out(step),
                                "basis": basis,
                                "batch_size": None if batch < 0 else int(batch),
                                "quantity": quantity,
                                "term": NOISE_TERMS[quantity],
                                "partition": part,
                                "optimizer": "SGD"
                                if quantity in ("noise_l2_sqrtd", "snr_l2")
                                else OPTIMIZER_FOR_PARTITION.get(part, ""),
                                **_interval_columns(iv),
                                **_interval_columns(ratio, "ratio_"),
                                "status": "measured; its role in the Adam bound: " + STRUCTURE_ONLY,
                            }
                        )
    columns = [
        "checkpoint",
        "step",
        "basis",
        "batch_size",
        "quantity",
        "term",
        "partition",
        "optimizer",
        *_interval_columns(None),
        *_interval_columns(None, "ratio_"),
        "status",
    ]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------- headline


def headline_numbers(
    frame: pd.DataFrame, *, checkpoint: str | None = None, step: float | None = None
) -> dict[str, Any]:
    """The numbers the report's opening paragraph states, for one checkpoint.

    ``advantage`` is X = d·L₂/H∞ in the original basis (the predicted T_SGD/T_Adam; point value
    from ‖H‖₁,₁), ``rotated_advantage`` is Y, the same in the first other basis, and
    ``rotation_cost`` = X/Y = H∞(rotated)/H∞(original). Each is an ``Interval.to_dict()``
    (value/low/high with their labels) or None when not measured.

    Args:
        frame: records.
        checkpoint: checkpoint name; the latest when None.
        step: its step (when one name has several).

    Returns:
        Dict with checkpoint, step, d, basis, rotated_basis, dl2, linf, advantage,
        rotated_advantage, rotation_cost, blockwise (partition → advantage dict, original basis),
        noise (dict or None) and missing (list of what was not measured).
    """
    records = select_checkpoint(frame, checkpoint, step)
    out: dict[str, Any] = {
        "checkpoint": None,
        "step": None,
        "d": None,
        "basis": None,
        "rotated_basis": None,
        "dl2": None,
        "linf": None,
        "advantage": None,
        "rotated_advantage": None,
        "rotation_cost": None,
        "blockwise": {},
        "noise": None,
        "missing": [],
    }
    if records.empty:
        out["missing"].append("records")
        return out
    out["checkpoint"] = records["checkpoint"].iloc[0]
    out["step"] = _step_out(step_key(records["step"].iloc[0]))
    consts, rho = constants_table(records), rho_table(records)
    bases = basis_order(records["basis"])
    original = "identity" if "identity" in bases else bases[0]
    out["basis"] = original
    out["d"] = None if math.isnan(_dimension(records)) else int(_dimension(records))

    def pick(table: pd.DataFrame, basis: str, geometry: str, partition: str):
        sel = table[
            (table["basis"] == basis)
            & (table["geometry"] == geometry)
            & (table["partition"] == partition)
        ]
        return None if sel.empty else sel.iloc[0]

    dl2 = pick(consts, original, "l2", "one")
    linf = pick(consts, original, "linf", "singleton")
    out["dl2"] = None if dl2 is None else interval_from_row(dl2).to_dict()
    out["linf"] = None if linf is None else interval_from_row(linf).to_dict()
    if dl2 is None:
        out["missing"].append("l2 (L₂: needed for every ρ)")
    if linf is None:
        out["missing"].append("linf (‖H‖₁,₁ / sign-ascent lower bound)")
    r = pick(rho, original, "linf", "singleton")
    if r is not None:
        out["advantage"] = interval_from_row(r, "advantage_").to_dict()
    others = [b for b in bases if b != original and pick(rho, b, "linf", "singleton") is not None]
    if others:
        rotated = others[0]
        out["rotated_basis"] = rotated
        out["rotated_advantage"] = interval_from_row(
            pick(rho, rotated, "linf", "singleton"), "advantage_"
        ).to_dict()
        if linf is not None:
            change = interval_from_row(pick(consts, rotated, "linf", "singleton")) / (
                interval_from_row(linf)
            )
            out["rotation_cost"] = change.to_dict()
    elif linf is not None:
        out["missing"].append("a rotated basis (original vs rotated)")
    block = rho[(rho["basis"] == original) & (rho["geometry"] == "block")]
    for _, row in block.iterrows():
        out["blockwise"][row["partition"]] = {
            "optimizer": row["optimizer"],
            **interval_from_row(row, "advantage_").to_dict(),
        }
    noise = noise_table(records)
    noise = noise[(noise["basis"] == original) & (noise["quantity"] == "noise_l1")]
    noise = noise[noise["ratio_value"].notna()]
    if not noise.empty:
        row = noise.iloc[-1]
        out["noise"] = {
            "batch_size": None if pd.isna(row["batch_size"]) else int(row["batch_size"]),
            "ratio": interval_from_row(row, "ratio_").to_dict(),
        }
    return out
