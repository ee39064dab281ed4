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
    if r.get("ci_low") is not None and r.get("ci_high") is not None:
        level = f" ({r['confidence']:.0%})" if r.get("confidence") else ""
        return f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]{level}"
    if r.get("stderr") is not None:
        return f"± {_num(r['stderr'])} s.e."
    residual = (r.get("extra") or {}).get("residual")
    if residual is not None:
        return f"residual {_num(residual)}"
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
