"""Docs that run: every ```python block of README.md and every docstring example (issue 16.13,
issue 15.6)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import sys
import textwrap
import types
from pathlib import Path

import torch

import smoothprobe
import smoothprobe_cli

REPO = Path(__file__).resolve().parents[1]


def readme_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", text, re.S)]


def test_readme_has_python_examples():
    assert len(readme_blocks()) >= 2


def test_readme_spec_example_runs(tmp_path, monkeypatch):
    (code,) = [b for b in readme_blocks() if b.startswith("# my_spec.py")]
    # the spec example imports the user's own package: stand in a small network for it
    mypkg = types.ModuleType("mypkg")
    mypkg.MyNet = lambda: torch.nn.Sequential(torch.nn.Linear(4, 3))
    monkeypatch.setitem(sys.modules, "mypkg", mypkg)
    blob = tmp_path / "eval.pt"
    torch.save({"x": torch.randn(12, 4), "y": torch.randint(3, (12,))}, blob)
    namespace: dict = {"__name__": "my_spec"}
    exec(compile(code, "README.md (spec)", "exec"), namespace)
    spec = namespace["smoothprobe_spec"](data_path=str(blob), batch_size=4, num_batches=3, seed=0)
    problem = smoothprobe.problem_from_module(spec["model"], spec["loss_fn"], spec["data"])
    assert problem.d == 15 and problem.loss() > 0


def test_readme_notebook_examples_run_in_order(capsys):
    """The other blocks run one after another in one namespace, like cells of a notebook."""
    namespace: dict = {"__name__": "readme"}
    blocks = [b for b in readme_blocks() if not b.startswith("# my_spec.py")]
    assert blocks
    for index, code in enumerate(blocks):
        exec(compile(code, f"README.md (block {index})", "exec"), namespace)
    capsys.readouterr()


def modules() -> list[str]:
    names = []
    for package in (smoothprobe, smoothprobe_cli):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            names.append(info.name)
    return names


def test_every_docstring_example_runs():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    examples = 0
    for name in modules():
        module = importlib.import_module(name)
        for test in finder.find(module, name):
            examples += len(test.examples)
            runner.run(test, out=lambda text: None)
    result = runner.summarize(verbose=False)
    assert examples >= 10
    assert result.failed == 0, (
        f"{result.failed} docstring example(s) failed; run pytest "
        "--doctest-modules smoothprobe cli to see them"
    )
