"""Number-for-number parity with upstream's fixtures (../shared/fixtures/upstream, see its README).

* Teacher-forced values are the weight-compatibility contract: <= 1e-5 absolute on probabilities.
  Upstream's log_action_probs are log(p + 1e-8) and ours log_softmax, so log-probs are compared as
  exp() (probabilities), and in log space only where p > 1e-4.
* Greedy generation: upstream never advanced RoPE positions while decoding; we
  do, so gazes may differ slightly. We assert the reproduction rate (mean per-frame Jaccard of the
  gazed sets); upstream itself with only that bug fixed reproduces 98.6% at ratio 0.1.
"""
import pytest
import torch
import torch.nn.functional as F

from autogaze.models.autogaze import AutoGaze, AutoGazeImageProcessor
from autogaze.models.autogaze.dict_api import gazes_from_gazing_info
from autogaze.types import Gazes

GREEDY = ["greedy_ratio0.1", "greedy_ratio0.75_req0.7"]


@pytest.fixture(scope="module")
def model(fixtures_dir):
    m, info = AutoGaze.from_pretrained(fixtures_dir / "autogaze_model", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return m.eval()


def fixture_gazes(reference, prefix, P=265) -> Gazes:
    info = {k: reference[f"{prefix}.{k}"] for k in ("gazing_pos", "if_padded_gazing", "num_gazing_each_frame")}
    return gazes_from_gazing_info(info, P)


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean per-frame Jaccard of two masks [B, T, P]."""
    inter, union = (a * b).sum(-1), ((a + b) > 0).sum(-1).clamp_min(1)
    return float((inter / union).mean())


def test_state_dict_keys_equal_checkpoint(model, fixtures_dir):
    from safetensors.torch import load_file

    ckpt = load_file(str(fixtures_dir / "autogaze_model" / "model.safetensors"))
    ours = model.state_dict()
    assert set(ours) == set(ckpt)
    assert all(ours[k].shape == v.shape for k, v in ckpt.items())
    assert sum(p.numel() for p in model.parameters()) == 3_258_240


def test_processor_matches_upstream_preprocessing(fixtures_dir, reference):
    proc = AutoGazeImageProcessor.from_pretrained(fixtures_dir / "autogaze_model")
    video = proc(reference["raw_frames_uint8"])["pixel_values"]
    assert video.shape == (1, 16, 3, 224, 224)
    assert (video - reference["video"]).abs().max() < 1e-5


@torch.no_grad()
def test_teacher_forced_matches(model, reference):
    scores = model.score(reference["video"], fixture_gazes(reference, "greedy_ratio0.1"))
    assert (scores.log_probs.exp() - reference["teacher_forced.gaze_probs"]).abs().max() <= 1e-5
    assert (scores.task_loss_prediction - reference["teacher_forced.task_loss_prediction"]).abs().max() <= 1e-5


@pytest.mark.parametrize("prefix", GREEDY)
@torch.no_grad()
def test_greedy_fixture_scores_match(model, reference, prefix):
    gazes = fixture_gazes(reference, prefix)
    out = model({"video": reference["video"]}, gazing_info=gazes)
    ref_logp = reference[f"{prefix}.log_action_probs"]
    # Padded slots included: our mask and positions reproduce upstream's values there too.
    assert (out["log_action_probs"].exp() - ref_logp.exp()).abs().max() <= 1e-5
    not_tiny = ref_logp.exp() > 1e-4
    assert (out["log_action_probs"] - ref_logp)[not_tiny].abs().max() <= 1e-4
    assert (out["task_loss_prediction"] - reference[f"{prefix}.task_loss_prediction"]).abs().max() <= 1e-5
    # gazing_mask is consistent with gazing_pos: the fixture's own mask equals ours from its ids.
    for i, m in enumerate(out["gazing_mask"]):
        assert torch.equal(m, reference[f"{prefix}.gazing_mask.{i}"])


@pytest.mark.parametrize("prefix, kwargs, min_rate", [
    ("greedy_ratio0.1", dict(gazing_ratio=0.1), 0.97),
    ("greedy_ratio0.75_req0.7", dict(gazing_ratio=0.75, task_loss_requirement=0.7), 0.97),
])
@torch.no_grad()
def test_greedy_generation_reproduces_fixture(model, reference, prefix, kwargs, min_rate):
    out = model({"video": reference["video"]}, generate_only=True, **kwargs)
    ref = fixture_gazes(reference, prefix)
    assert torch.equal(out["num_gazing_each_frame"], ref.num_per_frame)
    ours = gazes_from_gazing_info(out, 265)
    rate = jaccard(ours.to_mask(), ref.to_mask())
    print(f"{prefix}: reproduced {rate:.4f} (mean per-frame Jaccard)")
    assert rate >= min_rate
    assert out["log_action_probs"] is None and out["has_task_loss_requirement"] == ("task_loss_requirement" in kwargs)


@torch.no_grad()
def test_anyres_reproduces_fixture(model, reference):
    video = F.interpolate(reference["video"][0], size=(392, 392), mode="bilinear", align_corners=False)[None]
    out = model({"video": video}, target_scales=[56, 112, 196, 392], target_patch_size=14, gazing_ratio=0.1,
                generate_only=True)
    assert out["num_vision_tokens_each_frame"] == 16 + 64 + 196 + 784
    assert [m.shape[-1] for m in out["gazing_mask"]] == [16, 64, 196, 784]
    assert "log_action_probs" not in out
    ref = fixture_gazes(reference, "anyres_392_p14", P=1060)
    ours = gazes_from_gazing_info(out, 1060)
    assert torch.equal(out["num_gazing_each_frame"], ref.num_per_frame)
    rate = jaccard(ours.to_mask(), ref.to_mask())
    print(f"anyres_392_p14: reproduced {rate:.4f}")
    # Lower than at 224: four tiles of 26 greedy gazes each accumulate the position-bug differences.
    # With the bug re-simulated in a scratch script we reproduced this fixture exactly.
    assert rate >= 0.9
