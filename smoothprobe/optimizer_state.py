"""Adam/AdamW state from a checkpoint, mapped onto the parameter layout (MATH.md §9).

A torch ``Adam``/``AdamW`` ``state_dict()`` (what nanoGPT saves as ``optimizer``) holds
``state[i]`` = {``exp_avg``, ``exp_avg_sq``, ``step``} for the i-th parameter of the
concatenated param groups, and ``param_groups`` with ``lr``, ``betas``, ``eps``,
``weight_decay``, ``amsgrad``. Nothing in it names the parameters, so the i-th entry is mapped
to a tensor by the order that built the optimizer. The rule: inside every param group the tensors
keep ``named_parameters`` order (true of ``torch.optim.Adam(model.parameters())`` and of
nanoGPT's ``configure_optimizers``, which puts the ≥2-D tensors (decayed) in a first group and
the rest in a second); which tensor went to which group is found by matching shapes, and every
state shape is verified. The order found is recorded as ``named_parameters``, ``nanogpt`` or
``inferred``. A user ``order`` (tensor names, e.g. a spec's ``optimizer_order``) replaces the
search.

Errors (one line each): no optimizer state, an optimizer that is not Adam/AdamW, state whose
shapes do not match the model (a different model), and an ambiguous order (same-shaped tensors
that could sit in different groups): give the order then.

The preconditioner is P = diag(√v̂ + ε), v̂ = v/(1 − β₂^t) (``max_exp_avg_sq`` with amsgrad),
with t each entry's ``step``. Param groups with different learning rates are folded in:
P_i ← P_i·η/η_i with η the largest group rate, so that every coordinate's step is η·P⁻¹g.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.layout import ParameterLayout, TensorSlot

NOT_ADAM_GROUP_KEYS = ("momentum_decay", "lr_decay", "momentum", "decoupled_weight_decay_radam")
NOT_ADAM_STATE_KEYS = ("mu_product", "exp_inf", "sum", "momentum_buffer", "square_avg")


class OptimizerStateError(SmoothprobeError):
    """The checkpoint's optimizer state cannot give Adam's preconditioner."""


@dataclass(frozen=True, eq=False)
class AdamPreconditioner:
    """P = diag(√v̂ + ε) on the layout's coordinates, with the step's hyper-parameters.

    Attributes:
        diagonal: (d,) float64 P (learning-rate ratios of the groups folded in).
        lr: η, the learning rate of the last step (the largest group's).
        beta1, beta2: Adam's betas.
        eps: ε of the first group (per-group ε are folded into ``diagonal``).
        step: the largest ``step`` over the entries.
        weight_decay: per group.
        order: ``named_parameters``, ``nanogpt`` or ``user``.
    """

    diagonal: torch.Tensor
    lr: float
    beta1: float
    beta2: float
    eps: float
    step: int
    weight_decay: tuple[float, ...]
    order: str

    @property
    def aeos_threshold(self) -> float:
        """(2 + 2β₁)/((1 − β₁)η): where λ_max(P⁻¹H) equilibrates (Cohen et al. 2022)."""
        return (2 + 2 * self.beta1) / ((1 - self.beta1) * self.lr)

    def describe(self) -> dict[str, Any]:
        """JSON-ready hyper-parameters for records."""
        return {
            "preconditioner": "adam",
            "lr": self.lr,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "eps": self.eps,
            "adam_step": self.step,
            "weight_decay": list(self.weight_decay),
            "state_order": self.order,
        }


def _check_adam(state: Mapping[str, Any], *, source: str) -> None:
    if not isinstance(state, Mapping) or "state" not in state or "param_groups" not in state:
        raise OptimizerStateError(
            f"{source}: the optimizer entry is not a torch optimizer state_dict "
            "(no 'state' / 'param_groups')"
        )
    groups = state["param_groups"]
    entries = list(state["state"].values())
    keys = {k for g in groups for k in g}
    entry_keys = {k for e in entries for k in e}
    if (
        "betas" not in keys
        or "amsgrad" not in keys
        or any(k in keys for k in NOT_ADAM_GROUP_KEYS)
        or any(k in entry_keys for k in NOT_ADAM_STATE_KEYS)
        or (entries and "exp_avg_sq" not in entry_keys)
    ):
        raise OptimizerStateError(
            f"{source}: the saved optimizer is not Adam/AdamW (param group keys "
            f"{sorted(keys)[:6]}); the Adam preconditioner needs exp_avg_sq and betas"
        )
    if not entries:
        raise OptimizerStateError(
            f"{source}: the Adam state is empty (saved before the first step); measure a later "
            "checkpoint"
        )


def _group_orders(
    layout: ParameterLayout, groups: list[list[tuple[int, ...]]], *, limit: int = 100_000
) -> list[list[TensorSlot]]:
    """Every way (up to two) to deal the layout's tensors into the groups with matching shapes,
    keeping ``named_parameters`` order inside each group.

    Raises:
        OptimizerStateError: the search would exceed ``limit`` steps.
    """
    slots = list(layout.slots)
    found: list[list[TensorSlot]] = []
    steps = 0

    def subsequences(pattern, pool, chosen, at):
        nonlocal steps
        steps += 1
        if steps > limit:
            raise OptimizerStateError(
                "too many ways to match the optimizer state to the parameters; give the order"
            )
        if len(chosen) == len(pattern):
            yield list(chosen)
            return
        want = pattern[len(chosen)]
        for j in range(at, len(pool) - (len(pattern) - len(chosen)) + 1):
            if tuple(pool[j].shape) == want:
                chosen.append(j)
                yield from subsequences(pattern, pool, chosen, j + 1)
                chosen.pop()

    def deal(g, pool, prefix):
        if len(found) > 1:
            return
        if g == len(groups) - 1 or not groups:
            if [tuple(s.shape) for s in pool] == (groups[g] if groups else []):
                found.append(prefix + pool)
            return
        for picked in subsequences(groups[g], pool, [], 0):
            taken = set(picked)
            rest = [s for j, s in enumerate(pool) if j not in taken]
            deal(g + 1, rest, prefix + [pool[j] for j in picked])
            if len(found) > 1:
                return

    deal(0, slots, [])
    return found


def _order_name(layout: ParameterLayout, slots: list[TensorSlot]) -> str:
    named = list(layout.slots)
    if slots == named:
        return "named_parameters"
    if slots == [s for s in named if len(s.shape) >= 2] + [s for s in named if len(s.shape) < 2]:
        return "nanogpt"
    return "inferred"


def _resolve_order(
    layout: ParameterLayout,
    shapes: list[list[tuple[int, ...]]],
    order: Sequence[str] | None,
    *,
    source: str,
) -> tuple[str, list[TensorSlot]]:
    """The tensor of every state entry (concatenated groups), checked shape by shape."""
    flat = [sh for group in shapes for sh in group]
    if order is not None:
        try:
            slots = [layout.slot(n) for n in order]
        except KeyError as exc:
            raise OptimizerStateError(
                f"optimizer order names {exc.args[0]!r}, which is not a measured parameter"
            ) from None
        if [tuple(s.shape) for s in slots] != flat:
            raise OptimizerStateError(
                f"{source}: the given optimizer order does not match the state's shapes "
                f"({len(slots)} names for {len(flat)} state tensors)"
            )
        return "user", slots
    if Counter(flat) != Counter(tuple(s.shape) for s in layout.slots):
        raise OptimizerStateError(
            f"{source}: the optimizer state ({len(flat)} tensors) does not match the model's "
            f"{len(layout.slots)} parameters in shape: it is the state of a different model"
        )
    found = _group_orders(layout, shapes)
    if not found:
        raise OptimizerStateError(
            f"{source}: the optimizer's param groups cannot be matched to the parameters in "
            "named_parameters order; give the order explicitly"
        )
    if len(found) > 1:
        raise OptimizerStateError(
            f"{source}: the optimizer state fits the parameters in more than one order "
            f"(same-shaped tensors in different groups); give the order explicitly"
        )
    return _order_name(layout, found[0]), found[0]


def adam_preconditioner(
    state: Mapping[str, Any] | None,
    layout: ParameterLayout,
    *,
    order: Sequence[str] | None = None,
    source: str = "checkpoint",
) -> AdamPreconditioner:
    """Maps a torch Adam/AdamW state_dict onto a layout and forms P = diag(√v̂ + ε).

    Args:
        state: the optimizer ``state_dict()`` (None: the checkpoint has none).
        layout: the measured parameters.
        order: tensor names in the order the optimizer was built with (replaces the guesses).
        source: the checkpoint's name, for messages.

    Returns:
        The preconditioner.

    Raises:
        OptimizerStateError: no state, not Adam/AdamW, a shape mismatch (different model),
            an ambiguous order, or groups with different betas.
    """
    if state is None:
        raise OptimizerStateError(
            f"{source} holds no optimizer state; save the optimizer's state_dict() as "
            "'optimizer' next to the model (nanoGPT does)"
        )
    _check_adam(state, source=source)
    groups = state["param_groups"]
    ids = [i for g in groups for i in g["params"]]
    group_of = {i: j for j, g in enumerate(groups) for i in g["params"]}
    missing = [i for i in ids if i not in state["state"]]
    if missing:
        raise OptimizerStateError(
            f"{source}: no Adam state for parameter #{missing[0]} (never stepped); measure a "
            "later checkpoint"
        )
    shapes = [[tuple(state["state"][i]["exp_avg_sq"].shape) for i in g["params"]] for g in groups]
    name, slots = _resolve_order(layout, shapes, order, source=source)
    betas = {tuple(g["betas"]) for g in groups}
    if len(betas) > 1:
        raise OptimizerStateError(f"{source}: param groups have different betas {sorted(betas)}")
    (beta1, beta2), lr = next(iter(betas)), max(float(g["lr"]) for g in groups)
    if not lr > 0 or any(not float(g["lr"]) > 0 for g in groups):
        raise OptimizerStateError(
            f"{source}: a param group has learning rate {min(float(g['lr']) for g in groups)}; "
            "the stability threshold needs the positive rate of the last step"
        )
    diagonal = torch.empty(layout.d, dtype=torch.float64)
    step = 0
    for i, slot in zip(ids, slots, strict=True):
        group = groups[group_of[i]]
        entry = state["state"][i]
        t = int(torch.as_tensor(entry["step"]).item())
        step = max(step, t)
        v = entry["max_exp_avg_sq"] if group.get("amsgrad") else entry["exp_avg_sq"]
        v_hat = v.detach().to(torch.float64).reshape(-1) / (1 - beta2 ** max(t, 1))
        p = v_hat.sqrt() + float(group["eps"])
        diagonal[slot.start : slot.stop] = p * (lr / float(group["lr"]))
    return AdamPreconditioner(
        diagonal=diagonal,
        lr=lr,
        beta1=float(beta1),
        beta2=float(beta2),
        eps=float(groups[0]["eps"]),
        step=step,
        weight_decay=tuple(float(g.get("weight_decay", 0.0)) for g in groups),
        order=name,
    )
