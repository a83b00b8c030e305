"""Generation returns its own scores: no teacher-forced second pass for the no-grad dict call.

``generate`` reads ``log_probs`` (unmasked, temperature 1) and ``task_loss_prediction`` off the decode
(GazeRollout.scores); they must equal teacher-forced ``score`` of the same gazes (<= 1e-5 fp32 on
real slots) however the gazes were picked, and the upstream fixtures where our gazes equal theirs.
Tiny random model: P = 20 tokens, K = 3, 4 frames (conftest ``model``).
"""
import copy

import pytest
import torch

from autogaze.models.autogaze import AutoGaze
from autogaze.models.autogaze.dict_api import gazes_from_gazing_info
from autogaze.types import Budget, Gazes

B, T, P, K = 2, 4, 20, 3
TOL = 1e-5


@pytest.fixture(scope="module")
def video():
    return torch.randn(B, T, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def spread(model):
    """The tiny model with task-loss predictions spread out, so early stops land mid-chunk and differ per row."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.decoder.task_loss_prediction_head.weight.mul_(20)
    return m


def assert_decode_scores_match(model, video, rollout, tol=TOL):
    """rollout.scores == teacher-forced unmasked temperature-1 scores on the real slots; shapes [B, N]."""
    with torch.no_grad():
        ref = model.score(video, rollout.gazes)
    got, real = rollout.scores, ~rollout.gazes.is_padded
    assert got.log_probs.shape == got.task_loss_prediction.shape == rollout.gazes.ids.shape
    assert not got.log_probs.requires_grad and got.log_probs.dtype == torch.float32
    assert real.any()
    assert (got.log_probs - ref.log_probs)[real].abs().max() <= tol
    assert (got.task_loss_prediction - ref.task_loss_prediction)[real].abs().max() <= tol


def stop_tau(model, video, max_gazes):
    """A tau that cuts some frames short and not others: in the widest gap near the 5% quantile of
    the free-running predictions, so float noise cannot flip a stop."""
    free = model.generate(video, Budget(torch.full((video.shape[0], T), max_gazes)))
    v = free.scores.task_loss_prediction.flatten().sort().values
    q = int(0.05 * v.numel())
    i = int(v[q - 2: q + 3].diff().argmax()) + q - 2
    return float((v[i] + v[i + 1]) / 2)


# max_gazes 7: the last chunk is short (7 = 3 + 3 + 1); 9 and 12: it is full, so its last slot's loss
# comes from the look-ahead feed (clip end) or the next frame's first feed.
@pytest.mark.parametrize("max_gazes", [7, 9, 12])
@pytest.mark.parametrize("sampler", [
    dict(do_sample=False),
    dict(do_sample=True, temperature=2.5, top_k=4),
    dict(do_sample=True, temperature=0.5, top_k=0),
])
def test_generate_scores_equal_teacher_forcing(model, video, max_gazes, sampler):
    g = torch.Generator().manual_seed(3)
    rollout = model.generate(video, Budget(torch.full((B, T), max_gazes)), generator=g, **sampler)
    assert_decode_scores_match(model, video, rollout)


@pytest.mark.parametrize("do_sample", [False, True])
def test_adaptive_stop_scores_equal_teacher_forcing(spread, video, do_sample):
    tau = stop_tau(spread, video, 12)
    budget = Budget(torch.full((B, T), 12), torch.full((B, T), tau))
    rollout = spread.generate(video, budget, do_sample=do_sample, temperature=1.7,
                              generator=torch.Generator().manual_seed(5))
    gz = rollout.gazes
    assert gz.is_padded.any() and gz.num_per_frame.min() < 12  # stops happened
    assert not torch.equal(gz.is_padded[0], gz.is_padded[1])  # ...and differ between the rows
    assert_decode_scores_match(spread, video, rollout)


def test_per_row_budgets_and_large_batch(model):
    # 17 rows (> SpeedOptions.greedy_host_rows): greedy picks take the batched loop, not the host scan.
    video = torch.randn(17, T, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    caps = torch.randint(1, 13, (17, T), generator=torch.Generator().manual_seed(0))
    assert_decode_scores_match(model, video, model.generate(video, Budget(caps)))


def test_dict_call_eval_runs_no_second_pass(model, video, monkeypatch):
    expected = model({"video": video}, gazing_ratio=0.45)  # 9 gazes per frame: full last chunks

    def no_score(*a, **k):
        raise AssertionError("the eval dict call must not teacher-force a second pass")

    monkeypatch.setattr(model, "score", no_score)
    out = model({"video": video}, gazing_ratio=0.45)
    assert out["log_action_probs"].shape == out["task_loss_prediction"].shape == out["gazing_pos"].shape
    assert not out["log_action_probs"].requires_grad
    torch.testing.assert_close(out["log_action_probs"], expected["log_action_probs"], rtol=0, atol=0)
    monkeypatch.undo()
    gz = Gazes(out["gazing_pos"], out["if_padded_gazing"], out["num_gazing_each_frame"], P)
    with torch.no_grad():
        ref = model.score(video, gz)
    real = ~gz.is_padded
    assert (out["log_action_probs"] - ref.log_probs)[real].abs().max() <= TOL
    assert (out["task_loss_prediction"] - ref.task_loss_prediction)[real].abs().max() <= TOL


def test_dict_call_training_with_grad_still_teacher_forces(model, video):
    model.train()
    try:
        out = model({"video": video}, gazing_ratio=0.3, temperature=2.0, generator=torch.Generator().manual_seed(0))
        assert out["log_action_probs"].requires_grad and out["task_loss_prediction"].requires_grad
        with torch.no_grad():  # training mode without grad: the decode's values, no second pass
            nograd = model({"video": video}, gazing_ratio=0.3, temperature=2.0,
                           generator=torch.Generator().manual_seed(0))
    finally:
        model.eval()
    assert torch.equal(nograd["gazing_pos"], out["gazing_pos"])
    real = ~out["if_padded_gazing"]
    assert (nograd["log_action_probs"] - out["log_action_probs"].detach())[real].abs().max() <= TOL


@pytest.mark.parametrize("tau", [None, "stop"])
def test_streaming_scores_equal_whole_clip(spread, video, tau):
    """Frame-by-frame dict calls (use_cache, scores on) give the whole clip's gazes and scores."""
    tau = None if tau is None else stop_tau(spread, video, 9)
    whole = spread({"video": video}, gazing_ratio=0.45, task_loss_requirement=tau)
    caches, logp, tl, ids = {}, [], [], []
    for t in range(T):
        out = spread({"video": video[:, t:t + 1]}, gazing_ratio=0.45, task_loss_requirement=tau, use_cache=True,
                     **caches)
        caches = dict(past_key_values=out["past_key_values"], past_inputs_embeds=out["past_input_embeds"],
                      past_attention_mask=out["past_attention_mask"], past_conv_values=out["past_conv_values"])
        ids.append(out["gazing_pos"] + t * P)
        logp.append(out["log_action_probs"])
        tl.append(out["task_loss_prediction"])
    real = ~whole["if_padded_gazing"]
    assert bool(real.all()) == (tau is None)  # with tau, frames are cut short
    assert torch.equal(torch.cat(ids, 1)[real], whole["gazing_pos"][real])
    gz = Gazes(whole["gazing_pos"], whole["if_padded_gazing"], whole["num_gazing_each_frame"], P)
    with torch.no_grad():
        ref = spread.score(video, gz)
    for got, want in ((torch.cat(logp, 1), ref.log_probs), (torch.cat(tl, 1), ref.task_loss_prediction),
                      (torch.cat(tl, 1), whole["task_loss_prediction"])):
        assert (got - want)[real].abs().max() <= TOL


def test_streaming_with_grad_in_training_is_refused(model, video):
    model.train()
    try:
        with pytest.raises(ValueError, match="streaming"):
            model({"video": video[:, :1]}, gazing_ratio=0.4, use_cache=True)
    finally:
        model.eval()


# ---------------------------------------------------------------- released architecture (fixtures)
@pytest.fixture(scope="module")
def released(fixtures_dir):
    return AutoGaze.from_pretrained(fixtures_dir / "autogaze_model").eval()


@pytest.mark.parametrize("prefix, kwargs", [
    ("greedy_ratio0.1", dict(gazing_ratio=0.1)),
    ("greedy_ratio0.75_req0.7", dict(gazing_ratio=0.75, task_loss_requirement=0.7)),
])
@torch.no_grad()
def test_released_dict_call_scores(released, reference, prefix, kwargs):
    """K = 10, 4 layers: equal to our teacher forcing, and to upstream's fixture while our gazes equal its."""
    video = reference["video"]
    out = released({"video": video}, **kwargs)
    gz = gazes_from_gazing_info(out, 265)
    ref = released.score(video, gz)
    real = ~gz.is_padded
    assert (out["log_action_probs"].exp() - ref.log_probs.exp()).abs().max() <= TOL
    assert (out["log_action_probs"] - ref.log_probs)[real].abs().max() <= TOL
    assert (out["task_loss_prediction"] - ref.task_loss_prediction)[real].abs().max() <= TOL
    # upstream's values: teacher-forced on its gazes, so comparable up to the first slot where ours differ
    fx = gazes_from_gazing_info({k: reference[f"{prefix}.{k}"] for k in
                                 ("gazing_pos", "if_padded_gazing", "num_gazing_each_frame")}, 265)
    n = fx.ids.shape[1]
    if gz.ids.shape[1] == n:
        same = (fx.ids == gz.ids) & (fx.is_padded == gz.is_padded)
        n = int(same[0].long().cumprod(0).sum())
    else:  # per-frame counts differ: compare the frames before the first that does
        n = int(gz.num_per_frame[: int((gz.num_per_frame != fx.num_per_frame).long().argmax())].sum())
    print(f"{prefix}: fixture prefix {n} of {fx.ids.shape[1]} slots")
    assert n >= 100
    fx_logp = reference[f"{prefix}.log_action_probs"][:, :n]
    assert (out["log_action_probs"][:, :n].exp() - fx_logp.exp()).abs().max() <= TOL
    assert (out["task_loss_prediction"][:, :n] - reference[f"{prefix}.task_loss_prediction"][:, :n]).abs().max() <= TOL


def test_anyres_dict_call_omits_scores_without_a_pass(monkeypatch):
    """Any resolution keeps upstream's output (no log_action_probs) and no longer scores to discard it."""
    from autogaze.models.autogaze.config import tiny_config

    torch.manual_seed(0)
    model = AutoGaze(tiny_config(scales="32+64+112+224", num_vision_tokens_each_frame=265,
                                 gaze_model_config=dict(input_img_size=224))).eval()
    monkeypatch.setattr(model, "score", lambda *a, **k: pytest.fail("any-resolution call ran a teacher-forced pass"))
    video = torch.randn(1, 1, 3, 392, 392, generator=torch.Generator().manual_seed(0))
    out = model({"video": video}, gazing_ratio=0.05, target_scales=[56, 112, 196, 392], target_patch_size=14)
    assert "log_action_probs" not in out and "task_loss_prediction" not in out
    assert out["num_vision_tokens_each_frame"] == 1060
