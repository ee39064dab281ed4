"""Renders a report's index.html in headless Chromium and saves a PNG screenshot.

Checks that the report displays in a real browser (issue 7). Needs Debian's ``chromium``
package (``apt-get install -y chromium``); no network access is used.

Usage:
    python scripts/screenshot_report.py reports/demo                 # → reports/demo/screenshot.png
    python scripts/screenshot_report.py reports/demo --out shot.png --height 3000
    python scripts/screenshot_report.py --example /tmp/example-report  # synthetic records first
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str:
    """Returns the path of a Chromium binary or exits with an install hint."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no Chromium found; install it with: apt-get update && apt-get install -y chromium")


def screenshot(index: Path, out: Path, *, width: int, height: int, timeout: float) -> Path:
    """Renders ``index`` (an HTML file) to ``out`` (PNG) and returns ``out``.

    Raises:
        RuntimeError: when Chromium fails or writes no PNG.
    """
    out = out.absolute()
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="smoothprobe-chromium-") as profile:
        cmd = [
            find_browser(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={width},{height}",
            index.absolute().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(
            f"chromium failed (exit {proc.returncode}); stderr tail:\n{proc.stderr[-2000:]}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", help="report directory (with index.html) or an HTML file")
    parser.add_argument("--out", type=Path, help="PNG path (default: REPORT/screenshot.png)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--example",
        action="store_true",
        help="first write a report from synthetic example records into REPORT",
    )
    args = parser.parse_args(argv)
    target = Path(args.report)
    if args.example:
        import pandas as pd

        from smoothprobe.report.example_records import example_records
        from smoothprobe.report.render import write_report

        write_report(
            pd.DataFrame(example_records()),
            target,
            title="smoothprobe report — synthetic example records",
        )
    index = target / "index.html" if target.is_dir() else target
    if not index.exists():
        sys.exit(f"{index} not found; pass a report directory written by `smoothprobe report`")
    out = args.out or index.parent / "screenshot.png"
    print(screenshot(index, out, width=args.width, height=args.height, timeout=args.timeout))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
