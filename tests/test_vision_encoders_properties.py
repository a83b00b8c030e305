"""Properties of the gazed towers (tiny random SigLIP and DINOv2 built locally, no downloads).

Geometry: patch 8, scales 8+16+32 (grids 1, 2, 4 -> P = 1 + 4 + 16 = 21), 32-px frames.
"""
import pytest
import torch
from transformers import Dinov2WithRegistersConfig, SiglipVisionConfig
from transformers import Dinov2WithRegistersModel as StockDinov2
from transformers import SiglipVisionModel as StockSiglip

from autogaze.types import Gazes
from autogaze.vision_encoders.dinov2 import Dinov2WithRegistersModel
from autogaze.vision_encoders.siglip import SiglipVisionModel

SCALES, P, S = "8+16+32", 21, 32
ATOL = 1e-5
FAMILIES = ["siglip", "dinov2"]
ALL_TYPES = ["block_causal", "causal", "bidirectional", "frame_independent"]


def make_tower(family: str, attn_type: str = "block_causal", **kw):
    torch.manual_seed(0)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  image_size=S, patch_size=8)
    if family == "siglip":
        tower = SiglipVisionModel(SiglipVisionConfig(**common))
    else:
        tower = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**common, num_register_tokens=2))
    tower.configure_gazing(SCALES, attn_type, **kw)
    return tower.eval()


def random_gazes(counts, B: int = 1, pad_prob: float = 0.0, seed: int = 0) -> Gazes:
    """counts[t] distinct random patches in frame t; each slot padded with probability pad_prob,
    but every frame keeps at least one real slot."""
    g = torch.Generator().manual_seed(seed)
    ids, pads = [], []
    for t, n in enumerate(counts):
        local = torch.rand(B, P, generator=g).argsort(-1)[:, :n]  # [B, n]
        pad = torch.rand(B, n, generator=g) < pad_prob
        pad[:, 0] = False
        ids.append(local + t * P)
        pads.append(pad)
    return Gazes(torch.cat(ids, 1), torch.cat(pads, 1), torch.tensor(counts), P)


def video(B: int, T: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, T, 3, S, S, generator=torch.Generator().manual_seed(seed))


def run(tower, pixels, gazes):
    with torch.no_grad():
        return tower(pixels, gazing_info=gazes)


def real_rows(out, gazes) -> torch.Tensor:
    return out.last_hidden_state[~gazes.is_padded]


# ------------------------------------------------------------------ equivalences with stock models


@pytest.mark.parametrize("family", FAMILIES)
def test_full_gaze_one_frame_equals_stock(family):
    tower = make_tower(family)
    stock_cls = StockSiglip if family == "siglip" else StockDinov2
    stock = stock_cls(tower.config.__class__(**{k: v for k, v in tower.config.to_dict().items()
                                                if k not in ("scales", "attn_type")})).eval()
    stock.load_state_dict(tower.state_dict())
    ids = torch.arange(5, P)[None]  # every 4x4 patch of the 32-px scale
    gazes = Gazes(ids, torch.zeros_like(ids, dtype=torch.bool), torch.tensor([16]), P)
    x = video(1, 1)
    out = run(tower, x, gazes)
    with torch.no_grad():
        ref = stock(x[:, 0])
    prefix = 0 if family == "siglip" else 3  # DINOv2: CLS + 2 registers open the stock sequence
    assert torch.allclose(out.last_hidden_state, ref.last_hidden_state[:, prefix:], atol=ATOL)
    assert torch.allclose(out.pooler_output, ref.pooler_output, atol=ATOL)
    if family == "dinov2":
        assert torch.allclose(out.prefix_hidden_state[:, 0], ref.last_hidden_state[:, :3], atol=ATOL)


# ------------------------------------------------------------------ causality and padding


@pytest.mark.parametrize("family", FAMILIES)
def test_block_causal_frame_ignores_later_frames(family):
    tower = make_tower(family)
    x = video(1, 3)
    a = random_gazes([5, 4, 6], seed=0)
    b = random_gazes([5, 4, 9], seed=1)  # frame 2 gets other patches, and more of them
    b.ids[:, :9], b.is_padded[:, :9] = a.ids[:, :9], a.is_padded[:, :9]  # frames 0, 1 (slots 0-8) shared
    x2 = x.clone()
    x2[:, 2] = torch.randn_like(x2[:, 2])  # later pixels change too
    oa, ob = run(tower, x, a), run(tower, x2, b)
    assert torch.allclose(oa.last_hidden_state[:, :9], ob.last_hidden_state[:, :9], atol=ATOL)
    assert not torch.allclose(oa.last_hidden_state[:, 9:11], ob.last_hidden_state[:, 9:11], atol=1e-3)
    if family == "dinov2":  # per-frame CLS obeys the same rule
        assert torch.allclose(oa.prefix_hidden_state[:, :2], ob.prefix_hidden_state[:, :2], atol=ATOL)


@pytest.mark.parametrize("family", FAMILIES)
def test_causal_slot_ignores_later_slots(family):
    tower = make_tower(family, "causal")
    x = video(1, 2)
    a = random_gazes([6, 5], seed=0)
    b = random_gazes([6, 5], seed=3)
    b.ids[:, :4] = a.ids[:, :4]  # the first 4 slots of frame 0 agree, the rest differ
    oa, ob = run(tower, x, a), run(tower, x, b)
    assert torch.allclose(oa.last_hidden_state[:, :4], ob.last_hidden_state[:, :4], atol=ATOL)
    # under block_causal the same slots do see the rest of their frame
    bc = make_tower(family, "block_causal")
    assert not torch.allclose(run(bc, x, a).last_hidden_state[:, :4], run(bc, x, b).last_hidden_state[:, :4],
                              atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("attn_type", ALL_TYPES)
def test_padded_slots_have_no_effect(family, attn_type):
    tower = make_tower(family, attn_type)
    x = video(2, 3)
    g = random_gazes([6, 4, 5], B=2, pad_prob=0.4, seed=2)
    other = Gazes(g.ids.clone(), g.is_padded, g.num_per_frame, P)
    # move every padded slot to another (in-range) patch of its frame
    frame = g.frame_index()[None].expand_as(g.ids)
    other.ids = torch.where(g.is_padded, frame * P + (g.local_ids() + 7) % P, g.ids)
    oa, ob = run(tower, x, g), run(tower, x, other)
    assert torch.allclose(real_rows(oa, g), real_rows(ob, g), atol=ATOL)
    assert torch.allclose(oa.pooler_output, ob.pooler_output, atol=ATOL)
    # and dropping the padded slots altogether (clip 0 alone, its real slots only) changes nothing
    keep = ~g.is_padded[0]
    counts = torch.stack([keep[g.frame_index() == t].sum() for t in range(3)])
    alone = Gazes(g.ids[:1, keep], torch.zeros(1, int(keep.sum()), dtype=torch.bool), counts, P)
    oc = run(tower, x[:1], alone)
    assert torch.allclose(oc.last_hidden_state[0], oa.last_hidden_state[0, keep], atol=ATOL)
    assert torch.allclose(oc.pooler_output[0], oa.pooler_output[0], atol=ATOL)
    assert torch.isfinite(oa.last_hidden_state).all()  # padded rows too (no empty mask row)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("counts", [[6, 3, 5], [4, 4, 4]])  # equal counts: no filler positions
def test_frame_independent_equals_frames_alone(family, counts):
    tower = make_tower(family, "frame_independent")
    x = video(1, 3)
    g = random_gazes(counts, pad_prob=0.3, seed=4)
    out = run(tower, x, g)
    start = 0
    for t, n in enumerate(g.num_per_frame.tolist()):
        ids = g.ids[:, start:start + n] - t * P
        one = run(tower, x[:, t:t + 1], Gazes(ids, g.is_padded[:, start:start + n], torch.tensor([n]), P))
        real = ~g.is_padded[:, start:start + n]
        assert torch.allclose(out.last_hidden_state[:, start:start + n][real], one.last_hidden_state[real],
                              atol=ATOL)
        if family == "dinov2":
            assert torch.allclose(out.prefix_hidden_state[:, t], one.prefix_hidden_state[:, 0], atol=ATOL)
        start += n


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("attn_type", ALL_TYPES)
def test_batch_equals_clips_alone(family, attn_type):
    tower = make_tower(family, attn_type)
    x = video(2, 2)
    g = random_gazes([5, 4], B=2, pad_prob=0.3, seed=5)
    out = run(tower, x, g)
    for b in range(2):
        one = run(tower, x[b:b + 1], g.map(lambda t: t[b:b + 1]))
        real = ~g.is_padded[b]
        assert torch.allclose(out.last_hidden_state[b, real], one.last_hidden_state[0, real], atol=ATOL)
        assert torch.allclose(out.pooler_output[b], one.pooler_output[0], atol=ATOL)


def test_single_frame_types_agree():
    """With one frame, block_causal, bidirectional and frame_independent are the same attention."""
    x, g = video(1, 1), random_gazes([9], pad_prob=0.3, seed=6)
    outs = [real_rows(run(make_tower("siglip", t), x, g), g)
            for t in ("block_causal", "bidirectional", "frame_independent")]
    assert all(torch.allclose(o, outs[0], atol=ATOL) for o in outs[1:])


def test_max_embed_batch_size_changes_nothing():
    x, g = video(2, 3), random_gazes([4, 6, 5], B=2, pad_prob=0.2, seed=7)
    full = run(make_tower("siglip"), x, g).last_hidden_state
    chunked = run(make_tower("siglip", max_embed_batch_size=3), x, g).last_hidden_state  # 1 frame x 2 clips
    assert torch.allclose(full, chunked, atol=1e-6)
