"""Layered imports: records, the comparison and the report never load torch; the root is lazy."""

from __future__ import annotations

import subprocess
import sys

import pytest

LIGHT_MODULES = [
    "smoothprobe",
    "smoothprobe.records",
    "smoothprobe.compare",
    "smoothprobe.bounds",
    "smoothprobe.report.tables",
    "smoothprobe.report.format",
    "smoothprobe.report.figure_data",
    "smoothprobe.report.headline_text",
    "smoothprobe.report.render",
    "smoothprobe.report.plots",
    "smoothprobe_cli.main",
]


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_module_does_not_import_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", f"{module} imports torch"


def test_package_root_is_lazy_but_exports_every_name():
    code = (
        "import sys, smoothprobe\n"
        "assert 'torch' not in sys.modules\n"
        "for name in smoothprobe.__all__:\n"
        "    getattr(smoothprobe, name)\n"
        "print('torch' in sys.modules, smoothprobe.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, version = out.stdout.split()
    assert loaded == "True"  # the names themselves still work (and load torch on use)
    assert version and version[0].isdigit()


def test_unknown_attribute_is_an_attribute_error():
    import smoothprobe

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        smoothprobe.nope  # noqa: B018


def test_records_module_does_not_import_the_package_root_exports():
    code = (
        "import sys, smoothprobe.records\n"
        "heavy = ('problem', 'operators', 'bases', 'suites')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[1:2] and m.split('.')[1] in heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_library_never_imports_the_report_layer_or_the_cli():
    """Only report/ itself, the demo (an application that writes a report) and ``__main__``
    (the launcher of ``python -m smoothprobe`` / torchrun, i.e. the CLI) may."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "smoothprobe"
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("report/") or rel in ("demo.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n.startswith(("smoothprobe.report", "smoothprobe_cli")) for n in names):
                offenders.append(rel)
    assert offenders == []
