"""Option values checked before any work: a bad value is a usage error (exit code 2).

Syntax is checked while click parses the command line (callbacks below); what depends on the
model (a regex that matches no tensor, a rotation too large for d) is checked right after the
checkpoint is loaded and before anything is measured (``check_against_model``). The library's
message says what is wrong; click adds the option's name.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from smoothprobe.errors import SmoothprobeError


def _bad(exc: SmoothprobeError, param_hint: str | None = None) -> click.BadParameter:
    return click.BadParameter(str(exc), param_hint=param_hint)


def _toy_layout():
    """A two-tensor layout: enough to parse every basis spec without a model."""
    from smoothprobe.layout import ParameterLayout

    return ParameterLayout.from_shapes([("w", (2, 2)), ("b", (2,))])


def basis_callback(ctx, param, value):
    """``--basis``: a known kind with valid arguments and options."""
    if value is None or value == "identity":
        return value
    from smoothprobe.bases import build_basis

    try:
        build_basis(value, _toy_layout(), seed=0)
    except SmoothprobeError as exc:
        raise _bad(exc) from None
    return value


def method_callback(ctx, param, value):
    """``--method``: one of the (1,1)-norm methods."""
    from smoothprobe.estimators.l11 import METHODS

    if value not in METHODS:
        raise click.BadParameter(
            f"unknown (1,1)-norm method {value!r}; use one of {', '.join(METHODS)}"
        )
    return value


def extras_callback(ctx, param, value):
    """``--with``: comma-separated ℓ2 extras (repeatable)."""
    out: list[str] = []
    for item in value or ():
        out += [v.strip() for v in item.split(",") if v.strip()]
    if out:
        from smoothprobe.suites.l2 import parse_extras

        try:
            parse_extras(out)
        except SmoothprobeError as exc:
            raise _bad(exc) from None
    return tuple(out)


def _check_partition_syntax(spec: str) -> None:
    from smoothprobe.partitions import SPECS

    spec = spec.strip()
    if not spec:
        raise click.BadParameter("empty partition; use one of " + "|".join(SPECS) + " or a regex")
    if spec in SPECS:
        return
    patterns = spec.removeprefix("regex:").split(";")
    for pattern in (p for p in patterns if p):
        try:
            re.compile(pattern)
        except re.error as err:
            raise click.BadParameter(
                f"invalid regex {pattern!r} ({err}); escape special characters, "
                r"e.g. 'h\.0\.attn', or use one of " + "|".join(SPECS)
            ) from None


def blocks_callback(ctx, param, value):
    """``--blocks``: partition names or regexes (comma-separated, repeatable)."""
    out: list[str] = []
    for item in value or ():
        out += [v.strip() for v in item.split(",") if v.strip()]
    for spec in out:
        _check_partition_syntax(spec)
    return tuple(out)


def geometry_callback(ctx, param, value):
    """``--graddiff-geometry``: l2, linf or a partition spec."""
    if value not in ("l2", "linf"):
        _check_partition_syntax(value)
    return value


def writable_file_callback(ctx, param, value):
    """``--out FILE``: the file can be written (checked before any work)."""
    if value is None:
        return value
    from smoothprobe.records import check_writable

    try:
        check_writable(value)
    except SmoothprobeError as exc:
        raise _bad(exc) from None
    return value


def writable_dir_callback(ctx, param, value):
    """``--out DIR`` / ``--work-dir DIR``: a directory can be created or written there."""
    if value is None:
        return value
    from smoothprobe.records import check_writable

    try:
        check_writable(Path(value) / ".smoothprobe-write-check")
    except SmoothprobeError as exc:
        raise _bad(exc) from None
    return value


def check_against_model(loaded, *, basis: str, blocks, graddiff_geometry=None, seed: int = 0):
    """Builds the basis and partitions for this model: a bad value exits 2 before any work."""
    from smoothprobe.bases import build_basis
    from smoothprobe.partitions import build_partition

    layout = loaded.problem.layout
    try:
        build_basis(basis, layout, seed=seed)
    except SmoothprobeError as exc:
        raise _bad(exc, "'--basis'") from None
    for spec in (*blocks, *([graddiff_geometry] if graddiff_geometry else [])):
        if spec in ("l2", "linf"):
            continue
        hint = "'--blocks'" if spec in blocks else "'--graddiff-geometry'"
        try:
            build_partition(spec, layout, n_head=loaded.n_head)
        except SmoothprobeError as exc:
            raise _bad(exc, hint) from None
