"""The spectral (Muon) geometry: which tensors are matrices, their scales, the norms (MATH.md §8).

Muon and Scion step every hidden weight matrix W_l (m_l × n_l) along the polar factor of its
momentum: steepest descent in

    ‖x‖_op = max_l s_l ‖X_l‖₂,     dual ‖g‖_op* = Σ_l ‖G_l‖_nuc / s_l.

**Which tensors are Muon matrices** (the explicit default rule, ``DEFAULT_NON_MATRIX``): every
tensor with ≥ 2 dimensions (viewed as shape[0] × the rest, so a conv kernel is out × in·kh·kw)
whose name and tied aliases do *not* name an embedding or an output head (``wte``, ``wpe``,
``embed…``, ``lm_head``, ``head``, ``classifier``, ``output``). For a GPT these are attention
c_attn / c_proj and MLP c_fc / c_proj; the token embedding and its tied head are not, by the
usual Muon convention. A plain MLP's output layer is not recognised by name: pass ``matrices``
(regexes, tried with ``re.search`` like ``partitions.by_regex``) to choose the set yourself.

**Scales** s_l: ``"one"`` (s = 1, Muon) or ``"rms"`` (s = √(n_l/m_l), the RMS→RMS operator norm of
Bernstein's modular norm and Scion).

**The rest** (embeddings, norms, biases): ``mixed=False`` measures the matrix part alone (x and y
vanish off the matrices, i.e. H_op of the principal block H_MM); ``mixed=True`` adds the rest as ℓ∞
coordinates, ‖x‖ = max(‖x‖_op, ‖x_rest‖∞), dual ‖g‖_op* + ‖g_rest‖₁ (Muon on matrices, Adam on the
rest, as Muon is used).

**R** = Σ_l r_l/s_l² (+ d_rest when mixed), r_l = min(m_l, n_l): every x in the unit ball has
‖x‖₂² ≤ R, hence H_op ≤ R·L₂ and ‖g‖_* ≤ √R‖g‖₂.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimators.polar import polar_factor
from smoothprobe.layout import ParameterLayout, TensorSlot
from smoothprobe.partitions import Partition, _compile, from_function

SCALES = ("one", "rms")
DEFAULT_NON_MATRIX = r"(^|\.)(wte|wpe|embed\w*|embeddings?|lm_head|head|classifier|output)(\.|$)"


@dataclass(frozen=True)
class MatrixBlock:
    """One Muon matrix inside θ: coordinates start..stop viewed as rows × cols, with scale s."""

    name: str
    start: int
    stop: int
    rows: int
    cols: int
    scale: float

    @property
    def rank_bound(self) -> int:
        """r = min(m, n): ‖X‖_F ≤ √r‖X‖₂ and ‖Y‖_nuc ≤ √r‖Y‖_F."""
        return min(self.rows, self.cols)


def is_default_matrix(slot: TensorSlot) -> bool:
    """The default rule: ≥ 2-D and no name or alias naming an embedding or a head."""
    names = (slot.name, *slot.aliases)
    return len(slot.shape) >= 2 and not any(re.search(DEFAULT_NON_MATRIX, n) for n in names)


@dataclass(frozen=True, eq=False)
class SpectralGeometry:
    """The norm pair of MATH.md §8 on a parameter layout.

    Attributes:
        blocks: the Muon matrices, in layout order.
        rest: (d_rest,) int64 coordinates that are not in a matrix.
        d: dimension.
        scale: ``"one"`` or ``"rms"``.
        mixed: the rest is ℓ∞ (True) or held at zero (False).
        rule: ``"default"`` or the regexes that chose the matrices.
        polar: ``"svd"`` or ``"newton-schulz"`` for the unit-ball maximiser.
    """

    blocks: tuple[MatrixBlock, ...]
    rest: torch.Tensor
    d: int
    scale: str = "one"
    mixed: bool = False
    rule: str = "default"
    polar: str = "svd"

    @property
    def name(self) -> str:
        """Partition name of the records: ``matrices`` or ``mixed`` (``:rms`` for that scale)."""
        return ("mixed" if self.mixed else "matrices") + (":rms" if self.scale == "rms" else "")

    @property
    def radius_sq(self) -> float:
        """R = Σ r_l/s_l² (+ d_rest when mixed): the largest ‖x‖₂² on the unit ball."""
        r = sum(b.rank_bound / b.scale**2 for b in self.blocks)
        return r + (int(self.rest.numel()) if self.mixed else 0)

    @property
    def min_scale(self) -> float:
        return min(b.scale for b in self.blocks)

    def with_mixed(self, mixed: bool) -> SpectralGeometry:
        """The same matrices with the rest ℓ∞ (True) or excluded (False)."""
        return SpectralGeometry(
            self.blocks, self.rest, self.d, self.scale, mixed, self.rule, self.polar
        )

    def _groups(self) -> dict[tuple[int, int], list[MatrixBlock]]:
        groups: dict[tuple[int, int], list[MatrixBlock]] = {}
        for b in self.blocks:
            groups.setdefault((b.rows, b.cols), []).append(b)
        return groups

    def _stack(self, v: torch.Tensor, group: list[MatrixBlock]) -> torch.Tensor:
        """(k, d) → (k·n, rows, cols) float64 views of one shape group's matrices."""
        mats = [v[:, b.start : b.stop].reshape(v.shape[0], b.rows, b.cols) for b in group]
        return torch.stack(mats, dim=1).reshape(-1, group[0].rows, group[0].cols).to(torch.float64)

    def maximizer(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The unit-ball points y maximising ⟨y, g⟩ for each row g, and those values.

        y_l = polar(G_l)/s_l on matrices, sign(g_rest) on the rest when mixed (else 0); the value
        is ‖g‖_* exactly for ``svd``, and ⟨y, g⟩ ≤ ‖g‖_* for ``newton-schulz``.

        Args:
            g: (k, d) or (d,).

        Returns:
            (y float64 of g's shape, values float64 (k,) or ()).
        """
        single = g.ndim == 1
        v = (g.reshape(1, -1) if single else g).to(torch.float64)
        k = v.shape[0]
        y = torch.zeros_like(v)
        for group in self._groups().values():
            polar, _ = polar_factor(self._stack(v, group), method=self.polar)
            polar = polar.reshape(k, len(group), group[0].rows, group[0].cols)
            for i, b in enumerate(group):
                y[:, b.start : b.stop] = polar[:, i].reshape(k, -1) / b.scale
        if self.mixed and self.rest.numel():
            rest = self.rest.to(v.device)
            y[:, rest] = torch.sign(v[:, rest])
        values = (y * v).sum(-1)
        return (y[0], values[0]) if single else (y, values)

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        """‖x‖ for each row ((k, d) → (k,)); off-matrix entries count only when mixed."""
        from smoothprobe.estimators.polar import sigma_max

        single = x.ndim == 1
        v = (x.reshape(1, -1) if single else x).to(torch.float64)
        out = torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
        for group in self._groups().values():
            top = sigma_max(self._stack(v, group)).reshape(v.shape[0], len(group))
            scales = torch.tensor([b.scale for b in group], dtype=torch.float64, device=v.device)
            out = torch.maximum(out, (top * scales).amax(dim=1))
        if self.mixed and self.rest.numel():
            out = torch.maximum(out, v[:, self.rest.to(v.device)].abs().amax(dim=1))
        return out[0] if single else out

    def dual_norm(self, g: torch.Tensor) -> torch.Tensor:
        """‖g‖_* = Σ‖G_l‖_nuc/s_l (+ ‖g_rest‖₁ when mixed) for each row, by SVD."""
        return SpectralGeometry(
            self.blocks, self.rest, self.d, self.scale, self.mixed, self.rule, "svd"
        ).maximizer(g)[1]

    def matrix_mask(self) -> torch.Tensor:
        """(d,) bool: True on matrix coordinates."""
        mask = torch.zeros(self.d, dtype=torch.bool)
        for b in self.blocks:
            mask[b.start : b.stop] = True
        return mask

    def tensor_partition(self, layout: ParameterLayout) -> Partition:
        """One block per tensor (the blocks of the upper bound), named by tensor."""
        return from_function(layout, lambda slot: slot.name, name=f"tensor:{self.name}")

    def block_weights(self, partition: Partition) -> torch.Tensor:
        """c_b with ‖x_b‖₂ ≤ c_b on the unit ball: √r/s for matrices, √d_b for ℓ∞ tensors, 0 else.

        Then yᵀHx = Σ y_bᵀH_bb'x_b' ≤ Σ c_b c_b' ‖H_bb'‖₂ (MATH.md §8's bound with d_b → r_l).
        """
        by_name = {b.name: math.sqrt(b.rank_bound) / b.scale for b in self.blocks}
        sizes = dict(zip(partition.block_names, partition.sizes.tolist(), strict=True))
        weights = []
        for name in partition.block_names:
            if name in by_name:
                weights.append(by_name[name])
            else:
                weights.append(math.sqrt(sizes[name]) if self.mixed else 0.0)
        return torch.tensor(weights, dtype=torch.float64)

    def describe(self) -> dict:
        """JSON-ready identity for records."""
        return {
            "geometry": "spectral",
            "partition": self.name,
            "scale": self.scale,
            "mixed": self.mixed,
            "matrices": [b.name for b in self.blocks],
            "rule": self.rule,
            "radius_sq": self.radius_sq,
            "d_rest": int(self.rest.numel()),
            "polar": self.polar,
        }


def spectral_geometry(
    layout: ParameterLayout,
    *,
    scale: str = "one",
    mixed: bool = False,
    matrices: Sequence[str] | None = None,
    polar: str = "svd",
) -> SpectralGeometry:
    """Builds the spectral geometry of a layout (see the module docstring for the rule).

    Args:
        layout: the parameter layout.
        scale: ``"one"`` or ``"rms"``.
        mixed: the non-matrix rest as ℓ∞ coordinates (True) or excluded (False).
        matrices: regexes choosing the Muon matrices instead of the default rule.
        polar: ``"svd"`` or ``"newton-schulz"``.

    Returns:
        The geometry.

    Raises:
        SmoothprobeError: unknown scale, no matrix, a regex matching no tensor or a 1-D tensor.

    Example:
        >>> lay = ParameterLayout.from_shapes([("h.0.fc.weight", (4, 2)), ("h.0.fc.bias", (4,))])
        >>> g = spectral_geometry(lay, scale="rms")
        >>> [b.name for b in g.blocks], round(g.blocks[0].scale, 6), round(g.radius_sq, 6)
        (['h.0.fc.weight'], 0.707107, 4.0)
    """
    if scale not in SCALES:
        raise SmoothprobeError(f"spectral scale {scale!r}: use one of {', '.join(SCALES)}")
    chosen = _choose(layout, matrices)
    blocks = []
    for slot in chosen:
        rows = slot.shape[0]
        cols = slot.numel // rows
        s = 1.0 if scale == "one" else math.sqrt(cols / rows)
        blocks.append(MatrixBlock(slot.name, slot.start, slot.stop, rows, cols, s))
    mask = torch.ones(layout.d, dtype=torch.bool)
    for b in blocks:
        mask[b.start : b.stop] = False
    rest = torch.nonzero(mask).reshape(-1)
    rule = "default" if matrices is None else "regex:" + ";".join(matrices)
    geo = SpectralGeometry(tuple(blocks), rest, layout.d, scale, mixed, rule, polar)
    polar_factor(torch.zeros(1, 1, 1), method=polar)  # validates the method name
    return geo


def _choose(layout: ParameterLayout, matrices: Sequence[str] | None) -> list[TensorSlot]:
    if matrices is None:
        chosen = [s for s in layout.slots if is_default_matrix(s) and s.numel]
        if not chosen:
            raise SmoothprobeError(
                "no hidden weight matrix found by the default rule (≥2-D, not an embedding or "
                "head); name the Muon matrices with regexes"
            )
        return chosen
    patterns = [p for p in matrices if p]
    if not patterns:
        raise SmoothprobeError("no matrix regex given; pass at least one, e.g. 'attn|mlp'")
    compiled = [_compile(p) for p in patterns]
    chosen = []
    for rx, p in zip(compiled, patterns, strict=True):
        hits = [s for s in layout.slots if any(rx.search(n) for n in (s.name, *s.aliases))]
        if not hits:
            raise SmoothprobeError(f"matrix regex {p!r} matches no parameter name")
        flat = [s.name for s in hits if len(s.shape) < 2]
        if flat:
            raise SmoothprobeError(
                f"matrix regex {p!r} matches {flat[0]!r}, which is not a matrix (≥2-D); "
                "narrow the regex, e.g. end it with 'weight$'"
            )
        chosen += [s for s in hits if s not in chosen]
    return sorted(chosen, key=lambda s: s.start)
