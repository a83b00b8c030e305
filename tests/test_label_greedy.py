"""Greedy labeller core: batched scoring equals the task's own forward, picks equal a brute-force
loop, budgets are respected and deterministic."""
from __future__ import annotations

import pytest
import torch

from autogaze.labeling import LabelBudget, clip_generator, label_clip, sample_clip_budget
from autogaze.labeling.greedy import frame_scorer, frozen
from autogaze.tasks.video_mae_reconstruction import VideoMAEReconstruction
from autogaze.types import Gazes

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = {"recon_model": "tiny", "scales": "32+64"}  # P = 4 + 16 = 20 tokens per frame, 64-px frames


def make_task(seed: int = 0, **extra) -> VideoMAEReconstruction:
    torch.manual_seed(seed)
    return frozen(VideoMAEReconstruction.from_config({**TINY, **extra}))


def video(T: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(T, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def task_loss(task, clip, ids: list[int], counts: list[int], t: int) -> float:
    """Loss of frame t through the task's public forward (frames 0..t, one gaze set)."""
    ids_t = torch.tensor([ids])
    g = Gazes(ids_t, torch.zeros_like(ids_t, dtype=torch.bool), torch.tensor(counts), task.tokens_per_frame)
    return float(task(clip[None, : t + 1], g, frame_ids=[t]).loss_per_frame[0, 0])


FEATURE_LOSSES = {
    "l1": "1",
    "l1+dinov2_reg": "1+0.3",
    "l1+siglip2": "1+0.3",
}


@pytest.mark.parametrize("loss_type", list(FEATURE_LOSSES))
def test_cached_scores_equal_task_forward(loss_type):
    """The prefix-cached scorer == task.forward, candidate by candidate, with two labelled context
    frames (one of them multi-gaze), a non-empty base and the feature losses (tiny feature models)."""
    cfg = {"loss_type": loss_type, "loss_weights": FEATURE_LOSSES[loss_type],
           "dinov2_reg_loss_config": {"model": "tiny"}, "siglip2_loss_config": {"model": "tiny"}}
    task, clip = make_task(recon_model_config=cfg), video(T=4)
    P = task.tokens_per_frame
    context = [[0, 7, 19], [P + 3]]
    scorer = frame_scorer(task, clip, 2, context)
    base, cands = torch.tensor([5, 11]), torch.tensor([0, 1, 9, 19])
    got = scorer.losses(base, cands)
    want = [task_loss(task, clip, [0, 7, 19, P + 3, 2 * P + 5, 2 * P + 11, 2 * P + c], [3, 1, 3], 2)
            for c in cands.tolist()]
    torch.testing.assert_close(got, torch.tensor(want), rtol=1e-5, atol=1e-6)


def test_cached_scores_without_scale_or_time_embeddings_and_empty_base():
    """Frame 0 (no context) with an empty base, on an MAE without scale/time tables."""
    task = make_task(recon_model_config={"scale_embed": False, "time_embed": False})
    clip = video(T=2)
    P = task.tokens_per_frame
    got = frame_scorer(task, clip, 1, [[2]]).losses(torch.tensor([], dtype=torch.long), torch.arange(P))
    want = [task_loss(task, clip, [2, P + c], [1, 1], 1) for c in range(P)]
    torch.testing.assert_close(got, torch.tensor(want), rtol=1e-5, atol=1e-6)


def test_layer_step_equals_stock_layer_under_block_causal_mask():
    """Appending CLS and then frames one block at a time gives the stock layer stack's outputs
    under the block-causal mask (the cache's exactness, layer by layer)."""
    from autogaze.tasks.video_mae_reconstruction.masks import block_causal_mask
    from autogaze.tasks.video_mae_reconstruction.prefix_cache import BlockCausalCache

    task = make_task()
    layers = task.mae.vit.encoder.layer
    frames = torch.tensor([0, 0, 0, 1, 2, 2])
    x = torch.randn(1, 1 + frames.numel(), 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = task.mae._run_layers(layers, x, block_causal_mask(frames, torch.ones(1, 6, dtype=torch.bool)))
        cache = BlockCausalCache(layers)
        got = [cache.append(x[:, :1])]
        for f in range(3):
            idx = (frames == f).nonzero()[:, 0] + 1
            got.append(cache.append(x[:, idx]))
    torch.testing.assert_close(torch.cat(got, dim=1), want, rtol=1e-5, atol=1e-6)
    assert cache.length == 7


def test_non_causal_mae_is_refused():
    from autogaze.utils.parsing import ConfigError

    task = make_task(recon_model_config={"causal": False})
    with pytest.raises(ConfigError, match="causal"):
        label_clip(task, video(T=1), [1])


def test_greedy_matches_brute_force_loop():
    """On frame 0: each pick is the argmin of a one-forward-per-candidate Python loop (the task's
    public forward), and the recorded loss is that minimum."""
    task, clip = make_task(), video(T=1)
    P = task.tokens_per_frame
    labels = label_clip(task, clip, [4], candidate_batch=7)  # 7 does not divide 20: ragged chunks
    picked: list[int] = []
    for j, (gid, loss) in enumerate(zip(labels.gazing_pos[0], labels.task_losses[0])):
        free = [c for c in range(P) if c not in picked]
        brute = {c: task_loss(task, clip, picked + [c], [j + 1], 0) for c in free}
        best = min(brute, key=brute.get)
        assert gid == best, (j, gid, best, brute)
        assert loss == pytest.approx(brute[best], rel=1e-5, abs=1e-6)
        picked.append(best)
    assert len(set(labels.gazing_pos[0])) == 4  # no patch picked twice


def test_later_frames_use_earlier_labels_as_context():
    """Frame 1's first pick is the brute-force argmin given frame 0's labels as context."""
    task, clip = make_task(), video(T=2)
    P = task.tokens_per_frame
    labels = label_clip(task, clip, [2, 1], candidate_batch=64)
    ctx = labels.gazing_pos[0]
    brute = {c: task_loss(task, clip, ctx + [P + c], [2, 1], 1) for c in range(P)}
    assert labels.gazing_pos[1] == [P + min(brute, key=brute.get)]
    assert all(P <= g < 2 * P for g in labels.gazing_pos[1])  # global ids of frame 1


def test_budgets_respected_and_forward_count():
    task, clip = make_task(), video(T=3)
    calls = []
    labels = label_clip(task, clip, [3, 1, 2], candidate_batch=8, on_forward=lambda: calls.append(1))
    assert [len(f) for f in labels.gazing_pos] == [3, 1, 2]
    assert [len(f) for f in labels.task_losses] == [3, 1, 2]
    # step j of a frame scores P - j candidates in ceil((P - j) / 8) forwards: P = 20
    expected = sum(-(-(20 - j) // 8) for n in (3, 1, 2) for j in range(n))
    assert len(calls) == expected


def test_clip_budget_paper_defaults_deterministic():
    b = LabelBudget().validate()
    x = sample_clip_budget(b, 16, 265, clip_generator(0, "ds/train/a.mp4"))
    y = sample_clip_budget(b, 16, 265, clip_generator(0, "ds/train/a.mp4"))
    z = sample_clip_budget(b, 16, 265, clip_generator(1, "ds/train/a.mp4"))
    assert x == y and x != z
    assert len(x) == 16 and all(1 <= n <= 265 for n in x)
    # ratio in [0.02, 0.2] -> total gazes in [16 * 265 * 0.02, 16 * 265 * 0.2] up to rounding/clamping
    assert 16 * 265 * 0.02 - 16 <= sum(x) <= 16 * 265 * 0.2 + 16


def test_clip_budget_first_frame_gets_more_on_average():
    """alpha = 10 for frame 0 vs 3 for the rest: frame 0's expected share is 10/55 vs 3/55."""
    b = LabelBudget(ratio_strategy="fixed", ratio=0.1).validate()
    draws = torch.tensor([sample_clip_budget(b, 16, 265, clip_generator(s, "k")) for s in range(200)]).float()
    first, rest = draws[:, 0].mean(), draws[:, 1:].mean()
    # E[frame 0] = 0.1 * 16 * 10/55 * 265 = 77; E[others] = 0.1 * 16 * 3/55 * 265 = 23
    assert 65 < first < 90 and 19 < rest < 28


def test_fixed_uniform_budget_is_exact():
    b = LabelBudget(ratio_strategy="fixed", ratio=0.25, frame_strategy="uniform").validate()
    assert sample_clip_budget(b, 4, 20, clip_generator(0, "k")) == [5, 5, 5, 5]


def test_stochastic_greedy_picks_the_best_of_its_sample():
    """With candidate_sample M, each step's pick is the brute-force argmin over the M patches drawn from
    the generator (in the order greedy_frame draws them), and its loss is recorded exactly."""
    task, clip = make_task(), video(T=1)
    P, M = task.tokens_per_frame, 5
    labels = label_clip(task, clip, [3], candidate_sample=M, generator=torch.Generator().manual_seed(7))
    replay = torch.Generator().manual_seed(7)
    picked: list[int] = []
    for j, (gid, loss) in enumerate(zip(labels.gazing_pos[0], labels.task_losses[0])):
        free = torch.tensor([c for c in range(P) if c not in picked])
        sample = free[torch.randperm(free.numel(), generator=replay)[:M].sort().values].tolist()
        brute = {c: task_loss(task, clip, picked + [c], [j + 1], 0) for c in sample}
        best = min(brute, key=brute.get)
        assert gid == best, (j, gid, best, brute)
        assert loss == pytest.approx(brute[best], rel=1e-5, abs=1e-6)
        picked.append(best)


def test_stochastic_greedy_with_every_patch_is_exact_and_cheaper_when_sampled():
    """M >= P is the exact search; M < P scores M rows per step (one forward each at batch >= M),
    reproducibly from the generator; M = 1 is a random pick per step, which loses to the search."""
    task, clip = make_task(), video(T=2)
    exact = label_clip(task, clip, [3, 2])
    assert label_clip(task, clip, [3, 2], candidate_sample=task.tokens_per_frame).gazing_pos == exact.gazing_pos
    calls = []
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    sampled = label_clip(task, clip, [3, 2], candidate_batch=4, candidate_sample=8, generator=g(),
                         on_forward=lambda: calls.append(1))
    assert len(calls) == 5 * 2  # 8 rows in chunks of 4, five steps
    assert label_clip(task, clip, [3, 2], candidate_batch=4, candidate_sample=8, generator=g()).gazing_pos \
        == sampled.gazing_pos
    random_pick = label_clip(task, clip, [3, 2], candidate_sample=1, generator=g())
    assert sum(f[-1] for f in exact.task_losses) < sum(f[-1] for f in random_pick.task_losses)
    assert [len(f) for f in sampled.gazing_pos] == [3, 2]
