"""Properties of generation and scoring on a tiny random model (P = 20 tokens, K = 3, 4 frames)."""
import copy

import pytest
import torch

from autogaze.models.autogaze import AutoGaze
from autogaze.models.autogaze.config import tiny_config
from autogaze.models.autogaze.decoder import build_teacher_forcing_inputs, positions_from_mask, sequence_layout
from autogaze.models.autogaze.scoring import read_positions, score_hidden
from autogaze.types import Budget, Gazes

B, T, P, K = 2, 4, 20, 3


@pytest.fixture(scope="module")
def video():
    g = torch.Generator().manual_seed(1)
    return torch.randn(B, T, 3, 64, 64, generator=g)


def full_budget(max_gazes, tau=None):
    mg = torch.as_tensor(max_gazes).expand(B, T).clone()
    return Budget(mg, None if tau is None else torch.full((B, T), float(tau)))


def frame_ids(gazes: Gazes, t: int):
    """[B, n_t] frame-local ids and pads of frame t."""
    start = int(gazes.num_per_frame[:t].sum())
    sl = slice(start, start + int(gazes.num_per_frame[t]))
    return gazes.local_ids()[:, sl], gazes.is_padded[:, sl]


def masked_logits(model, video, gazes, temperature=1.0, top_k=0):
    """Teacher-forced logits [B, N, V] of the generator's sampling distribution."""
    tokens, _ = model.gazing_model.embed_video(video)
    layout = sequence_layout(gazes.num_per_frame, tokens.shape[2])
    embeds, mask = build_teacher_forcing_inputs(model.decoder, tokens, gazes, layout)
    hidden = model.decoder.body(embeds, mask, positions_from_mask(mask))  # every position
    src, last = read_positions(layout.gaze_pos, layout.slot_in_frame, K)
    return score_hidden(model.decoder, hidden, src, last, gazes, layout.slot_in_frame,
                        masked=True, temperature=temperature, top_k=top_k, with_logits=True).logits


def test_ids_in_range_and_no_repeats_when_sampling(model, video):
    g = torch.Generator().manual_seed(0)
    rollout = model.generate(video, full_budget(15), do_sample=True, temperature=5.0, generator=g)
    gz = rollout.gazes
    assert gz.ids.shape == gz.is_padded.shape == rollout.sample_log_probs.shape
    frame = gz.frame_index()
    assert torch.equal(gz.ids // P, frame.expand_as(gz.ids))  # pads too: in-range ids of their own frame
    for t in range(T):
        ids, pad = frame_ids(gz, t)
        for b in range(B):
            real = ids[b][~pad[b]]
            assert real.unique().numel() == real.numel() == 15


def test_budgets_respected_per_row(model, video):
    caps = torch.tensor([[1, 5, 20, 7], [4, 2, 9, 20]])
    gz = model.generate(video, Budget(caps)).gazes
    real = gz.to_mask().sum(-1)
    assert torch.equal(real.long(), caps)  # no early stop: every row uses its whole cap
    assert torch.equal(gz.num_per_frame, caps.max(0).values)


def test_greedy_equals_argmax_of_masked_teacher_forcing(model, video):
    gz = model.generate(video, full_budget(8)).gazes
    with torch.no_grad():
        logits = masked_logits(model, video, gz)
    real = ~gz.is_padded
    chosen = logits.gather(-1, gz.local_ids()[..., None]).squeeze(-1)
    assert torch.equal(logits.argmax(-1)[real], gz.local_ids()[real])
    assert (chosen - logits.max(-1).values)[real].abs().max() == 0


@pytest.mark.parametrize("temperature, top_k", [(1.0, 50), (2.5, 4)])
def test_sample_log_probs_equal_masked_scoring(model, video, temperature, top_k):
    g = torch.Generator().manual_seed(3)
    rollout = model.generate(video, full_budget(7), do_sample=True, temperature=temperature, top_k=top_k, generator=g)
    with torch.no_grad():
        scores = model.score(video, rollout.gazes, masked=True, temperature=temperature, top_k=top_k)
    real = ~rollout.gazes.is_padded
    assert (scores.log_probs - rollout.sample_log_probs)[real].abs().max() < 1e-4
    assert torch.isfinite(scores.log_probs[real]).all() and (scores.entropy[real] >= 0).all()


def test_early_stop_exactly_where_prediction_below_tau(model, video):
    model = copy.deepcopy(model)
    with torch.no_grad():  # spread the task-loss predictions so stops land in different chunks
        model.decoder.task_loss_prediction_head.weight.mul_(20)
        free = model.generate(video, full_budget(12)).gazes
        preds = model.score(video, free).task_loss_prediction
    # tau in the widest gap near the 5% quantile, so float noise cannot flip a comparison.
    v = preds.flatten().sort().values
    q = int(0.05 * v.numel())
    gaps = v[q - 2: q + 3].diff()
    i = int(gaps.argmax()) + q - 2
    tau = float((v[i] + v[i + 1]) / 2)
    gz = model.generate(video, full_budget(12, tau)).gazes
    with torch.no_grad():
        pred = model.score(video, gz).task_loss_prediction
    assert (pred - tau).abs().min() > 1e-5
    # the scenario must exercise both outcomes: a frame cut short and a frame run to the cap
    assert gz.num_per_frame.min() < 12 and gz.num_per_frame.max() == 12 and gz.is_padded.any()
    start = 0
    for t in range(T):
        n = int(gz.num_per_frame[t])
        pad, p = gz.is_padded[:, start:start + n], pred[:, start:start + n]
        expected = torch.zeros_like(pad)
        finished = torch.zeros(B, dtype=torch.bool)
        for c0 in range(0, n, K):
            hit = torch.zeros(B, K, dtype=torch.bool)
            for r in range(min(K, n - c0)):
                j = c0 + r
                # slot j is dropped when the loss predicted after slot j-1 is already <= tau
                hit[:, r] = (p[:, j - 1] <= tau) if j > 0 else False
                expected[:, j] = finished | hit[:, r] | (j >= 12)
            finished = finished | hit.any(-1) | (c0 + K >= 12)
        assert torch.equal(pad, expected), f"frame {t}"
        assert bool(finished.all()) and (n == 12 or n % K == 0)
        start += n


@pytest.mark.parametrize("tau", [None, 0.0])
def test_batch_of_two_equals_each_alone(model, video, tau):
    budget = full_budget(9, tau)
    both = model.generate(video, budget).gazes
    for b in range(B):
        alone = model.generate(video[b:b + 1], budget.map(lambda x: x[b:b + 1])).gazes
        mb = both.to_mask()[b]
        assert torch.equal(alone.to_mask()[0], mb)
        # same order too: the first real gazes of each frame agree slot by slot
        for t in range(T):
            ids_a, pad_a = frame_ids(alone, t)
            ids_b, pad_b = frame_ids(both, t)
            n = ids_a.shape[1]
            assert torch.equal(ids_a[0][~pad_a[0]], ids_b[b, :n][~pad_b[b, :n]])


@pytest.mark.parametrize("tau", [None, 0.0])
def test_streaming_frame_by_frame_equals_whole_clip(model, video, tau):
    whole = model({"video": video}, gazing_ratio=0.6, task_loss_requirement=tau, generate_only=True)
    caches, ids, pads = {}, [], []
    for t in range(T):
        out = model({"video": video[:, t:t + 1]}, gazing_ratio=0.6, task_loss_requirement=tau,
                    generate_only=True, use_cache=True, **caches)
        caches = dict(past_key_values=out["past_key_values"], past_inputs_embeds=out["past_input_embeds"],
                      past_attention_mask=out["past_attention_mask"], past_conv_values=out["past_conv_values"])
        assert int(out["num_gazing_each_frame"].numel()) == 1 and out["gazing_pos"].max() < P  # frame-local
        ids.append(out["gazing_pos"] + t * P)
        pads.append(out["if_padded_gazing"])
    assert torch.equal(torch.cat(pads, 1), whole["if_padded_gazing"])
    real = ~whole["if_padded_gazing"]
    assert torch.equal(torch.cat(ids, 1)[real], whole["gazing_pos"][real])


def test_streaming_needs_all_caches(model, video):
    with pytest.raises(ValueError, match="all four caches"):
        model({"video": video[:, :1]}, gazing_ratio=0.4, generate_only=True, use_cache=True,
              past_key_values=object())


def test_seeded_sampling_is_deterministic(model, video):
    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return model.generate(video, full_budget(6), do_sample=True, generator=g).gazes.ids

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_dict_call_scores_with_grad_and_matches_typed_api(model, video):
    model.train()
    try:
        g = torch.Generator().manual_seed(0)
        out = model({"video": video}, gazing_ratio=0.3, temperature=2.0, generator=g)
        out["log_action_probs"].sum().backward()
    finally:
        model.eval()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["gazing_model.vision_model.temporal_conv.weight"].abs().sum() > 0
    assert grads["gazing_model.gaze_decoder.lm_head.weight"].abs().sum() > 0
    model.zero_grad(set_to_none=True)
    gz = Gazes(out["gazing_pos"], out["if_padded_gazing"], out["num_gazing_each_frame"], P)
    with torch.no_grad():
        again = model.score(video, gz)
    assert torch.allclose(again.log_probs, out["log_action_probs"].detach(), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_bf16_autocast_on_cpu(model, video, dtype):
    with torch.autocast("cpu", dtype=dtype):
        rollout = model.generate(video, full_budget(5))
        scores = model.score(video, rollout.gazes)
    assert scores.log_probs.dtype == torch.float32 and torch.isfinite(scores.log_probs).all()
    assert rollout.gazes.to_mask().sum(-1).eq(5).all()


def test_eager_attention_matches_sdpa(model, video):
    eager = AutoGaze(tiny_config(attn_mode="eager")).eval()
    eager.load_state_dict(model.state_dict())
    rollout = model.generate(video, full_budget(6, 0.0))  # pads included
    with torch.no_grad():
        a, b = model.score(video, rollout.gazes), eager.score(video, rollout.gazes)
    assert torch.equal(eager.generate(video, full_budget(6, 0.0)).gazes.ids, rollout.gazes.ids)
    assert (a.log_probs - b.log_probs).abs().max() < 1e-5
