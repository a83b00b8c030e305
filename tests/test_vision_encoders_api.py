"""Gazed towers: mask construction, token layout, flash packing, precision, loading and errors."""
import pytest
import torch
import torch.nn.functional as F

import autogaze.vision_encoders.attention as attention
from autogaze.types import Gazes
from autogaze.vision_encoders.attention import build_attention
from autogaze.vision_encoders.gazed import TokenLayout
from autogaze.vision_encoders.siglip import SiglipVisionModel

from .test_vision_encoders_properties import ALL_TYPES, FAMILIES, P, make_tower, random_gazes, real_rows, run, video

ATOL = 1e-5


# ------------------------------------------------------------------ mask and layout, by hand


def test_block_causal_mask_by_hand():
    # frames [0, 0, 1], position 1 is filler: q0 sees k0; q1 (filler) sees k0 and itself;
    # q2 sees k0, k2 (frame 0 and its own frame).
    frames = torch.tensor([[0, 0, 1]])
    m = build_attention(torch.tensor([[True, False, True]]), "block_causal", frames).mask
    assert m.shape == (1, 1, 3, 3) and m.dtype == torch.bool
    assert m[0, 0].int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 0, 1]]
    m = build_attention(torch.ones(1, 3, dtype=torch.bool), "block_causal", frames).mask
    assert m.shape == (1, 1, 3, 3) and m[0, 0].int().tolist() == [[1, 1, 0], [1, 1, 0], [1, 1, 1]]
    # causal is token order, one [1, 1, L, L] rule for the batch; bidirectional only hides filler
    # keys, as a [B, 1, 1, L] mask, and needs no mask at all without filler
    m = build_attention(torch.ones(4, 3, dtype=torch.bool), "causal").mask
    assert m.shape == (1, 1, 3, 3) and m[0, 0].int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    m = build_attention(torch.tensor([[True, False, True]]), "bidirectional").mask
    assert m.shape == (1, 1, 1, 3) and m.flatten().tolist() == [True, False, True]
    assert build_attention(torch.ones(2, 3, dtype=torch.bool), "bidirectional").mask is None


def test_token_layout_by_hand():
    # 2 frames with 2 and 1 slots, slot 1 padded, 1 prefix token: [pre0, s0, pre1, s2]; the padded
    # slot goes to the dump position (size = 4) and reads back as zeros.
    g = Gazes(torch.tensor([[0, 1, P]]), torch.tensor([[False, True, False]]), torch.tensor([2, 1]), P)
    lay = TokenLayout.make(g, 1, grouped=False)
    assert lay.slot_index.tolist() == [[1, 4, 3]] and lay.prefix_index.tolist() == [[0, 2]]
    assert lay.frame_of_token.tolist() == [[0, 0, 1, 1]] and (lay.rows, lay.length) == (1, 4)
    slots, prefix = torch.tensor([[[1.0], [2.0], [3.0]]]), torch.tensor([[-1.0]])
    seq, is_real = lay.pack(slots, prefix)
    assert seq[..., 0].tolist() == [[-1, 1, -1, 3]] and is_real.all()
    out, pre = lay.unpack(seq, 1, 1)
    assert out[..., 0].tolist() == [[1, 0, 3]] and pre[..., 0].tolist() == [[[-1], [-1]]]
    # grouped: W = 1 + 1 (the most real slots in a frame); frame t's row is [pre_t, its real slot]
    lay = TokenLayout.make(g, 1, grouped=True)
    assert lay.slot_index.tolist() == [[1, 4, 3]] and lay.prefix_index.tolist() == [[0, 2]]
    assert (lay.rows, lay.length) == (2, 2)
    seq, is_real = lay.pack(slots, prefix)
    assert seq[..., 0].tolist() == [[-1, 1], [-1, 3]] and is_real.all()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("attn_type", ALL_TYPES)
def test_one_mask_per_forward_shared_by_layers(family, attn_type, monkeypatch):
    """Every layer gets the same GazedAttention; its mask is bool and at most [B, 1, L, L]."""
    seen, built = [], []
    real_build, real_fwd = attention.build_attention, attention.gazed_attention_forward

    def spy_build(*a, **k):
        built.append(real_build(*a, **k))
        return built[-1]

    def spy_fwd(module, q, k, v, mask, **kw):
        seen.append((mask, q.shape))
        return real_fwd(module, q, k, v, mask, **kw)

    monkeypatch.setattr("autogaze.vision_encoders.gazed.build_attention", spy_build)
    attention.AttentionInterface.register(attention.GAZED_ATTENTION, spy_fwd)
    try:
        tower = make_tower(family, attn_type)
        g = random_gazes([5, 4, 6], B=2, pad_prob=0.3)
        run(tower, video(2, 3), g)
    finally:
        attention.AttentionInterface.register(attention.GAZED_ATTENTION, real_fwd)
    assert len(built) == 1 and len(seen) == 2 and all(m is built[0] for m, _ in seen)
    mask, (Bq, H, L, _) = built[0].mask, seen[0][1]
    assert mask.dtype == torch.bool and mask.dim() == 4 and mask.shape[1] == 1  # broadcast over heads
    assert mask.shape[0] == Bq and mask.shape[-1] == L and mask.shape[-2] in (1, L)
    if attn_type == "frame_independent":  # one short sequence per (clip, frame): linear in frames
        assert Bq == 2 * 3 and mask.shape[-2] == 1


# ------------------------------------------------------------------ flash-attn packing (CPU stand-in)


def reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=0.0, softmax_scale=None, causal=False):
    """What flash_attn_varlen_func computes, one sequence at a time: [M, H, d] -> [M, H, d]."""
    out = torch.empty_like(q)
    for a, b in zip(cu_q[:-1].tolist(), cu_q[1:].tolist()):
        qi, ki, vi = (x[a:b].transpose(0, 1)[None] for x in (q, k, v))  # [1, H, n, d]
        o = F.scaled_dot_product_attention(qi, ki, vi, is_causal=causal, scale=softmax_scale)
        out[a:b] = o[0].transpose(0, 1)
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("attn_type", ["causal", "bidirectional", "frame_independent"])
def test_varlen_packing_matches_masked_sdpa(family, attn_type, monkeypatch):
    x, g = video(2, 3), random_gazes([5, 4, 6], B=2, pad_prob=0.3, seed=8)
    tower = make_tower(family, attn_type)
    want = run(tower, x, g)
    monkeypatch.setattr(attention, "VARLEN_KERNEL", lambda: reference_varlen)
    monkeypatch.setattr(type(tower), "_use_varlen", lambda self, device, dtype: True)
    got = run(tower, x, g)
    assert torch.allclose(real_rows(got, g), real_rows(want, g), atol=ATOL)
    assert torch.allclose(got.pooler_output, want.pooler_output, atol=ATOL)


def test_flash_request_without_flash_attn_falls_back(monkeypatch):
    monkeypatch.setattr(attention, "flash_available", lambda: False)
    with pytest.warns(UserWarning, match="using sdpa"):
        tower = make_tower("siglip", attn_implementation="flash_attention_2")
    assert tower.gazing.backend == "sdpa"


# ------------------------------------------------------------------ precision and devices


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_autocast_runs(family):
    tower = make_tower(family)
    x, g = video(1, 2), random_gazes([6, 5], pad_prob=0.3)
    ref = run(tower, x, g)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out = tower(x, gazing_info=g)
    assert out.last_hidden_state.shape == ref.last_hidden_state.shape
    assert torch.isfinite(out.last_hidden_state).all() and torch.isfinite(out.pooler_output).all()
    assert (out.last_hidden_state.float() - ref.last_hidden_state).abs().max() < 0.25  # bf16 rounding only


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_cuda_matches_cpu():
    tower = make_tower("siglip")
    x, g = video(1, 2), random_gazes([6, 5], pad_prob=0.3)
    ref = run(tower, x, g)
    out = run(tower.cuda(), x.cuda(), g.to("cuda"))
    assert torch.allclose(real_rows(out, g.to("cuda")).cpu(), real_rows(ref, g), atol=1e-4)


# ------------------------------------------------------------------ gaze model -> tower, loading, errors


def test_gaze_model_dict_feeds_the_tower(model):
    """The tiny AutoGaze (scales 32+64, P = 20) gazes; a patch-16 tower on the same scales encodes."""
    from transformers import SiglipVisionConfig

    torch.manual_seed(0)
    tower = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                 intermediate_size=64, image_size=64, patch_size=16))
    tower.configure_gazing("32+64")
    clip = torch.randn(1, 3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gaze_out = model({"video": clip}, gazing_ratio=0.5)
        out = tower.eval()(clip, gazing_info=gaze_out)
    assert out.last_hidden_state.shape == (1, gaze_out["gazing_pos"].shape[1], 32)
    assert torch.equal(out.is_padded, gaze_out["if_padded_gazing"])


def test_save_and_reload_keeps_settings(tmp_path):
    tower = make_tower("siglip", "frame_independent", max_embed_batch_size=4)
    tower.save_pretrained(tmp_path)
    again = SiglipVisionModel.from_pretrained(tmp_path)
    assert again.gazing == tower.gazing
    assert SiglipVisionModel.from_pretrained(tmp_path, attn_type="causal").gazing.attn_type == "causal"


def test_errors_say_what_to_fix():
    tower = make_tower("siglip")
    x = video(1, 2)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        tower.configure_gazing("12+32")
    with pytest.raises(ValueError, match="attn_type"):
        tower.configure_gazing("8+16+32", "sliding")
    with pytest.raises(ValueError, match="tokens_per_frame"):
        run(tower, x, Gazes(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.bool),
                            torch.tensor([1, 1]), 265))
    with pytest.raises(ValueError, match="target_scales"):
        run(tower, x, {"gazing_pos": torch.zeros(1, 2, dtype=torch.long), "num_vision_tokens_each_frame": 265,
                       "if_padded_gazing": torch.zeros(1, 2, dtype=torch.bool), "num_gazing_each_frame": [1, 1]})
    with pytest.raises(ValueError, match="frames"):
        run(tower, x, random_gazes([3, 3, 3]))
    with pytest.raises(ValueError, match=r"\[B, T, C, H, W\]"):
        run(tower, x[:, 0], random_gazes([3]))
    assert P == tower.gazing.tokens_per_frame


def test_integration_doc_example_vit():
    """The 'integrating your own ViT' example of docs/integration.md, on a tiny stock ViT."""
    from transformers import ViTConfig, ViTModel

    from autogaze.vision_encoders import GazedViTMixin, GazedVisionOutput

    class GazedViT(GazedViTMixin, ViTModel):  # copied from docs/integration.md
        def __init__(self, config, add_pooling_layer=False):
            super().__init__(config, add_pooling_layer=add_pooling_layer)
            self.init_gazing()

        def _gazed_patch_linear(self):
            conv = self.embeddings.patch_embeddings.projection
            return conv.weight.flatten(1), conv.bias

        def _gazed_position_rows(self, side):
            emb, p = self.embeddings, self.gazing.patch_size
            stub = emb.position_embeddings[:, :1].expand(-1, 1 + side * side, -1)
            return emb.interpolate_pos_encoding(stub, side * p, side * p)[0, 1:]

        def _gazed_prefix_rows(self):
            return self.embeddings.cls_token[0] + self.embeddings.position_embeddings[0, :1]

        def _gazed_encode(self, hidden, attention):
            out = self.encoder(hidden, head_mask=(attention,) * self.config.num_hidden_layers)
            return self.layernorm(out.last_hidden_state)

        def forward(self, pixel_values, gazing_info):
            hidden, prefix, gazes = self.encode_gazed(pixel_values, gazing_info)
            return GazedVisionOutput(last_hidden_state=hidden, pooler_output=prefix[:, -1, 0],
                                     is_padded=gazes.is_padded, prefix_hidden_state=prefix)

    cfg = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
               patch_size=8)
    torch.manual_seed(0)
    tower = GazedViT(ViTConfig(**cfg)).eval()
    tower.configure_gazing("8+16+32")
    stock = ViTModel(ViTConfig(**cfg), add_pooling_layer=False).eval()
    stock.load_state_dict(tower.state_dict())
    ids = torch.arange(5, P)[None]
    x = video(1, 1)
    out = run(tower, x, Gazes(ids, torch.zeros_like(ids, dtype=torch.bool), torch.tensor([16]), P))
    with torch.no_grad():
        ref = stock(x[:, 0]).last_hidden_state
    assert torch.allclose(out.last_hidden_state, ref[:, 1:], atol=ATOL)
    assert torch.allclose(out.pooler_output, ref[:, 0], atol=ATOL)
    # and it is causal across frames like the others
    g = random_gazes([4, 5], seed=9)
    g2 = Gazes(g.ids.clone(), g.is_padded, g.num_per_frame, P)
    g2.ids[:, 4:] = P + (g.local_ids()[:, 4:] + 3) % P
    x2 = video(1, 2)
    assert torch.allclose(run(tower, x2, g).last_hidden_state[:, :4], run(tower, x2, g2).last_hidden_state[:, :4],
                          atol=ATOL)


@pytest.mark.parametrize("family", FAMILIES)
def test_trainable_through_the_gather(family):
    """Gradients reach the patch conv and the position table (fine-tuning a gazed tower works)."""
    tower = make_tower(family).train()
    g = random_gazes([5, 4], B=2, pad_prob=0.3)
    out = tower(video(2, 2), gazing_info=g)
    out.last_hidden_state[~g.is_padded].pow(2).mean().backward()
    if family == "siglip":
        emb = tower.vision_model.embeddings
        conv, table = emb.patch_embedding.weight, emb.position_embedding.weight
    else:
        emb = tower.embeddings
        conv, table = emb.patch_embeddings.projection.weight, emb.position_embeddings
    for param in (conv, table):
        assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0


def test_loads_the_vision_half_of_a_full_siglip_checkpoint(tmp_path):
    """Hub SigLIP/SigLIP2 checkpoints are often the full image-text model; the tower takes its vision half."""
    from transformers import SiglipConfig, SiglipModel

    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    full = SiglipModel(SiglipConfig(vision_config=dict(small, image_size=32, patch_size=8),
                                    text_config=dict(small, vocab_size=100)))
    full.save_pretrained(tmp_path)
    tower = SiglipVisionModel.from_pretrained(tmp_path, scales="8+16+32")
    assert torch.equal(tower.vision_model.embeddings.patch_embedding.weight,
                       full.vision_model.embeddings.patch_embedding.weight)
    assert tower.gazing.tokens_per_frame == P
