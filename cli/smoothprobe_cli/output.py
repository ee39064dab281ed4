"""Rendering records for the terminal: table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

FORMATS = ("table", "json", "csv")


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _interval(r: dict[str, Any]) -> str:
    """What the record's error bar says, in words (levels as they are: never rounded to 100%)."""
    from smoothprobe.interval import percent  # light: no torch

    extra = r.get("extra") or {}
    fp = r.get("failure_prob", extra.get("failure_prob"))
    if r.get("bound") == "prob_upper":
        if fp is None:
            return "upper end of unstated probability"
        return f"upper bound with probability ≥ {percent(1 - fp)}"
    whp, whp_fp = extra.get("upper_whp"), extra.get("upper_whp_failure_probability")
    if r.get("bound") == "estimate" and whp is not None and whp_fp:
        return (
            f"sketched estimate (≤ the exact U(Φ)); U(Φ) ≤ {_num(whp)} "
            f"with probability ≥ {percent(1 - whp_fp)}"
        )
    if "low_kind" in extra and "high_kind" in extra:  # a ratio formed from two records
        low = _num(extra.get("low")) or "−∞"
        high = _num(extra.get("high")) or "∞"
        return f"in [{low}, {high}] ({extra['low_kind']} / {extra['high_kind']})"
    residual = extra.get("residual")
    if residual is not None and r.get("geometry") == "l2" and r.get("quantity") != "trace":
        if extra.get("prob_upper") is not None and fp is not None:
            return (
                f"≤ {_num(extra['prob_upper'])} with probability ≥ {percent(1 - fp)}; "
                f"residual {_num(residual)}"
            )
        if extra.get("converged"):
            return f"residual {_num(residual)} (converged)"
        return f"residual {_num(residual)} (not converged: no upper bound)"
    if r.get("ci_low") is not None and r.get("ci_high") is not None:
        level = f" ({percent(r['confidence'])} CI)" if r.get("confidence") else ""
        return f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]{level}"
    if r.get("stderr") is not None:
        return f"± {_num(r['stderr'])} s.e."
    return ""


def render_table(records: list[dict[str, Any]]) -> str:
    """A fixed-width table: quantity, value, bound, interval, partition, basis, cost."""
    head = ["quantity", "value", "bound", "interval / error", "partition", "basis", "hvps", "s"]
    rows = [
        [
            r["quantity"],
            _num(r["value"]),
            r["bound"],
            _interval(r),
            r.get("partition") or "",
            r.get("basis") or "",
            _num(r.get("hvps")),
            f"{r.get('seconds') or 0:.2f}",
        ]
        for r in records
    ]
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if records:
        r = records[0]
        lines.append("")
        lines.append(
            f"checkpoint {r['checkpoint']}  d = {r['d']:,}  dtype {r.get('dtype')}  "
            f"sample {r.get('num_examples')}  seed {r.get('seed')}"
        )
    return "\n".join(lines) + "\n"


def render_csv(records: list[dict[str, Any]]) -> str:
    """CSV with one row per record; nested fields (settings, extra) as JSON strings."""
    buf = io.StringIO()
    if not records:
        return ""
    columns = list(records[0])
    for r in records[1:]:
        columns += [c for c in r if c not in columns]
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()}
        )
    return buf.getvalue()


def render(records: list[dict[str, Any]], fmt: str) -> str:
    """Renders records in one of ``FORMATS``."""
    if fmt == "json":
        return json.dumps(records, indent=2) + "\n"
    if fmt == "csv":
        return render_csv(records)
    return render_table(records)
