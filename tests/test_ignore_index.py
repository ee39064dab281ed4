"""Batch weights count the targets the loss scores: its own ignore index is skipped (issue 10.8)."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from smoothprobe.batches import default_weight, loss_ignore_index, make_batches
from smoothprobe.models.gpt import lm_loss
from smoothprobe.problem import problem_from_module


def segmentation_sample(ignore: int):
    """Pixels labelled 0..2, with whole rows of the first image set to ``ignore``."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, 4, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(3, (4, 4, 4), generator=gen)
    y[0, :3] = ignore  # batch 1 (images 0, 1) scores 20 pixels, batch 2 (images 2, 3) 32
    return x, y


@pytest.mark.parametrize("ignore", [255, -100])
def test_loss_is_the_mean_over_scored_pixels(ignore):
    x, y = segmentation_sample(ignore)
    net = torch.nn.Conv2d(2, 3, 1).double()
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=ignore)
    problem = problem_from_module(net, loss_fn, (x, y), batch_size=2)
    assert [b.weight for b in problem.batches] == [20.0, 32.0]
    assert problem.ignore_index == ignore and problem.weight_unit == "tokens"
    with torch.no_grad():
        whole = float(F.cross_entropy(net(x), y, ignore_index=ignore))
    assert problem.loss() == pytest.approx(whole, rel=1e-12)


def test_ignore_index_can_be_given():
    x, y = segmentation_sample(7)
    net = torch.nn.Conv2d(2, 3, 1).double()

    def loss_fn(out, target):  # a plain function: its ignore index cannot be read
        return F.cross_entropy(out, target, ignore_index=7)

    assert loss_ignore_index(loss_fn) == -100
    problem = problem_from_module(net, loss_fn, (x, y), batch_size=2, ignore_index=7)
    assert [b.weight for b in problem.batches] == [20.0, 32.0]
    with torch.no_grad():
        whole = float(F.cross_entropy(net(x), y, ignore_index=7))
    assert problem.loss() == pytest.approx(whole, rel=1e-12)


def test_the_loss_own_ignore_index_is_read():
    assert loss_ignore_index(F.cross_entropy) == -100
    assert loss_ignore_index(torch.nn.CrossEntropyLoss()) == -100
    assert loss_ignore_index(torch.nn.NLLLoss(ignore_index=255)) == 255
    assert loss_ignore_index(functools.partial(F.cross_entropy, ignore_index=255)) == 255
    assert loss_ignore_index(functools.partial(F.cross_entropy, label_smoothing=0.1)) == -100
    assert loss_ignore_index(lm_loss) == -1  # nanoGPT's loss
    assert loss_ignore_index(F.mse_loss) == -100


def test_default_weight_and_make_batches():
    y = torch.tensor([[1, 255, 2], [255, 255, 0]])
    assert default_weight(y) == 6.0  # 255 is a class id unless the loss ignores it
    assert default_weight(y, ignore_index=255) == 3.0
    assert default_weight(torch.tensor([[-100, 3, -1]])) == 1.0  # negative ids never score
    batches = make_batches((torch.zeros(2, 3), y), batch_size=1, ignore_index=255)
    assert [b.weight for b in batches] == [2.0, 1.0]
    assert default_weight(torch.tensor([0.5, 1.0])) == 2.0  # examples, not tokens
