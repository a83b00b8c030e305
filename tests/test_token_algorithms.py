"""TATS's PPO and AdaMAE through the trainer, on the real tube VideoMAE and samplers at a tiny size
(tests/doubles_tokens.py): phases, what each optimizer step moves, the first PPO step's ratio of 1,
the memory across steps and across a kill-and-resume, AdaMAE's joint loss and its gradients."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from tests.faults import fit_until_fault, seed_all
from autogaze.algorithms import AdaMAEAlgorithm, StepInfo, TATSPPO
from autogaze.utils.metric_logger import read_metrics
from tests.doubles_tokens import N, SAMPLER_KEYS, changed, clips, make_adamae, make_task, make_tats, make_token_trainer, snapshot

N_VISIBLE = 8  # int(32 * (1 - 0.75))


def tats_trainer(exp, *, alg=None, model_seed=0, **overrides):
    torch.manual_seed(model_seed)
    model, task = make_tats(), make_task()
    alg = alg or {}
    return make_token_trainer(exp, model, task, TATSPPO.from_config({"warmup_steps": 0, **alg}), clips(8), **overrides)


class Recorder:
    """Wraps ``trainer.optimizer_step``: the StepResult and the task / sampler after each call."""

    def __init__(self, t):
        self.t, self.calls, inner = t, [], t.optimizer_step

        def record(items, loss_fn=None, kind="batch"):
            res = inner(items, loss_fn, kind)
            self.calls.append((kind, res, snapshot(t.task), snapshot(t.gaze_model)))
            return res

        t.optimizer_step = record


def step(t):
    data = getattr(t, "_data", None) or t._micro_batches()
    t._data = data
    micro = [next(data) for _ in range(t.geom.acc_steps)]
    t.state.micro_step += len(micro)
    m = t.train_step(micro)
    t.state.train_step += 1
    return m


# ---------------------------------------------------------------------------------- TATS phases
def test_warmup_trains_the_mae_on_random_masks(tmp_path):
    t = tats_trainer(tmp_path, alg={"warmup_steps": 1})
    gaze0, task0 = snapshot(t.gaze_model), snapshot(t.task)
    masks = []
    hook = t.task.register_forward_pre_hook(lambda m, args: masks.append(args[1].to_mask().flatten(1)))
    m = step(t)
    hook.remove()
    assert m["warmup"] == 1.0 and not any(k.startswith("ppo_") for k in m)
    assert changed(gaze0, t.gaze_model) == []                 # the sampler never ran
    assert changed(task0, t.task)                              # the MAE stepped
    assert masks[0].sum(1).tolist() == [N_VISIBLE, N_VISIBLE]  # N_v tokens per clip, drawn uniformly
    assert not torch.equal(masks[0][0], masks[0][1])
    assert len(t.algorithm.memory) == 0


def test_warmup_epochs_read_the_data_epoch():
    alg = TATSPPO.from_config({"warmup_epochs": 2})
    for epoch, phase in [(0, "warmup"), (1, "warmup"), (2, "mae"), (7, "mae")]:
        alg.on_step_start(StepInfo(step=epoch * 3, epoch=epoch, total_steps=30, steps_per_epoch=3, seed=0,
                                   temperature=1.0))
        assert alg.phase == phase


def test_mae_step_then_ppo_step_each_moves_only_its_module(tmp_path):
    """K = P_s = 1: one MAE step (sampler frozen), then one sampler step (MAE frozen) whose ratio is
    exactly 1: approx-KL 0, clip fraction 0."""
    t = tats_trainer(tmp_path, gaze_lr=0.05)
    rec = Recorder(t)
    gaze0, task0 = snapshot(t.gaze_model), snapshot(t.task)
    m = step(t)
    (k1, r1, task1, gaze1), (k2, r2, task2, gaze2) = rec.calls
    assert (k1, k2) == ("batch", "ppo") and r1.stepped and r2.stepped
    assert changed(task0, t.task) and changed(gaze0, t.gaze_model)
    assert all(torch.equal(gaze1[k], gaze0[k]) for k in gaze0)                     # phase 1: sampler frozen
    assert all(torch.equal(task2[k], task1[k]) for k in task1)                     # phase 2: MAE frozen
    assert sorted(changed(gaze1, t.gaze_model)) == sorted(gaze0)  # block, actor and critic all moved
    assert m["ppo_approx_kl"] == 0.0 and m["ppo_clip_frac"] == 0.0 and m["ppo_steps"] == 1
    assert m["ppo_episodes"] == 2 and m["warmup"] == 0.0
    assert m["entropy"] == pytest.approx(m["ppo_entropy"]) and m["entropy"] <= np.log(N)
    assert len(t.algorithm.memory) == 0                                            # cleared after phase 2


def test_first_ppo_epoch_has_ratio_one_later_epochs_do_not(tmp_path):
    t = tats_trainer(tmp_path, alg={"update_steps_ppo": 3}, gaze_lr=0.05)
    rec = Recorder(t)
    m = step(t)
    ppo = [res.metrics for kind, res, _, _ in rec.calls if kind == "ppo"]
    assert len(ppo) == 3 and m["ppo_steps"] == 3
    assert ppo[0]["ppo_approx_kl"] == 0.0 and ppo[0]["ppo_clip_frac"] == 0.0
    assert ppo[1]["ppo_approx_kl"] > 0 and ppo[2]["ppo_approx_kl"] > ppo[1]["ppo_approx_kl"]
    assert m["ppo_approx_kl"] == pytest.approx(sum(p["ppo_approx_kl"] for p in ppo) / 3)


def test_memory_holds_k_mae_steps_of_every_micro_batch(tmp_path):
    """K = 2, micro 1 x acc 2, 2 minibatches: step 0 stores 2 chunks and makes no PPO step; step 1
    stores 2 more, then 2 epochs x 2 minibatches of 4 passes each (one per chunk)."""
    t = tats_trainer(tmp_path, alg={"update_steps_mae": 2, "update_steps_ppo": 2, "ppo_minibatches": 2},
                     per_gpu_max_batch_size=1)
    assert (t.geom.micro_batch, t.geom.acc_steps) == (1, 2)
    rec = Recorder(t)
    gaze0 = snapshot(t.gaze_model)
    m0 = step(t)
    assert "ppo_steps" not in m0 and t.algorithm.memory.mae_steps == 1 and len(t.algorithm.memory.chunks) == 2
    assert changed(gaze0, t.gaze_model) == []                 # no PPO phase yet
    m1 = step(t)
    assert m1["ppo_steps"] == 4 and m1["ppo_episodes"] == 4
    passes = [kind for kind, *_ in rec.calls]
    assert passes == ["batch", "batch", "ppo", "ppo", "ppo", "ppo"]
    assert len(t.algorithm.memory) == 0 and t.algorithm.memory.mae_steps == 0


def test_own_embedding_and_missing_critic_are_rejected_at_run_time(tmp_path):
    torch.manual_seed(0)
    t = make_token_trainer(tmp_path / "own", make_tats(embedding="own"), make_task(),
                           TATSPPO.from_config({"warmup_steps": 0}), clips(4))
    with pytest.raises(ValueError, match="embedding=shared"):
        step(t)
    t = make_token_trainer(tmp_path / "adamae", make_adamae(), make_task(), TATSPPO.from_config({"warmup_steps": 0}),
                           clips(4))
    with pytest.raises(ValueError, match="critic"):
        step(t)


# ---------------------------------------------------------------------------------- TATS resume
def _resume_run(exp, model_seed=0):
    """6 steps: warm-up 1, then MAE steps with a PPO phase after every 2nd (K = 2, P_s = 2, 2
    minibatches), micro 1 x acc 2 over shuffled epochs of 8 clips; saved every step."""
    return tats_trainer(exp, model_seed=model_seed,
                        alg={"warmup_steps": 1, "update_steps_mae": 2, "update_steps_ppo": 2, "ppo_minibatches": 2},
                        per_gpu_max_batch_size=1, max_steps=6, save_nsteps=1, resume="auto", gaze_lr=0.02,
                        lr_schedule="cosine_w_warmup", warmup_ratio=0.34, weight_decay=0.05)


def test_ppo_memory_survives_kill_and_resume_bit_identically(tmp_path, monkeypatch):
    """Killed right after the step-2 checkpoint, which holds one MAE step's episodes in the memory
    (the PPO phase that needs them runs in step 2), and resumed in a fresh trainer with other weights
    and a scrambled RNG: parameters, optimizer state, memory and every logged metric equal a clean run."""
    seed_all(0)
    clean = _resume_run(tmp_path / "clean")
    clean.fit()

    exp = tmp_path / "resumed"
    seed_all(0)
    first = _resume_run(exp)
    fit_until_fault(first, 2, monkeypatch)
    forgetful = tmp_path / "forgetful"
    shutil.copytree(exp, forgetful)
    saved = torch.load(exp / "checkpoint_latest_train.pt", weights_only=False)
    assert saved["train_step"] == 2
    memory = saved["algorithm"][0]["memory"]
    assert memory["mae_steps"] == 1 and len(memory["chunks"]) == 2   # the step-1 episodes, one chunk per micro

    seed_all(12345)
    second = _resume_run(exp, model_seed=777)
    second.fit()
    assert second.state.train_step == clean.state.train_step == 6
    for a, b in [(clean.gaze_model, second.gaze_model), (clean.task, second.task)]:
        for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(x, y), k
    oa, ob = clean.optimizer.state_dict(), second.optimizer.state_dict()
    for i in oa["state"]:
        for key, v in oa["state"][i].items():
            assert torch.equal(v, ob["state"][i][key]), (i, key)
    assert clean.algorithm.memory.mae_steps == second.algorithm.memory.mae_steps == 1  # step 5 stored, no PPO yet
    for ca, cb in zip(clean.algorithm.memory.chunks, second.algorithm.memory.chunks):
        assert torch.equal(ca.tokens, cb.tokens) and torch.equal(ca.reward, cb.reward)
    rows = lambda e: [r for r in read_metrics(e / "metrics.jsonl") if "train/train_step" in r]  # noqa: E731
    assert [r["train/train_step"] for r in rows(exp)] == [1, 2, 3, 4, 5, 6]
    assert rows(exp) == rows(tmp_path / "clean")
    assert [r["train/ppo_steps"] for r in rows(exp) if "train/ppo_steps" in r] == [4.0, 4.0]

    # negative control: the same resume without the memory trains differently from step 3 on
    monkeypatch.setattr(TATSPPO, "load_state_dict", lambda self, state: None)
    seed_all(12345)
    _resume_run(forgetful).fit()
    assert rows(forgetful)[:2] == rows(exp)[:2] and rows(forgetful)[2] != rows(exp)[2]


# ---------------------------------------------------------------------------------- AdaMAE
def adamae_trainer(exp, weight=1e-4, model_seed=0, **keys):
    torch.manual_seed(model_seed)
    model, task = make_adamae(**keys), make_task()
    alg = AdaMAEAlgorithm.from_config({"sampler_loss_weight": weight})
    return make_token_trainer(exp, model, task, alg, clips(4))


def test_adamae_joint_loss_is_the_mae_loss_plus_lambda_sampler_loss(tmp_path):
    t = adamae_trainer(tmp_path, weight=0.5)
    torch.manual_seed(1)
    out = t.forward(next(t._micro_batches()))
    m = {k: float(v) for k, v in out.metrics.items()}
    assert float(out.loss.detach()) == pytest.approx(m["reconstruction_loss"] + 0.5 * m["sampler_loss"], rel=1e-6)
    assert m["masked_error"] == pytest.approx(m["reconstruction_loss"], rel=1e-6)
    assert m["entropy"] == pytest.approx(np.log(N), abs=0.05)               # near uniform at init
    assert m["sampler_loss"] > 0                                            # -log p * e with p < 1, e > 0


def _grads(t, weight_seed=1):
    torch.manual_seed(weight_seed)  # the same draw in every run
    t.optimizer.zero_grad(set_to_none=True)
    t.forward(next(t._micro_batches())).loss.backward()
    return ({k: p.grad.clone() for k, p in t.gaze_model.named_parameters()},
            {k: p.grad.clone() for k, p in t.task.named_parameters() if p.grad is not None})


def test_adamae_sampler_gradient_scales_with_lambda_and_reaches_the_mae_embedding(tmp_path):
    g0, t0 = _grads(adamae_trainer(tmp_path / "0", weight=0.0))
    g1, t1 = _grads(adamae_trainer(tmp_path / "1", weight=1.0))
    g2, t2 = _grads(adamae_trainer(tmp_path / "2", weight=2.0))
    for k in g1:                                      # the MAE loss does not reach the sampler
        assert torch.equal(g0[k], torch.zeros_like(g0[k])), k
        torch.testing.assert_close(g2[k], 2 * g1[k], rtol=1e-5, atol=1e-9)
    assert any(g1[k].abs().sum() > 0 for k in g1)
    conv = [k for k in t1 if "patch_embeddings" in k]
    assert conv, sorted(t1)
    for k in conv:                                    # the sampler's gradient is added to the Conv3d's
        torch.testing.assert_close(t2[k] - t0[k], 2 * (t1[k] - t0[k]), rtol=1e-4, atol=1e-9)
        assert (t1[k] - t0[k]).abs().sum() > 0, k
    decoder = [k for k in t1 if "decoder" in k]
    for k in decoder:                                 # ... but not to the rest of the MAE
        assert torch.equal(t1[k], t0[k]), k


def test_adamae_one_step_moves_sampler_and_mae(tmp_path):
    for keys in ({}, {"embedding": "own"}):
        t = adamae_trainer(tmp_path / str(len(keys)), weight=1e-4, **keys)
        gaze0, task0 = snapshot(t.gaze_model), snapshot(t.task)
        m = step(t)
        assert sorted(changed(gaze0, t.gaze_model)) == sorted(gaze0), keys
        assert changed(task0, t.task), keys
        assert m["nonfinite_steps"] == 0


# ---------------------------------------------------------------------------------- random masks
@pytest.mark.parametrize("masking", ["random", "tube"])
def test_random_tube_masks(masking):
    from autogaze.models.random_tube import RandomTube

    model = RandomTube.from_config({**SAMPLER_KEYS, "masking": masking})   # width keys: accepted, unused
    assert list(model.parameters()) == [] and not model.uses_task_tokens
    video = torch.rand(3, 4, 3, 32, 32)
    budget = model.sample_budget(video)
    assert budget.total.tolist() == [N_VISIBLE] * 3
    out = model.generate(video, budget, generator=torch.Generator().manual_seed(0))
    mask = out.gazes.to_mask()                                          # [B, T', P]
    if masking == "random":                                             # N_v anywhere in the clip
        assert mask.sum((1, 2)).tolist() == [N_VISIBLE] * 3
    else:                                                               # N_v / T' per tube-frame, the same positions
        assert mask.sum(2).tolist() == [[N_VISIBLE // 2] * 2] * 3 and torch.equal(mask[:, 0], mask[:, 1])
    assert not torch.equal(mask[0], mask[1])
    torch.testing.assert_close(out.scores.token_log_probs, torch.full((3, N), -np.log(N)))
    again = model.generate(video, budget, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.gazes.ids, out.gazes.ids)                  # the generator decides the draw
