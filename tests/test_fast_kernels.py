"""The building blocks of the fast path equal what they replace (tiny shapes, CPU, fp32).

Each fast piece is checked against the plain computation: oneDNN linear vs ``F.linear`` (values
and gradients), the greedy chunk pick vs the head-by-head loop, per-slot head logits vs all heads
gathered, our RoPE vs transformers', the 2-D patch conv vs Conv3d, and the cached fused weights
vs fresh ones after an in-place update. Whole-model equality is in test_gaze_speed.py.
"""
import pytest
import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

import autogaze.utils.linear as fast_linear
from autogaze.models.autogaze import SpeedOptions, speed_options
from autogaze.models.autogaze.generation import SamplerSettings, _pick_chunk
from autogaze.models.autogaze.layers import _fused, _rope, mlp, rope_tables
from autogaze.models.autogaze.vision_encoder import ShallowVideoConvNet
from autogaze.utils.runtime import tune_cpu_allocator

needs_onednn = pytest.mark.skipif(not fast_linear._AVAILABLE, reason="torch built without oneDNN (mkldnn)")


@pytest.fixture
def onednn(model):
    """The route as the entry points install it (tune_cpu), the previous setting restored afterwards."""
    with speed_options(model, SpeedOptions(onednn_linear=True)):
        yield


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_values_and_grads(bias, onednn):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 40, 24, generator=g, requires_grad=True)
    w = torch.randn(96, 24, generator=g, requires_grad=True)
    b = torch.randn(96, generator=g, requires_grad=True) if bias else None
    assert fast_linear.use_onednn(x, w)  # 120 rows x 96 outputs: the oneDNN route
    grad = torch.randn(3, 40, 96, generator=g)
    params = [t for t in (x, w, b) if t is not None]
    out = fast_linear.linear(x, w, b)
    fast = torch.autograd.grad(out, params, grad)
    ref_out = F.linear(x, w, b)
    ref = torch.autograd.grad(ref_out, params, grad)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    for a, r in zip(fast, ref):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-4)
    with torch.no_grad():  # the autograd-free branch
        torch.testing.assert_close(fast_linear.linear(x, w, b), ref_out, rtol=1e-5, atol=1e-5)
    # non-contiguous input
    xt = torch.randn(40, 3, 24, generator=g).transpose(0, 1)
    torch.testing.assert_close(fast_linear.linear(xt, w.detach()), F.linear(xt, w.detach()), rtol=1e-5, atol=1e-5)


def test_linear_route_rules(model):
    w = torch.randn(192, 192)
    # the route is process-wide and an earlier test's entry point may have installed it: start from off
    with speed_options(model, SpeedOptions(onednn_linear=False)):
        assert not fast_linear.use_onednn(torch.randn(1, 192), w)  # one row: MKL is faster
        assert not fast_linear.use_onednn(torch.randn(64, 192, dtype=torch.float64), w)  # fp32 only
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not fast_linear.use_onednn(torch.randn(64, 192), w)  # autocast decides the kernel
        assert not fast_linear.use_onednn(torch.randn(64, 192), w)  # off until enabled
        assert model.speed_options.onednn_linear is False
        with speed_options(model, SpeedOptions(onednn_linear=True)) as opts:
            assert opts.onednn_linear == fast_linear._AVAILABLE  # process-wide, read back through the options
            assert fast_linear.use_onednn(torch.randn(64, 192), w) == fast_linear._AVAILABLE
        assert not fast_linear.use_onednn(torch.randn(64, 192), w)  # restored


def test_fast_path_traces_under_torch_compile(model):
    """torch.compile (dynamo) sees plain ops: F.linear and a fresh weight concatenation, no graph break."""
    layer = model.decoder.model.layers[0]
    x = torch.randn(1, 40, layer.self_attn.q_proj.in_features)

    def block(x):
        return mlp(layer.mlp, x) + fast_linear.linear(x, layer.self_attn.o_proj.weight)

    with torch.no_grad():
        torch.testing.assert_close(torch.compile(block, backend="eager", fullgraph=True)(x), block(x))


def test_greedy_pick_equals_sequential_loop():
    """Random logits with ties (rounded), banned ids, rows that run out, k > available ids: the
    default options' host scan against the reference options' head-by-head loop."""
    fast, ref = SpeedOptions().greedy_host_rows, SpeedOptions.reference().greedy_host_rows
    g = torch.Generator().manual_seed(0)
    greedy = SamplerSettings(do_sample=False)
    for trial in range(300):
        B, k, V = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((1, 5), (1, 6), (2, 12)))
        logits = torch.randn(B, k, V, generator=g)
        if trial % 3 == 0:
            logits = logits.round()
        banned = torch.rand(B, V, generator=g) < 0.5
        banned[0, 0] = False  # the loop needs one row with an id left at the first head
        assert ref < B <= fast  # the two options take the two implementations
        for a, b in zip(_pick_chunk(logits, banned, greedy, fast), _pick_chunk(logits, banned, greedy, ref)):
            assert torch.equal(a, b), trial


def test_head_logits_equal_all_heads_gathered(model):
    dec = model.decoder
    K = dec.num_multi_token_pred
    hidden = torch.randn(2, 11, dec.lm_head.in_features, generator=torch.Generator().manual_seed(0))
    head = torch.tensor([0, 1, 2, 0, 0, 2, 1, 1, 2, 0, 1]) % K
    all_heads, _ = dec.heads(hidden)  # [B, N, K, V]
    ref = all_heads.gather(2, head.view(1, -1, 1, 1).expand(2, -1, 1, all_heads.shape[-1])).squeeze(2)
    torch.testing.assert_close(dec.head_logits(hidden, head), ref, rtol=1e-5, atol=1e-5)
    one_head = torch.zeros(11, dtype=torch.long)  # heads with no slot are skipped
    torch.testing.assert_close(dec.head_logits(hidden, one_head), all_heads[:, :, 0], rtol=1e-5, atol=1e-5)


def test_rope_is_bitwise_transformers(model):
    rotary = model.decoder.model.rotary_emb
    x = torch.randn(2, 7, 3, rotary.inv_freq.numel() * 2, generator=torch.Generator().manual_seed(0))
    pos = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [0, 0, 1, 2, 2, 3, 9]])
    cos, sin = rotary(x, pos)
    ref, _ = apply_rotary_pos_emb(x.transpose(1, 2), x.transpose(1, 2), cos, sin)
    assert torch.equal(_rope(x, *rope_tables(rotary, x, pos)), ref.transpose(1, 2))


def test_patch_conv_2d_equals_conv3d():
    enc = ShallowVideoConvNet(hidden_dim=8, out_dim=8, kernel_size=16, input_img_size=64)
    video = torch.randn(2, 3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ref = enc.temporal_conv(video.transpose(1, 2)).permute(0, 2, 3, 4, 1)
    torch.testing.assert_close(enc._patchify(video), ref, rtol=1e-5, atol=1e-5)


def test_fused_weights_cached_only_without_grad_and_refreshed_after_update(model):
    attn = model.decoder.model.layers[0].self_attn
    projs = (attn.q_proj, attn.k_proj, attn.v_proj)
    with torch.no_grad():
        first, _ = _fused(projs)
        assert _fused(projs)[0] is first  # reused
        attn.k_proj.weight.add_(1.0)  # an optimizer-style in-place update bumps the version
        second, _ = _fused(projs)
        attn.k_proj.weight.sub_(1.0)
    assert second is not first
    nq, nk = attn.q_proj.out_features, attn.k_proj.out_features
    torch.testing.assert_close(second[nq:nq + nk], attn.k_proj.weight + 1.0)
    with_grad, _ = _fused(projs)
    assert with_grad.requires_grad and with_grad.grad_fn is not None  # fresh cat: gradients reach each weight


def test_allocator_tuning_is_idempotent():
    first = tune_cpu_allocator()
    assert tune_cpu_allocator() == first
    assert isinstance(first, bool)
