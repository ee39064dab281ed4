"""Renderers: a built report's parts (paragraph, cards, figures, tables) as Markdown and HTML."""

from __future__ import annotations

import base64
import html
import re

import pandas as pd

from smoothprobe.report import format as fmt

BOUND_KINDS_NOTE = (
    "How to read the brackets: *certified* ends are proven (sign ascent, alternating ascent, "
    "Rayleigh quotients, exact dense values); *Lanczos-residual* ends hold when Lanczos found "
    "the extreme eigenpair (θ + residual); *statistical* ends are confidence limits, and when "
    "numbers are combined their error probabilities add (so a ratio of two 95% intervals is a "
    "90% interval); a *point estimate* has no error bar. H(Φ) ≤ d·L₂ and ρ ≤ 1 always, so the "
    "point values are the surrogates ‖H‖₁,₁ and U(Φ) capped at d·L₂ and clipped into their "
    "bracket, so no point lies outside what the same row proves; when ‖H‖₁,₁ ≥ d·L₂ the "
    "surrogate says nothing in that basis and the row says so. A sketched U(Φ) is an estimate "
    "(below the exact U(Φ)); its upper end is probabilistic, with its failure probability. "
    "Predicted iteration ratios follow the steepest-descent bound of docs/theory.md "
    "(T_Φ/T_SGD = ρ(Φ)); for Adam and its blockwise relatives the seed paper's theorem adds "
    "β₂/ε terms whose constants are not reproduced here: *structure only*."
)


def markdown_document(title, paragraph, cards, figures, sections, skipped, meta) -> str:
    lines = [f"# {title}", "", paragraph, ""]
    if cards:
        card_table = pd.DataFrame(cards)[["what", "bracket", "ends", "value"]].rename(
            columns={"what": "Key number", "bracket": "Bracket", "ends": "Ends", "value": "Point"}
        )
        lines += [fmt.to_markdown(card_table)]
    main, rest = sections[:1], sections[1:]
    for heading, intro, table in main:
        lines += [f"## {heading}", "", intro, "", fmt.to_markdown(table)]
    for spec, _ in figures:
        lines += [f"## {spec.heading}", "", f"![{spec.heading}]({spec.name})", "", spec.caption, ""]
    for heading, intro, table in rest:
        lines += [f"## {heading}", "", intro, "", fmt.to_markdown(table)]
    lines += ["## How to read the numbers", "", BOUND_KINDS_NOTE, ""]
    if skipped:
        lines += ["## Not in this report", ""]
        lines += [f"- **{name}**: {why}" for name, why in skipped.items()]
        lines.append("")
    lines += ["## Provenance", ""]
    lines += [f"- {k}: {v}" for k, v in meta]
    lines += [
        "",
        "Tables as CSV beside this file: constants.csv, rho.csv, rotation.csv, "
        "noise.csv, measurements.csv; headline numbers: headline.json.",
        "",
    ]
    return "\n".join(lines)


def _inline_html(markdown_text: str) -> str:
    """Escapes text and turns **bold** and `code` into HTML."""
    out = []
    for i, part in enumerate(markdown_text.split("`")):
        text = html.escape(part)
        if i % 2:  # inside a code span: no emphasis
            out.append(f"<code>{text}</code>")
            continue
        text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
        out.append(re.sub(r"(?<![\w*])\*(\S.*?\S|\S)\*(?![\w*])", r"<em>\1</em>", text))
    return "".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
margin:0;background:#f6f7f9;color:#1d2330;line-height:1.5}
main{max-width:1180px;margin:0 auto;padding:28px 32px 60px;background:#fff;
box-shadow:0 0 12px rgba(0,0,0,.06)}
h1{font-size:1.7em;margin:.2em 0 .6em}
h2{font-size:1.25em;margin:1.8em 0 .5em;padding-bottom:.2em;border-bottom:1px solid #e3e6eb}
.answer{font-size:1.06em;background:#eef4fb;border-left:5px solid #1f5fa8;padding:14px 18px;
border-radius:4px}
.cards{display:flex;gap:14px;flex-wrap:wrap;margin:16px 0 4px}
.card{flex:1 1 200px;border:1px solid #dde1e7;border-radius:6px;padding:10px 14px;background:#fff}
.card .big{font-size:1.9em;font-weight:600;color:#1f5fa8;line-height:1.2}
.card .what{font-size:.92em;margin-top:2px}
.card .br{font-size:.8em;color:#5a6270;margin-top:4px}
figure{margin:12px 0}
figure img{max-width:100%;height:auto;border:1px solid #e3e6eb;border-radius:4px}
figcaption{color:#4a5261;font-size:.92em;margin-top:4px}
.scroll{overflow-x:auto}
table.tbl{border-collapse:collapse;font-size:.82em;margin:8px 0}
table.tbl th,table.tbl td{border:1px solid #dde1e7;padding:3px 8px;text-align:left;
white-space:nowrap}
table.tbl th{background:#f0f2f5}
table.tbl tr:nth-child(even) td{background:#fafbfc}
.note{color:#3b4250;font-size:.95em}
code{background:#f0f2f5;padding:0 3px;border-radius:3px}
details summary{cursor:pointer;color:#1f5fa8}
"""


def html_document(title, paragraph, cards, figures, sections, skipped, meta) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="answer">{_inline_html(paragraph)}</p>',
    ]
    if cards:
        out.append('<div class="cards">')
        for c in cards:
            out.append(
                f'<div class="card"><div class="big">{html.escape(c["bracket"])}</div>'
                f'<div class="what">{html.escape(c["what"])}</div>'
                f'<div class="br">{html.escape(c["ends"])} · point {html.escape(c["value"])}'
                "</div></div>"
            )
        out.append("</div>")

    def table_block(heading: str, intro: str, table: pd.DataFrame, *, folded: bool) -> list[str]:
        body = f'<div class="scroll">{fmt.to_html(table)}</div>'
        if folded:
            body = f"<details><summary>show {len(table)} rows</summary>{body}</details>"
        return [
            f"<h2>{html.escape(heading)}</h2>",
            f"<p class='note'>{_inline_html(intro)}</p>",
            body,
        ]

    main, rest = sections[:1], sections[1:]
    for heading, intro, table in main:
        out += table_block(heading, intro, table, folded=False)
    for spec, png in figures:
        data = base64.b64encode(png).decode("ascii")
        out += [
            f"<h2>{html.escape(spec.heading)}</h2>",
            f'<figure><img alt="{html.escape(spec.heading)}" src="data:image/png;base64,{data}">',
            f"<figcaption>{_inline_html(spec.caption)}</figcaption></figure>",
        ]
    for heading, intro, table in rest:
        out += table_block(heading, intro, table, folded=len(table) > 12)
    out += [
        "<h2>How to read the numbers</h2>",
        f"<p class='note'>{_inline_html(BOUND_KINDS_NOTE)}</p>",
    ]
    if skipped:
        out += ["<h2>Not in this report</h2>", "<ul>"]
        out += [
            f"<li><strong>{html.escape(k)}</strong>: {html.escape(v)}</li>"
            for k, v in skipped.items()
        ]
        out.append("</ul>")
    out += ["<h2>Provenance</h2>", "<ul>"]
    out += [f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in meta]
    out += ["</ul>", "</main></body></html>", ""]
    return "\n".join(out)
