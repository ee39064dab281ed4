"""``smoothprobe demo`` end to end on the small budget, plus its building blocks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from smoothprobe import demo
from smoothprobe.bounds import headline_numbers
from smoothprobe.checkpoints import DataOptions, load_checkpoint
from smoothprobe.errors import SmoothprobeError
from smoothprobe.records import file_sha256, load_records
from smoothprobe.report.render import headline_text
from smoothprobe.report.tables import fmt_num
from smoothprobe_cli.main import cli

SMALL = demo.BUDGETS["small"]
FINAL_STEP = SMALL.steps


REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "reports" / "demo"


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Runs ``smoothprobe demo --budget small`` once, with the default --out, in a git checkout
    that has the project's .gitignore; returns (result, report dir, work dir)."""
    root = tmp_path_factory.mktemp("demo")
    shutil.copy(REPO / ".gitignore", root / ".gitignore")
    git(root, "init", "-q")
    git(root, "add", ".gitignore")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(cli, ["demo", "--budget", "small", "-q"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result, root / "reports" / "demo-local", root / "reports" / "demo-local-run"


def recorded(path: Path) -> str:
    """How the demo, run from its checkout's root with the default --out, names a path."""
    parts = path.parts
    return str(Path(*parts[len(parts) - 1 - parts[::-1].index("reports") :]))


def test_demo_leaves_git_status_clean(run):
    _, out, work = run
    assert (out / "index.html").is_file() and (work / "val.bin").is_file()
    assert git(out.parents[1], "status", "--porcelain", "--untracked-files=all") == ""


def test_committed_report_is_not_stale(run):
    """The committed reference report has every file and section the code now writes.

    Regenerate it with ``smoothprobe demo --out reports/demo`` (README, Development).
    """
    _, out, _ = run

    def sections(report: Path) -> list[str]:
        lines = (report / "report.md").read_text(encoding="utf-8").splitlines()
        return [ln for ln in lines if ln.startswith("## ") and " at " not in ln]

    assert sorted(p.name for p in COMMITTED.iterdir()) == sorted(p.name for p in out.iterdir())
    assert sections(COMMITTED) == sections(out)


@pytest.fixture(scope="module")
def records(run):
    return load_records(run[1] / "records.jsonl")


class _Refs(HTMLParser):
    """Collects every src/href and the text of the answer paragraph."""

    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.images = 0
        self.answer: list[str] = []
        self._in_answer = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.images += tag == "img"
        self.refs += [v for k, v in attrs.items() if k in ("src", "href") and v]
        if tag == "p" and attrs.get("class") == "answer":
            self._in_answer = True

    def handle_endtag(self, tag):
        if tag == "p":
            self._in_answer = False

    def handle_data(self, data):
        if self._in_answer:
            self.answer.append(data)


def parse_html(path: Path) -> _Refs:
    parser = _Refs()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_report_files_exist(run):
    _, out, _ = run
    for name in (
        "index.html",
        "report.md",
        "headline.json",
        "records.jsonl",
        "constants.csv",
        "measurements.csv",
        "constants.png",
        "rho.png",
        "steps.png",
        "spectrum.png",
        "heatmap.png",
        "graddiff.png",
    ):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name


def test_html_references_no_missing_file(run):
    _, out, _ = run
    page = parse_html(out / "index.html")
    pngs = sorted(out.glob("*.png"))
    assert page.images == len(pngs)  # every figure is in the page
    for ref in page.refs:
        if ref.startswith(("data:", "#", "http://", "https://")):
            continue
        assert (out / ref).is_file(), f"index.html references missing {ref}"
    markdown = (out / "report.md").read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert sorted(linked) == [p.name for p in pngs]  # every PNG linked, every link present


def test_headline_in_report_equals_records(run, records):
    _, out, _ = run
    numbers = headline_numbers(records)
    assert numbers["step"] == FINAL_STEP
    assert json.loads(json.dumps(numbers)) == json.loads((out / "headline.json").read_text())
    paragraph = headline_text(numbers)
    assert paragraph in (out / "report.md").read_text(encoding="utf-8").split("\n")
    shown = "".join(parse_html(out / "index.html").answer)
    assert shown == paragraph.replace("**", "").replace("`", "")


def test_headline_numbers_are_the_measured_ones(run, records):
    """Independent of ``bounds``: d·L₂ / ‖H‖₁,₁ of the raw records, as the report prints it."""
    _, out, _ = run
    final = records[records["step"] == FINAL_STEP]
    report = (out / "report.md").read_text(encoding="utf-8")

    def value(quantity: str, basis_is_identity: bool) -> float:
        rows = final[
            (final["quantity"] == quantity)
            & ((final["basis"] == "identity") == basis_is_identity)
            & (final["bound"] != "prob_upper")  # the certified value, not its probabilistic end
        ]
        assert len(rows) == 1, quantity
        return float(rows["value"].iloc[0])

    for identity in (True, False):
        l11, dl2 = value("l11_norm", identity), value("d_l2", identity)
        if l11 < dl2:  # informative: stated as the capped surrogate (clipped into the bracket)
            assert "the ‖H‖₁,₁ surrogate (capped at d·L₂) gives " in report
        else:  # it says nothing about H∞: only the paper's convention, named as such
            assert f"the seed paper's convention ‖H‖₁,₁/(d·L₂) = {fmt_num(l11 / dl2)}" in report
        assert f"‖H‖₁,₁ = {fmt_num(l11)}" in report and f"d·L₂ = {fmt_num(dl2)}" in report


def test_records_cover_every_checkpoint(run, records):
    _, _, work = run
    ckpts = sorted(work.glob("ckpt_*.pt"))
    assert [p.name for p in ckpts] == [
        f"ckpt_{s:06d}.pt" for s in demo.checkpoint_steps(SMALL.steps, SMALL.checkpoints)
    ]
    for path in ckpts:
        rows = records[records["checkpoint"] == recorded(path)]
        assert {"d_l2", "l11_norm", "linf_lower"} <= set(rows["quantity"])
        assert set(rows["checkpoint_sha256"]) == {file_sha256(path)}
    final = records[records["step"] == FINAL_STEP]
    blocks = final[final["quantity"] == "block_upper"]
    assert len(blocks) == len(SMALL.blocks) * len(SMALL.bases)
    assert set(blocks["partition"]) == set(SMALL.blocks)
    assert final["basis"].nunique() == len(SMALL.bases)
    assert {"graddiff_max", "noise_l1", "spectral_density"} <= set(final["quantity"])


def test_work_dir_is_a_nanogpt_run(run, records):
    _, _, work = run
    assert (work / ".gitignore").read_text().splitlines()[-1] == "*"
    for name in ("train.bin", "val.bin", "meta.pkl"):
        assert (work / name).is_file()
    path = work / f"ckpt_{FINAL_STEP:06d}.pt"
    ckpt = torch.load(path, weights_only=True)
    assert {"model", "optimizer", "model_args", "iter_num", "config"} <= set(ckpt)
    assert ckpt["model_args"] == SMALL.model
    assert ckpt["iter_num"] == FINAL_STEP
    # the recorded loss is that of the checkpoint on the recorded sample: reproducible
    loaded = load_checkpoint(
        str(path),
        dtype=SMALL.dtype,
        data=DataOptions(
            path=str(work / "val.bin"),
            batch_size=SMALL.eval_batch_size,
            num_batches=SMALL.eval_batches,
            seed=0,
        ),
    )
    loss = records[(records["quantity"] == "loss") & (records["checkpoint"] == recorded(path))]
    assert set(loss["value"]) == {loaded.problem.loss()}


def test_stdout_states_where_things_are(run):
    result, out, work = run
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        f"Checkpoint {recorded(work / f'ckpt_{FINAL_STEP:06d}.pt')} (step {FINAL_STEP}"
    )
    assert "**" not in lines[0]
    assert (
        f"report      {recorded(out / 'index.html')} (and report.md, figures, records.jsonl)"
        in lines
    )
    assert (
        f"checkpoints {recorded(work)} ({SMALL.checkpoints} nanoGPT ckpt_*.pt, train.bin, "
        "val.bin, meta.pkl)"
    ) in lines


def test_training_is_deterministic(tmp_path):
    budget = demo.BUDGETS["small"]
    states = []
    for name in ("a", "b"):
        work = tmp_path / name
        work.mkdir()
        tokens, val = demo.prepare_data(
            work, vocab_size=budget.model["vocab_size"], max_chars=budget.max_chars
        )
        paths = demo.train(work, tokens, val, budget=budget, steps=4, seed=3, progress=False)
        states.append(torch.load(paths[-1], weights_only=True)["model"])
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_checkpoint_steps():
    assert demo.checkpoint_steps(600, 5) == [120, 240, 360, 480, 600]
    assert demo.checkpoint_steps(3, 5) == [1, 2, 3]
    assert demo.checkpoint_steps(1, 1) == [1]
    with pytest.raises(SmoothprobeError):
        demo.checkpoint_steps(0, 3)


def test_learning_rate_warms_up_then_stays():
    rates = [demo.learning_rate(s, lr=1.0, warmup=4) for s in range(6)]
    assert rates == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_threads_restored():
    before = torch.get_num_threads()
    with demo.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_bad_out_fails_before_training(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    result = CliRunner().invoke(
        cli,
        [
            "demo",
            "--budget",
            "small",
            "--out",
            str(foreign),
            "--work-dir",
            str(tmp_path / "w"),
            "-q",
        ],
    )
    assert result.exit_code == 1
    assert result.output == (
        f"Error: --out {foreign} exists and is not a smoothprobe report; choose a new directory\n"
    )
    assert not (tmp_path / "w").exists()


def test_work_dir_inside_report_refused(tmp_path):
    with pytest.raises(SmoothprobeError, match="inside the report directory"):
        demo.run_demo(
            tmp_path / "r", budget="small", work_dir=tmp_path / "r" / "run", progress=False
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": "huge"}, "--budget 'huge': use one of full, small"),
        ({"budget": "small", "steps": 1}, "--steps 1: use at least 2"),
    ],
)
def test_bad_options(tmp_path, kwargs, message):
    with pytest.raises(SmoothprobeError, match=re.escape(message)):
        demo.run_demo(tmp_path / "r", progress=False, **kwargs)
    assert not (tmp_path / "r").exists()


def test_default_work_dir_is_beside_the_report():
    assert demo.default_work_dir(Path("reports/demo")) == Path("reports/demo-run")
