"""Tests of the report layer: tables, plots, the written report and ``compare``."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from smoothprobe import compare as bounds
from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimators.row_norms import row_norm_payload
from smoothprobe.records import write_records
from smoothprobe.report import figure_data, plots, render, tables
from smoothprobe.report.example_records import (
    ROTATED_BASIS,
    D,
    example_records,
    example_truths,
)

PLOTS = (
    plots.plot_constants,
    plots.plot_rho_by_partition,
    plots.plot_row_norms,
    plots.plot_spectral_density,
    plots.plot_block_heatmap,
    plots.plot_constants_over_steps,
    plots.plot_graddiff_sweep,
)


@pytest.fixture(scope="module")
def records_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("records") / "example.jsonl"
    write_records(path, example_records())
    return path


@pytest.fixture(scope="module")
def frame(records_path) -> pd.DataFrame:
    from smoothprobe.records import load_records

    return load_records(records_path)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, records_path) -> Path:
    out = tmp_path_factory.mktemp("reports") / "example"
    assert render.write_report(records_path, out, title="test report") == out
    return out


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def expected_headline() -> dict[str, float]:
    """The headline numbers computed straight from the values the records were built from."""
    truth = example_truths()[-1]
    dl2 = D * truth.l2
    l11, l11_rot = truth.l11["identity"], truth.l11[ROTATED_BASIS]
    hi = l11 * (1 + truth.l11_halfwidth)
    return {
        "advantage": dl2 / l11,
        "advantage_low": dl2 / hi,
        "rotated_advantage": dl2 / l11_rot,
        "rotation_cost": l11_rot / l11,
        "rotation_cost_low": truth.linf_lower[ROTATED_BASIS] / hi,
        "dl2": dl2,
        "step": truth.step,
    }


# ------------------------------------------------------------------------------ the report


def test_report_files_exist_and_html_is_self_contained(report_dir):
    names = {p.name for p in report_dir.iterdir()}
    assert {"index.html", "report.md", "headline.json", "constants.csv", "rho.csv"} <= names
    for spec in render.FIGURES:  # the example has data for every figure
        png = (report_dir / spec.name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    parser = _Refs()
    parser.feed((report_dir / "index.html").read_text(encoding="utf-8"))
    assert len([r for r in parser.refs if r.startswith("data:image/png;base64,")]) == len(
        render.FIGURES
    )
    missing = [
        r for r in parser.refs if not r.startswith("data:") and not (report_dir / r).exists()
    ]
    assert missing == []
    assert not [p for p in report_dir.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_markdown_references_existing_pngs(report_dir):
    markdown = (report_dir / "report.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(images) == len(render.FIGURES)
    assert all((report_dir / name).is_file() for name in images)


def test_headline_numbers_equal_the_records(report_dir, frame):
    numbers = bounds.headline_numbers(frame)
    exp = expected_headline()
    assert numbers["step"] == exp["step"]
    assert numbers["dl2"]["value"] == pytest.approx(exp["dl2"])
    assert numbers["advantage"]["value"] == pytest.approx(exp["advantage"])
    assert numbers["advantage"]["low"] == pytest.approx(exp["advantage_low"])
    # ‖H‖₁,₁ ≥ d·L₂ after rotation: the point is capped at d·L₂ (old code: 0.853, outside the
    # proven bracket [1, …]) and the surrogate is stated as uninformative
    assert exp["rotated_advantage"] < 1
    assert numbers["rotated_advantage"]["value"] == pytest.approx(1.0)
    assert numbers["rotated_advantage"]["low"] == pytest.approx(1.0)
    rotated_l11 = example_truths()[-1].l11[ROTATED_BASIS]
    assert numbers["rotation_cost"]["value"] == pytest.approx(
        exp["dl2"] / rotated_l11 * exp["rotation_cost"]
    )
    assert numbers["rotation_cost"]["low"] == pytest.approx(exp["rotation_cost_low"])
    written = json.loads((report_dir / "headline.json").read_text(encoding="utf-8"))
    assert written["advantage"]["value"] == pytest.approx(exp["advantage"])
    # the paragraph states these numbers, in both files
    x = tables.fmt_num(exp["advantage"])
    low = tables.fmt_num(exp["advantage_low"])
    for name in ("report.md", "index.html"):
        text = (report_dir / name).read_text(encoding="utf-8")
        plain = re.sub(r"<[^>]+>|\*\*", "", text)
        assert f"lies in [{low}×, " in plain  # the bracket leads
        assert f"the ‖H‖₁,₁ surrogate (capped at d·L₂) gives {x}×" in plain
        assert "so the ‖H‖₁,₁ surrogate says nothing about H∞" in plain
        assert f"convention ‖H‖₁,₁/(d·L₂) = {tables.fmt_num(1 / exp['rotated_advantage'])}" in plain
        assert "rotation is predicted to slow Adam by that factor" in plain
        assert "structure only" in plain and "docs/theory.md" in plain
        assert f"step {exp['step']}" in plain


def test_headline_text_for_partial_records():
    l2_only = pd.DataFrame([r for r in example_records() if r["geometry"] == "l2"])
    text = render.headline_text(bounds.headline_numbers(l2_only))
    assert "no ℓ∞ records" in text
    linf_only = pd.DataFrame([r for r in example_records() if r["geometry"] == "linf"])
    text = render.headline_text(bounds.headline_numbers(linf_only))
    assert "no ℓ2 record" in text and "Not measured" in text
    assert render.headline_text(bounds.headline_numbers(pd.DataFrame())).startswith("These")


def test_report_of_partial_records_lists_what_is_skipped(tmp_path):
    l2_only = pd.DataFrame([r for r in example_records(steps=(0,)) if r["geometry"] == "l2"])
    report = render.build_report(l2_only)
    assert "constants.png" in report.files and "rho.png" not in report.files
    assert "ρ(Φ) per partition" in report.skipped
    assert "Row ℓ1 norms per tensor" in report.skipped
    assert "Over training" in report.skipped
    assert "Not in this report" in report.markdown


def test_failed_write_leaves_previous_report(tmp_path, monkeypatch):
    records = pd.DataFrame([r for r in example_records(steps=(0,)) if r["geometry"] == "l2"])
    out = tmp_path / "rep"
    render.write_report(records, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*_args, **_kwargs):
        raise RuntimeError("figure failed")

    spec = render.FIGURES[0]
    monkeypatch.setattr(render, "FIGURES", (render.FigureSpec(spec.name, "x", "y", boom),))
    with pytest.raises(RuntimeError, match="figure failed"):
        render.write_report(records, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(RuntimeError):
        render.write_report(records, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no temp dirs left


def test_refuses_to_replace_a_directory_that_is_not_a_report(tmp_path, records_path):
    other = tmp_path / "data"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(SmoothprobeError, match="not a smoothprobe report"):
        render.write_report(records_path, other)
    assert (other / "precious.txt").read_text() == "keep me"
    with pytest.raises(SmoothprobeError, match="no records"):
        render.write_report(pd.DataFrame(), tmp_path / "empty")


# ----------------------------------------------------------------------------------- plots


@pytest.mark.parametrize("plot", PLOTS, ids=lambda f: f.__name__)
def test_every_plot_returns_a_figure_with_data_and_without(plot, frame):
    fig = plot(frame)
    assert isinstance(fig, Figure) and plots.has_data(fig)
    assert fig.axes and all(
        ax.get_xlabel() or ax.get_ylabel() or ax.get_title() for ax in fig.axes if ax.axison
    )
    nothing = plot(frame[frame["quantity"] == "trace"])
    assert isinstance(nothing, Figure) and not plots.has_data(nothing)
    assert plots.missing_reason(nothing)


def test_plots_pick_log_scales_when_values_span_decades(frame):
    fig = plots.plot_row_norms(frame)
    assert fig.axes[0].get_xscale() == "log"
    assert plots.plot_graddiff_sweep(frame).axes[0].get_xscale() == "log"
    assert plots.plot_spectral_density(frame).axes[0].get_yscale() == "log"
    linear = plots.plot_rho_by_partition(frame)  # ρ within one decade here
    assert linear.axes[0].get_yscale() == "linear"


def test_constants_plot_has_one_panel_per_basis(frame):
    fig = plots.plot_constants(frame)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["basis: identity", f"basis: {ROTATED_BASIS}"]


# ---------------------------------------------------------------------------------- tables


def test_markdown_and_text_rendering():
    table = pd.DataFrame({"a|b": ["x|y", None], "c": [1.5, "ρ"]})
    md = tables.to_markdown(table)
    assert md.splitlines()[0] == "| a\\|b | c |"
    assert "| x\\|y | 1.5 |" in md
    text = tables.to_text(table)
    lines = text.splitlines()
    starts = [lines[0].index("c"), lines[1].index(" ─") + 1, lines[2].index("1.5")]
    assert len(set(starts)) == 1  # the second column starts at one offset on every line
    assert tables.to_markdown(table.iloc[:0]) == "_(none)_\n"
    assert tables.fmt_num(1209.82) == "1210" and tables.fmt_num(0.000123) == "1.23e-04"
    assert tables.fmt_num(None) == "—" and tables.fmt_num(float("inf")) == "∞"


def test_summary_table_labels_every_bracket(frame):
    latest = bounds.select_checkpoint(frame)
    table = tables.summary_table(latest, checkpoint_column=False)
    assert "Checkpoint" not in table.columns
    assert len(table) == len(bounds.constants_table(latest))
    assert table["Ends (lower / upper)"].str.len().gt(0).all()
    linf = table[table["Constant"] == "H∞"].iloc[0]
    assert linf["Ends (lower / upper)"] == "certified / 97.5% CI"
    assert linf["T_Φ/T_SGD"].endswith("structure only")


def test_tidy_plot_data(frame):
    hist = figure_data.row_norm_histograms(frame)
    totals = hist.groupby(["step", "basis", "tensor"])["count"].sum()
    assert set(totals) == {2048.0, 32.0, 320.0, 10.0}  # every row norm lands in a bin
    heat = figure_data.block_contribution_data(frame)
    assert set(heat["partition"]) == {"tensor", "layer"}
    sweep = figure_data.graddiff_data(frame)
    assert set(sweep["statistic"]) == {"max", "mean"} and sweep["radius"].min() == 1e-3
    density = figure_data.spectral_density_data(frame)
    assert len(density) == 200 * len(example_truths())


def test_compare_table(records_path):
    other = pd.DataFrame(example_records(steps=(0,)))
    text = render.compare_table(records_path, other, labels=("new", "old"))
    first, second = text.splitlines()[:2]
    assert first.startswith("new: out/ckpt_01000.pt @ step 1000")
    assert second.startswith("old: out/ckpt_00000.pt @ step 0")
    truths = {t.step: t for t in example_truths()}
    ratio = truths[0].l11["identity"] / truths[1000].l11["identity"]
    linf_line = next(
        line for line in text.splitlines() if line.startswith("identity") and "H∞" in line
    )
    assert tables.fmt_num(ratio) in linf_line
    with pytest.raises(SmoothprobeError):
        render.compare_table(pd.DataFrame(), other)


def test_report_modules_never_import_pyplot():
    import ast
    import inspect

    for module in (plots, render, tables):
        tree = ast.parse(inspect.getsource(module))
        imported = [
            alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        ]
        assert not [name for name in imported if "pyplot" in name], module.__name__


def test_row_norm_payload_round_trips_through_the_histograms():
    from smoothprobe.layout import ParameterLayout

    layout = ParameterLayout.from_shapes([("w", (30, 4)), ("b", (30,))])
    values = [float(i % 17 + 1) for i in range(150)]
    values[3] = float("nan")  # a row that was not estimated
    raw = row_norm_payload(values, layout)
    hist = row_norm_payload(values, layout, raw_limit=10, bins=12)
    assert len(raw["row_norms"]["w"]) == 119 and len(raw["row_norms"]["b"]) == 30
    assert len(hist["row_norm_hist"]["w"]["edges"]) == 13
    for extra in (raw, hist):
        data = figure_data.row_norm_histograms(
            pd.DataFrame(
                [{"quantity": "l11_norm", "value": 1.0, "geometry": "linf", "extra": extra}]
            )
        )
        assert data.groupby("tensor")["count"].sum().to_dict() == {"w": 119.0, "b": 30.0}


def test_steps_figure_has_a_step_ratio_panel(frame):
    fig = plots.plot_constants_over_steps(frame)
    assert len(fig.axes) == 3
    assert fig.axes[2].get_title().startswith("step-wise ratio")
    assert len(figure_data.step_ratio_data(frame)) == 2 * len(example_truths())


def _agg_renderer(fig: Figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _long_checkpoint_frame(frame: pd.DataFrame) -> pd.DataFrame:
    long = "/very/long/directory/" * 6 + "ckpt_000600.pt"
    out = frame.copy()
    out["checkpoint"] = long
    return out


@pytest.mark.parametrize("plot", PLOTS)
def test_figure_titles_name_the_checkpoint_file_and_fit_the_figure(plot, frame):
    fig = plot(_long_checkpoint_frame(frame))
    title = fig._suptitle.get_text() if fig._suptitle is not None else ""
    assert "/very/long" not in title
    renderer = _agg_renderer(fig)
    box = fig.bbox
    texts = [fig._suptitle] if fig._suptitle is not None else []
    texts += [t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label)]
    for text in texts:
        if not text.get_text() or not text.get_visible():
            continue
        ext = text.get_window_extent(renderer)
        assert ext.x0 >= box.x0 - 1 and ext.x1 <= box.x1 + 1, text.get_text()


def test_legends_sit_outside_the_axes(frame):
    for plot in (plots.plot_constants, plots.plot_rho_by_partition, plots.plot_graddiff_sweep):
        fig = plot(frame)
        assert all(ax.get_legend() is None for ax in fig.axes), plot.__name__
        assert fig.legends, plot.__name__
        renderer = _agg_renderer(fig)
        legend_box = fig.legends[0].get_window_extent(renderer)
        for ax in fig.axes:
            assert not legend_box.overlaps(ax.get_window_extent(renderer)), plot.__name__


def test_heatmap_labels_blocks_by_name(frame):
    def named(extra: dict) -> dict:
        n = len(extra.get("contributions") or [])
        return {**extra, "block_names": [f"transformer.h.{i}.attn.weight" for i in range(n)]}

    renamed = frame.copy()
    renamed["extra"] = [
        named(e) if q == "block_upper" else e
        for q, e in zip(renamed["quantity"], renamed["extra"], strict=True)
    ]
    fig = plots.plot_block_heatmap(renamed)
    ticks = [int(t) for t in fig.axes[0].get_xticks()]
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks and labels == [f"h.{i}.attn.weight" for i in ticks]
    assert ticks[0] == 0


def test_short_block_names_and_tick_stride():
    names = ["transformer.wte.weight", "transformer.h.0.ln_1.bias", "lm_head.weight"]
    assert plots.short_block_names(names) == ["wte.weight", "h.0.ln_1.bias", "lm_head.weight"]
    # stripping must keep names distinct
    assert plots.short_block_names(["model.a", "a"]) == ["model.a", "a"]
    assert plots.tick_stride(28) == 1
    assert plots.tick_stride(100, max_labels=30) == 4
    assert plots.short_checkpoint_label("runs/x/ckpt.pt", 600.0) == "ckpt.pt @ step 600"
