"""Changes of basis θ = R x with R orthogonal (MATH.md §3): seeded, invertible, matrix-free.

A :class:`Basis` applies R and Rᵀ to blocks of vectors: ``to_params(x) = R x`` maps rotated
coordinates to parameter coordinates, ``from_params(g) = Rᵀ g`` maps a parameter-space vector
(a gradient or an HVP) back. The Hessian in the new coordinates is Rᵀ H R
(:class:`~smoothprobe.rotated_operator.RotatedOperator`). All maps work on (d,) or (k, d)
tensors and compute in float32 or better: the result dtype is ``promote(input dtype, float32)``.

============================  ================================================================
spec (``build_basis``)         R
============================  ================================================================
``identity``                   I
``permutation``                a uniformly random coordinate permutation P
``sign``                       a random diagonal of ±1
``hadamard``                   randomized Hadamard: P·D·W·D (see :class:`HadamardBasis`)
``block-haar:K``               block diagonal, Haar-random K×K blocks on consecutive chunks
``matrix``                     W ↦ U W Vᵀ per ≥2-D tensor, Haar U, V (see :class:`MatrixBasis`)
``a+b``                        the composition R_a·R_b (b applied first in ``to_params``)
============================  ================================================================

Any component accepts ``:seed=N`` to override its seed, so a basis name (e.g.
``"hadamard:seed=3"``) rebuilds the same basis.

This module parses a spec into a basis (``build_basis``). The basis classes live in
``basis_classes`` and the orthogonal maps they are made of (``fwht``, ``HadamardMap``,
``DenseMap``, ``haar``) in ``orthogonal_maps``; this module re-exports both.
"""

from __future__ import annotations

from smoothprobe.basis_classes import (
    MAX_BLOCK_HAAR_ENTRIES,
    Basis,
    BlockHaarBasis,
    ComposedBasis,
    HadamardBasis,
    IdentityBasis,
    MatrixBasis,
    PermutationBasis,
    SignBasis,
    compute_dtype,
)
from smoothprobe.errors import SmoothprobeError
from smoothprobe.layout import ParameterLayout
from smoothprobe.orthogonal_maps import (
    DenseMap,
    HadamardMap,
    fwht,
    haar,
    random_signs,
)

BASIS_KINDS = ("identity", "hadamard", "block-haar:K", "matrix", "permutation", "sign")

__all__ = [
    "BASIS_KINDS",
    "MAX_BLOCK_HAAR_ENTRIES",
    "Basis",
    "BlockHaarBasis",
    "ComposedBasis",
    "DenseMap",
    "HadamardBasis",
    "HadamardMap",
    "IdentityBasis",
    "MatrixBasis",
    "PermutationBasis",
    "SignBasis",
    "build_basis",
    "compute_dtype",
    "fwht",
    "haar",
    "random_signs",
]


def _derived_seed(seed: int, index: int, count: int) -> int:
    """Component seeds of a composition: the seed itself for one component, else mixed."""
    return seed if count == 1 else (seed * 1_000_003 + 7_919 * (index + 1)) % (1 << 62)


def _parse_component(text: str, layout: ParameterLayout, seed: int) -> Basis:
    """One component ``kind[:arg][:seed=N][:vectors=identity]``."""
    parts = [p for p in text.strip().split(":") if p]
    if not parts:
        raise SmoothprobeError("empty basis; use one of " + "|".join(BASIS_KINDS))
    kind, args, options = parts[0], [], {}
    for p in parts[1:]:
        if "=" in p:
            key, _, value = p.partition("=")
            options[key] = value
        else:
            args.append(p)
    if "seed" in options:
        seed = _int_option(options.pop("seed"), "seed", text)
    vectors = options.pop("vectors", "haar")
    if options:
        raise SmoothprobeError(
            f"basis {text!r}: unknown option(s) {sorted(options)}; "
            "only seed=N (and vectors=identity for matrix)"
        )
    d = layout.d
    if kind == "block-haar":
        if len(args) != 1:
            raise SmoothprobeError(f"basis {text!r} needs a chunk size, e.g. block-haar:64")
        return BlockHaarBasis(d, chunk=_int_option(args[0], "chunk size", text), seed=seed)
    if args:
        raise SmoothprobeError(f"basis {text!r}: {kind} takes no argument")
    if kind == "matrix":
        return MatrixBasis(layout, seed=seed, vectors=vectors)
    simple = {
        "identity": lambda: IdentityBasis(d),
        "hadamard": lambda: HadamardBasis(d, seed=seed),
        "permutation": lambda: PermutationBasis(d, seed=seed),
        "sign": lambda: SignBasis(d, seed=seed),
    }
    if kind not in simple:
        raise SmoothprobeError(
            f"unknown basis {kind!r}; use " + "|".join(BASIS_KINDS) + " (join with '+' to compose)"
        )
    return simple[kind]()


def _int_option(value: str, what: str, text: str) -> int:
    try:
        out = int(value)
    except ValueError:
        out = -1
    if out < 0:
        raise SmoothprobeError(
            f"basis {text!r}: {what} must be a non-negative integer, got {value!r}"
        )
    return out


def build_basis(spec: str, layout: ParameterLayout, *, seed: int = 0) -> Basis:
    """Parses a CLI ``--basis`` spec.

    Args:
        spec: ``identity``, ``hadamard``, ``block-haar:K``, ``matrix``, ``permutation`` or
            ``sign``; components joined by ``+`` compose (R = R₁·R₂, the last applied first);
            ``:seed=N`` on a component overrides its seed (basis names round-trip).
        layout: the parameter layout (d, and the tensors for ``matrix``).
        seed: seed; components of a composition get distinct seeds derived from it.

    Returns:
        The basis.

    Raises:
        SmoothprobeError: unknown kind, missing or bad chunk size, bad seed.
    """
    if not isinstance(seed, int) or seed < 0:
        raise SmoothprobeError(f"seed={seed!r}: use a non-negative integer")
    texts = (spec or "").split("+")
    bases = [
        _parse_component(t, layout, _derived_seed(seed, i, len(texts))) for i, t in enumerate(texts)
    ]
    return bases[0] if len(bases) == 1 else ComposedBasis(bases)
