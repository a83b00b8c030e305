"""The optimizer keys: AdamW with betas and decoupled weight decay (1-D tensors exempt), separate gaze
and task learning rates, lr x batch / 256, the cosine warm-up schedule per group, config checks.
Hand-computed values; the trainer runs on the test doubles (tests/doubles.py)."""
import math

import pytest
import torch

from autogaze.config import TrainerConfig, validate_trainer
from autogaze.utils.optim import build_optimizer, param_groups
from autogaze.utils.parsing import ConfigError
from tests.test_trainer import make_trainer


def test_default_keys_keep_one_group_and_torch_defaults(tmp_path):
    """No gaze_lr / task_lr / weight decay: one group of every trained parameter, as before."""
    for opt, cls in [("adam", torch.optim.Adam), ("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)]:
        t = make_trainer(tmp_path / opt, optimizer=opt, train_task=True)
        assert type(t.optimizer) is cls and len(t.optimizer.param_groups) == 1
        group = t.optimizer.param_groups[0]
        assert group["params"] == t.trainable_parameters() and group["lr"] == 0.1
        assert group["weight_decay"] == 0.0 and "name" not in group
        if opt != "sgd":
            assert group["betas"] == (0.9, 0.999)


def test_groups_get_their_own_lr_and_decay_exemptions(tmp_path):
    t = make_trainer(tmp_path, optimizer="adamw", train_task=True, gaze_lr=0.01, task_lr=0.2, weight_decay=0.5,
                     betas=[0.8, 0.9])
    groups = {g["name"]: g for g in t.optimizer.param_groups}
    assert list(groups) == ["gaze", "gaze_no_decay", "task_no_decay"]   # the task's one parameter is a scalar
    model = t.gaze_model
    assert groups["gaze"]["params"] == [model.proj.weight, model.tlp.weight]
    assert groups["gaze_no_decay"]["params"] == [model.proj.bias, model.tlp.bias]
    assert groups["task_no_decay"]["params"] == [t.task.scale]
    assert [groups[n]["lr"] for n in groups] == [0.01, 0.01, 0.2]
    assert [groups[n]["weight_decay"] for n in groups] == [0.5, 0.0, 0.0]
    assert all(g["betas"] == (0.8, 0.9) for g in groups.values())
    m = t.train_step([next(t._micro_batches()), next(t._micro_batches())])
    assert (m["lr"], m["lr_gaze"], m["lr_task"]) == (0.01, 0.01, 0.2)   # constant schedule
    assert "lr_gaze_no_decay" not in m


def test_adamw_step_by_hand():
    """AdamW, one step: p <- p (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps) with m_hat = g, v_hat = g^2
    after bias correction; the 1-D bias gets no decay."""
    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0]]))
        lin.bias.fill_(3.0)
    cfg = TrainerConfig(optimizer="adamw", lr=0.1, weight_decay=0.5, betas=(0.9, 0.95))
    opt = build_optimizer(cfg, param_groups(cfg, {"gaze": list(lin.parameters())}, 1.0))
    lin.weight.grad = torch.tensor([[0.5, 0.0]])   # the zero entry moves by decay only
    lin.bias.grad = torch.tensor([-4.0])
    opt.step()
    eps = 1e-8
    w = torch.tensor([[1.0 * (1 - 0.05) - 0.1 * 0.5 / (0.5 + eps), -2.0 * (1 - 0.05)]])
    torch.testing.assert_close(lin.weight.detach(), w, rtol=0, atol=1e-7)
    torch.testing.assert_close(lin.bias.detach(), torch.tensor([3.0 + 0.1 * 4 / (4 + eps)]), rtol=0, atol=1e-7)


def test_decay_only_step_in_the_trainer(tmp_path):
    """Zero gradients: AdamW's update is 0 and decay alone scales the matrices by (1 - lr wd)."""
    t = make_trainer(tmp_path, optimizer="adamw", lr=0.1, weight_decay=0.5)
    before = {k: v.clone() for k, v in t.gaze_model.named_parameters()}
    for p in t.gaze_model.parameters():
        p.grad = torch.zeros_like(p)
    t.optimizer.step()
    for name, p in t.gaze_model.named_parameters():
        scale = 1.0 if p.ndim <= 1 else 1 - 0.1 * 0.5
        assert torch.equal(p.detach(), before[name] * scale), name


def test_lr_scales_with_the_global_batch(tmp_path):
    # global batch 4 (micro 2 x acc 2): every lr and min_lr x 4 / 256
    t = make_trainer(tmp_path, scale_lr_with_batch=True, train_task=True, task_lr=0.4, lr_schedule="linear",
                     min_lr=0.01, n_epochs=2)
    assert t.geom.global_batch == 4
    assert [g["lr"] for g in t.optimizer.param_groups] == pytest.approx([0.1 / 64, 0.4 / 64])
    data = t._micro_batches()
    for _ in range(t.total_steps):
        m = t.train_step([next(data), next(data)])
        t.state.train_step += 1
    # linear to min_lr: the gaze group ends at min_lr / 64, the task group at its own lr x min_lr / lr
    assert m["lr_gaze"] == pytest.approx(0.01 / 64) and m["lr_task"] == pytest.approx(0.04 / 64)


def test_cosine_warmup_per_group_in_the_trainer(tmp_path):
    """8 steps, warmup_ratio 0.25 -> W = 2: lr_g(s) = base_g * m(s), m = s/2 then
    0.1 + 0.9 (1 + cos(pi (s - 2) / 6)) / 2 (min_lr / lr = 0.1), for both groups."""
    t = make_trainer(tmp_path, lr_schedule="cosine_w_warmup", warmup_ratio=0.25, lr=0.1, min_lr=0.01,
                     train_task=True, task_lr=1.0, n_epochs=2)
    assert t.total_steps == 8
    data = t._micro_batches()
    for s in range(8):
        mult = s / 2 if s < 2 else 0.1 + 0.9 * (1 + math.cos(math.pi * (s - 2) / 6)) / 2
        used = [g["lr"] for g in t.optimizer.param_groups]
        assert used == pytest.approx([0.1 * mult, 1.0 * mult], abs=1e-15), s
        t.train_step([next(data), next(data)])
        t.state.train_step += 1
    assert [g["lr"] for g in t.optimizer.param_groups] == pytest.approx([0.01, 0.1])


@pytest.mark.parametrize("key,value", [("betas", [0.9]), ("betas", [0.9, 1.0]), ("betas", "0.9,0.95"),
                                       ("gaze_lr", -1.0), ("task_lr", "fast"), ("weight_decay", -0.1),
                                       ("scale_lr_with_batch", "yes"), ("optimizer", "lamb"),
                                       ("lr_schedule", "cosine")])
def test_bad_optimizer_keys_fail_before_work(key, value):
    with pytest.raises(ConfigError, match=f"trainer.{key}"):
        validate_trainer(TrainerConfig(**{key: value}))


def test_good_optimizer_keys_pass():
    validate_trainer(TrainerConfig(optimizer="adamw", betas=[0.9, 0.95], weight_decay=0.05, gaze_lr=1.5e-6,
                                   task_lr=None, lr_schedule="cosine_w_warmup", scale_lr_with_batch=True))
