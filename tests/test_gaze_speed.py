"""Fast paths equal the reference masked path (tiny random model: P = 20 tokens, K = 3, 4 frames).

``GazeDecoder.fast_path`` evaluates the layers from their sub-modules and packs padded rows so
attention runs without a mask (decoder.py, layers.py); False selects the reference: each layer's own
forward with one additive mask.
"""
import contextlib

import pytest
import torch

from autogaze.types import Budget, Gazes

B, T, P = 3, 4, 20


@pytest.fixture(scope="module")
def video():
    return torch.randn(B, T, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@contextlib.contextmanager
def reference_path(model):
    model.decoder.fast_path = False
    try:
        yield
    finally:
        model.decoder.fast_path = True


def padded_gazes(n: int, pad_prob: float, seed: int) -> Gazes:
    """n distinct ids per frame, each slot padded with probability pad_prob (rows differ)."""
    g = torch.Generator().manual_seed(seed)
    local = torch.rand(B, T, P, generator=g).argsort(-1)[..., :n]  # [B, T, n]
    ids = (local + torch.arange(T)[None, :, None] * P).flatten(1)  # [B, T*n]
    pad = torch.rand(ids.shape, generator=g) < pad_prob
    return Gazes(ids, pad, torch.full((T,), n), P)


def scores_both(model, video, gazes, **kw):
    fast = model.score(video, gazes, **kw)
    with reference_path(model):
        ref = model.score(video, gazes, **kw)
    return fast, ref


@pytest.mark.parametrize("pad_prob", [0.0, 0.3, 0.9])
@torch.no_grad()
def test_packed_scores_equal_masked(model, video, pad_prob):
    gazes = padded_gazes(7, pad_prob, seed=int(pad_prob * 10))
    fast, ref = scores_both(model, video, gazes)
    # every slot, pads included (upstream scores them too)
    assert (fast.log_probs.exp() - ref.log_probs.exp()).abs().max() < 1e-5
    assert (fast.task_loss_prediction - ref.task_loss_prediction).abs().max() < 1e-5
    masked_fast, masked_ref = scores_both(model, video, gazes, masked=True, temperature=2.0, top_k=5)
    # random gazes fall outside the top-k: -inf on both paths, equal where finite
    a, b = masked_fast.log_probs[~gazes.is_padded], masked_ref.log_probs[~gazes.is_padded]
    assert torch.equal(torch.isfinite(a), torch.isfinite(b)) and torch.isfinite(a).any()
    assert (a - b)[torch.isfinite(a)].abs().max() < 1e-4


def test_packed_gradients_equal_masked(model, video):
    gazes = padded_gazes(6, 0.4, seed=5)

    def grads():
        model.zero_grad(set_to_none=True)
        s = model.score(video, gazes)
        (s.log_probs[~gazes.is_padded].sum() + s.task_loss_prediction.pow(2).sum()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fast = grads()
    with reference_path(model):
        ref = grads()
    model.zero_grad(set_to_none=True)
    assert fast.keys() == ref.keys()
    for name in ref:
        scale = ref[name].abs().max().clamp_min(1e-6)
        assert ((fast[name] - ref[name]).abs().max() / scale) < 1e-4, name


@pytest.mark.parametrize("tau", [None, 0.0])
def test_generation_same_gazes_on_both_paths(model, video, tau):
    budget = Budget(torch.full((B, T), 9), None if tau is None else torch.full((B, T), tau))
    fast = model.generate(video, budget)
    with reference_path(model):
        ref = model.generate(video, budget)
        ref_scores = model.score(video, ref.gazes)
    assert torch.equal(fast.gazes.ids, ref.gazes.ids) and torch.equal(fast.gazes.is_padded, ref.gazes.is_padded)
    with torch.no_grad():
        fast_scores = model.score(video, fast.gazes)
    assert (fast_scores.log_probs.exp() - ref_scores.log_probs.exp()).abs().max() < 1e-5


def test_bf16_packed_close_to_masked(model, video):
    gazes = padded_gazes(7, 0.3, seed=9)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast, ref = scores_both(model, video, gazes)
    assert fast.log_probs.dtype == torch.float32
    assert (fast.log_probs.exp() - ref.log_probs.exp()).abs().max() < 2e-2
