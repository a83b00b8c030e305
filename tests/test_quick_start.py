"""The QUICK_START inference flow, as a user of the released model writes it, against this package.

Load the processor and model with ``from_pretrained`` (the fixture folder stands in for the hub id),
read 16 frames with PyAV, process them, gaze under ``inference_mode``; then the documented variants:
another ViT geometry, long / high-resolution video as a batch of 16-frame 224 pieces, streaming, and
a gazed SigLIP tower that encodes only the gazed patches.
The fixture has the released architecture with random weights (its README), so the test checks
the contract (keys, shapes, id ranges, consistency), not what a trained model would gaze at.
"""
from __future__ import annotations

import av
import pytest
import torch
from einops import rearrange

from autogaze.datasets.synthetic import make_clip, write_mp4
from autogaze.datasets.video_utils import read_video_pyav, sample_frame_indices, transform_video_for_pytorch
from autogaze.models.autogaze import AutoGaze, AutoGazeImageProcessor

P = 265  # tokens per frame of the released model: 4 + 16 + 49 + 196
KEYS = {"gazing_pos", "if_padded_gazing", "num_gazing_each_frame", "log_action_probs", "task_loss_prediction",
        "gazing_mask", "scales", "frame_sampling_rate", "num_vision_tokens_each_frame", "has_task_loss_requirement",
        "task_loss_requirement", "past_key_values", "past_input_embeds", "past_attention_mask", "past_conv_values"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # a 3M-parameter model: on 2 shared cores a second thread spins (10x slower)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def released(fixtures_dir):
    folder = fixtures_dir / "autogaze_model"  # what AutoGaze.from_pretrained("nvidia/AutoGaze") downloads
    return (AutoGazeImageProcessor.from_pretrained(folder), AutoGaze.from_pretrained(folder).eval(), folder)


def _read(path, clip_len: int, seed: int = 0):
    """QUICK_START's reading idiom: sample indices from the stored frame count, decode with PyAV."""
    with av.open(str(path)) as container:
        seg_len = container.streams.video[0].frames
        indices = sample_frame_indices(clip_len=clip_len, frame_sample_rate=1, seg_len=seg_len,
                                       generator=torch.Generator().manual_seed(seed))
        return read_video_pyav(container, indices)


def _real_per_frame(out: dict, row: int = 0) -> list[torch.Tensor]:
    """The real (unpadded) gaze ids of each frame of one batch row."""
    ids, pad = out["gazing_pos"][row], out["if_padded_gazing"][row]
    split = out["num_gazing_each_frame"].tolist()
    return [i[~p] for i, p in zip(ids.split(split), pad.split(split))]


def _check_gazes(out: dict, T: int, tokens: int, cap: int, rows: int = 1) -> None:
    """Ids of frame t lie in [t * tokens, (t + 1) * tokens), at most ``cap`` real ones, no repeats;
    the per-scale masks mark exactly the real gazes."""
    N = int(out["num_gazing_each_frame"].sum())
    assert out["gazing_pos"].shape == out["if_padded_gazing"].shape == (rows, N)
    assert out["num_gazing_each_frame"].shape == (T,)
    for b in range(rows):
        for t, ids in enumerate(_real_per_frame(out, b)):
            assert 1 <= ids.numel() <= cap and ids.unique().numel() == ids.numel()
            assert bool(((ids >= t * tokens) & (ids < (t + 1) * tokens)).all())
    mask = torch.cat(out["gazing_mask"], dim=-1)  # [rows, T, tokens]
    counts = torch.tensor([[ids.numel() for ids in _real_per_frame(out, b)] for b in range(rows)])
    assert mask.shape == (rows, T, tokens) and torch.equal(mask.sum(-1).long(), counts)


def test_quick_start_flow(released, tmp_path):
    processor, model, _ = released
    path = write_mp4(tmp_path / "clip.mp4", make_clip(24, 256, seed=0))  # longer than 16: a random window
    video = _read(path, 16)
    assert video.shape == (16, 256, 256, 3)
    inputs = transform_video_for_pytorch(video, processor)
    assert inputs.shape == (1, 16, 3, 224, 224)
    with torch.inference_mode():
        out = model({"video": inputs}, gazing_ratio=0.75, task_loss_requirement=0.7)
    assert set(out) == KEYS
    _check_gazes(out, 16, P, cap=int(0.75 * P))
    N = out["gazing_pos"].shape[1]
    assert out["log_action_probs"].shape == out["task_loss_prediction"].shape == (1, N)
    assert [m.shape for m in out["gazing_mask"]] == [(1, 16, n) for n in (4, 16, 49, 196)]
    assert out["scales"] == [32, 64, 112, 224] and out["num_vision_tokens_each_frame"] == P
    assert out["frame_sampling_rate"] == 1 and out["has_task_loss_requirement"] is True
    assert torch.allclose(out["task_loss_requirement"], torch.full((1, 16), 0.7))
    assert all(out[k] is None for k in KEYS if k.startswith("past_"))  # no caches unless use_cache


def test_other_vit_geometry(released, tmp_path):
    """A ViT with 14-px patches at 392: four target scales and a processor at that size."""
    _, model, folder = released
    processor = AutoGazeImageProcessor.from_pretrained(folder, size={"shortest_edge": 392})
    video = _read(write_mp4(tmp_path / "clip.mp4", make_clip(16, 448, seed=1)), 16)
    inputs = transform_video_for_pytorch(video, processor)
    assert inputs.shape == (1, 16, 3, 392, 392)
    with torch.inference_mode():
        out = model({"video": inputs}, gazing_ratio=0.75, task_loss_requirement=0.7,
                    target_scales=[56, 112, 196, 392], target_patch_size=14)
    tokens = sum((s // 14) ** 2 for s in (56, 112, 196, 392))  # 16 + 64 + 196 + 784 = 1060
    assert out["scales"] == [56, 112, 196, 392] and out["num_vision_tokens_each_frame"] == tokens
    assert [m.shape for m in out["gazing_mask"]] == [(1, 16, n) for n in (16, 64, 196, 784)]
    # the budget applies per 224 tile (2 x 2 tiles here), so a frame holds up to 4 tiles' worth of gazes
    _check_gazes(out, 16, tokens, cap=4 * int(0.75 * P))


def test_long_high_resolution_video_as_one_batch(released, tmp_path):
    """32 frames of 224 x 448: two 16-frame chunks x two 224 x 224 tiles, gazed as a batch of 4."""
    processor, model, _ = released
    video = _read(write_mp4(tmp_path / "long.mp4", make_clip(32, (224, 448), seed=2)), 32)
    inputs = transform_video_for_pytorch(video, processor)
    assert inputs.shape == (1, 32, 3, 224, 448)
    pieces = rearrange(inputs, "1 (n t) c h (j w) -> (n j) t c h w", t=16, w=224)
    assert pieces.shape == (4, 16, 3, 224, 224)
    assert torch.equal(pieces[3], inputs[0, 16:, :, :, 224:])  # chunk 1, right tile
    with torch.inference_mode():
        out = model({"video": pieces}, gazing_ratio=0.75, task_loss_requirement=0.7)
        alone = model({"video": pieces[1:2]}, gazing_ratio=0.75, task_loss_requirement=0.7)
    _check_gazes(out, 16, P, cap=int(0.75 * P), rows=4)
    # batching the pieces changes nothing: a piece gazed on its own gets the same gazes
    for a, b in zip(_real_per_frame(out, 1), _real_per_frame(alone)):
        assert torch.equal(a, b)


def test_streaming_frame_by_frame_equals_the_clip(released, tmp_path):
    """use_cache=True, one frame per call, the four past_* caches passed back: the clip's gazes.

    At τ = 0.7 the random-weight fixture stops every frame after one gaze, so the ratio cap alone
    (26 gazes per frame, three K = 10 decode steps) makes the comparison meaningful.
    """
    processor, model, _ = released
    inputs = transform_video_for_pytorch(_read(write_mp4(tmp_path / "clip.mp4", make_clip(16, 224, seed=3)), 16),
                                         processor)
    with torch.inference_mode():
        whole = model({"video": inputs}, gazing_ratio=0.1)
        caches: dict = {}
        for t in range(16):
            out = model({"video": inputs[:, t:t + 1]}, gazing_ratio=0.1, generate_only=True, use_cache=True, **caches)
            caches = dict(past_key_values=out["past_key_values"], past_inputs_embeds=out["past_input_embeds"],
                          past_attention_mask=out["past_attention_mask"], past_conv_values=out["past_conv_values"])
            local = _real_per_frame(out)[0]  # frame-local ids: add t * 265 for the clip's ids
            assert local.numel() == int(0.1 * P) and bool((local < P).all())
            assert torch.equal(local + t * P, _real_per_frame(whole)[t]), t


def test_siglip_on_the_gazes(released, fixtures_dir, tmp_path):
    """Gaze, then encode only the gazed patches with a SigLIP tower loaded from a stock checkpoint
    (the fixture's tiny stock tower stands in for google/siglip2-base-patch16-224); keep each clip's
    real rows as the tokens an MLLM would receive."""
    from transformers import SiglipImageProcessor

    from autogaze.vision_encoders.siglip import SiglipVisionModel

    processor, model, _ = released
    tower_dir = fixtures_dir / "siglip" / "p16_224"
    siglip_processor = SiglipImageProcessor.from_pretrained(tower_dir)
    tower = SiglipVisionModel.from_pretrained(tower_dir, scales="32+64+112+224", attn_type="block_causal",
                                              attn_implementation="sdpa").eval()
    video = _read(write_mp4(tmp_path / "clip.mp4", make_clip(16, 224, seed=4)), 16)
    inputs = transform_video_for_pytorch(video, processor)
    pixels = siglip_processor(images=list(video), return_tensors="pt")["pixel_values"][None]  # [1, 16, 3, 224, 224]
    with torch.inference_mode():
        gaze = model({"video": inputs}, gazing_ratio=0.1)
        features = tower(pixels, gazing_info=gaze).last_hidden_state  # [1, N, D], one row per slot
    N = gaze["gazing_pos"].shape[1]
    assert features.shape == (1, N, tower.config.hidden_size)
    kept = features[0][~gaze["if_padded_gazing"][0]]  # the real gazes' features only
    assert kept.shape[0] == int((~gaze["if_padded_gazing"]).sum()) == 16 * int(0.1 * P)
    assert torch.isfinite(kept).all()
