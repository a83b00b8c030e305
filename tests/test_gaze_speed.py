"""Fast paths equal the reference paths (tiny random model: P = 20 tokens, K = 3, 4 frames).

``SpeedOptions()`` (the default) evaluates the decoder layers from their sub-modules and packs
padded rows so attention runs without a mask (decoder.py, layers.py), and picks greedy chunks with
the host scan; ``SpeedOptions.reference()`` selects each layer's own forward with one additive
mask, the head-by-head pick loop and plain ``F.linear`` (speed.py).
"""
import pytest
import torch

import autogaze.utils.linear as fast_linear
from autogaze.models.autogaze import SpeedOptions, speed_options
from autogaze.types import Budget, Gazes

B, T, P = 3, 4, 20
REFERENCE = SpeedOptions.reference()


@pytest.fixture(scope="module")
def video():
    return torch.randn(B, T, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def reference_path(model):
    return speed_options(model, REFERENCE)


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


@pytest.mark.parametrize("do_sample", [False, True])
def test_reference_options_same_gazes_and_scores(model, video, do_sample):
    """SpeedOptions.reference() against the default on the whole generate call (oneDNN on where
    this torch has it, so all three fast pieces run): same gazes, scores within fp tolerance."""
    budget = Budget(torch.full((B, T), 9), torch.full((B, T), 0.0))

    def rollout():
        return model.generate(video, budget, do_sample=do_sample, temperature=1.3,
                              generator=torch.Generator().manual_seed(3))

    with speed_options(model, SpeedOptions(onednn_linear=True)):
        fast = rollout()
    with reference_path(model):
        ref = rollout()
    assert torch.equal(fast.gazes.ids, ref.gazes.ids) and torch.equal(fast.gazes.is_padded, ref.gazes.is_padded)
    torch.testing.assert_close(fast.sample_log_probs, ref.sample_log_probs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.scores.log_probs, ref.scores.log_probs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.scores.task_loss_prediction, ref.scores.task_loss_prediction,
                               rtol=1e-5, atol=1e-5)


def test_speed_options_apply_and_restore(model):
    before = model.speed_options
    assert before == SpeedOptions(onednn_linear=fast_linear.ENABLED, attn_implementation="sdpa")
    assert SpeedOptions() == SpeedOptions(True, 16, None, None)  # the defaults: nothing overridden
    with speed_options(model, REFERENCE) as inside:
        assert inside == SpeedOptions(False, 0, False, "sdpa")  # attention stays as configured
        assert model.decoder.speed.fast_decoder is False and fast_linear.ENABLED is False
        with speed_options(model, SpeedOptions(onednn_linear=True, attn_implementation="eager")):
            assert model.decoder.model.config._attn_implementation == "eager"
            assert fast_linear.ENABLED == fast_linear._AVAILABLE  # process-wide, where torch has oneDNN
        assert model.speed_options == inside
    assert model.speed_options == before
    with pytest.raises(RuntimeError), speed_options(model, REFERENCE):
        raise RuntimeError  # restored on an exception too
    assert model.speed_options == before
    previous = model.set_speed_options(SpeedOptions(greedy_host_rows=0))
    assert previous == before and model.speed_options.greedy_host_rows == 0
    model.set_speed_options(previous)
    assert model.speed_options == before
    with pytest.raises(ValueError):
        SpeedOptions(attn_implementation="flash")
    with pytest.raises(ValueError):
        SpeedOptions(greedy_host_rows=-1)
