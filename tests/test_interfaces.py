"""The plug-in contracts of autogaze/interfaces.py.

* every model, task, algorithm and dataset a packaged config names (``autogaze/configs/<group>/*.yaml``)
  satisfies its Protocol: members present (runtime ``isinstance``) and methods that take the
  Protocol's parameters (``conformance_problems``), built tiny from those configs;
* a user-defined component that does not conform fails where it is built, with a ConfigError that
  names what is missing;
* GRPO and TATS reach the gaze model only through ``GazePolicy``: a model that exposes nothing beyond
  the GazeModel Protocol still runs their rollouts and a GRPO backward.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from autogaze.algorithms import GRPO, TATSPPO, Algorithm, GazePolicy
from autogaze.algorithms.base import ScoreAdapter, StepInfo
from autogaze.algorithms.ppo_memory import EmptyItem
from autogaze.build import build_gaze_model, build_task, component_class
from autogaze.config import CONFIG_DIR
from autogaze.datasets.video_folder import VideoFolder
from autogaze import interfaces
from autogaze.interfaces import (Configurable, DatasetBase, DeviceTransformDataset, GazeModel, StepItem, Task,
                                 TrainDataset, _members, conformance_problems)
from autogaze.labeling.oracle import GreedyOracle
from autogaze.types import Batch, Budget, GazeRollout
from autogaze.utils.parsing import ConfigError
from tests.doubles_grpo import ClipDataset, RewardDoubleTask, SamplingGazeModel
from tests.doubles_tokens import make_tats
from tests.test_grpo_autogaze import SIZE, T, tiny_autogaze

# The packaged configs' bodies at tiny sizes: AutoGaze and its baselines share the autogaze group
# keys; the token samplers and the tube task default to their `tiny` presets.
TINY_AUTOGAZE = ["scales=32+64", "num_vision_tokens_each_frame=20", "max_num_frames=4",
                 "gaze_model_config.input_img_size=64", "gaze_model_config.vision_model_config.hidden_dim=32",
                 "gaze_model_config.vision_model_config.out_dim=32", "gaze_model_config.connector_config.hidden_dim=32",
                 "gaze_model_config.gaze_decoder_config.hidden_size=32",
                 "gaze_model_config.gaze_decoder_config.intermediate_size=64",
                 "gaze_model_config.gaze_decoder_config.num_attention_heads=2",
                 "gaze_model_config.gaze_decoder_config.num_hidden_layers=1",
                 "preprocessing.size.shortest_edge=64"]
TINY_TASK = {"video_mae_reconstruction": ["recon_model=tiny", "scales=32+64"], "tube_video_mae": [],
             "video_feature_reconstruction": ["vision_model=tiny-siglip", "scales=32+64",
                                              "recon_model_config.decoder_num_attention_heads=2",
                                              "recon_model_config.decoder_intermediate_size=64"],
             "slot_attention": ["vision_model=tiny-siglip", "scales=32+64"]}
AUTOGAZE_KEYS = ("autogaze", "random", "grid", "framediff", "full")


def group_configs(group: str) -> dict[str, dict]:
    """name -> the yaml's keys (without Hydra's ``defaults``) for every config of ``group``."""
    out = {}
    for f in sorted((CONFIG_DIR / group).glob("*.yaml")):
        cfg = OmegaConf.to_container(OmegaConf.load(f), resolve=True)
        cfg.pop("defaults", None)
        out[f.stem] = cfg
    return out


def _body(group: str, name: str) -> dict:
    configs = group_configs(group)
    if group == "model" and name in AUTOGAZE_KEYS:  # the baselines' yaml inherits autogaze.yaml
        base = OmegaConf.create(configs["autogaze"])
        base.merge_with(OmegaConf.from_dotlist(TINY_AUTOGAZE))
        body = OmegaConf.to_container(base)
        body["_target_"] = configs[name]["_target_"]
        return body
    cfg = OmegaConf.create(configs[name])
    cfg.merge_with(OmegaConf.from_dotlist(TINY_TASK.get(name, []) if group == "task" else []))
    return OmegaConf.to_container(cfg)


def _exp(**groups) -> SimpleNamespace:
    """What build_gaze_model / build_task read of an ExperimentConfig."""
    return SimpleNamespace(model=groups.get("model", {}), task=groups.get("task", {"scales": "32+64"}))


@pytest.fixture(scope="module")
def tiny_task():
    torch.manual_seed(0)
    return build_task(_exp(task=_body("task", "video_mae_reconstruction")))


# ---------------------------------------------------------------------------------- every component
@pytest.mark.parametrize("name", sorted(group_configs("model")))
def test_every_packaged_model_is_a_gaze_model(name):
    torch.manual_seed(0)
    model = build_gaze_model(_exp(model=_body("model", name)))  # build_gaze_model checks: no raise
    assert isinstance(model, GazeModel)
    assert conformance_problems(model, GazeModel) == []
    assert conformance_problems(type(model), Configurable) == []
    assert model.can_score == (name not in ("random", "grid", "framediff", "full"))
    if not model.can_score:
        with pytest.raises(NotImplementedError, match="no gaze distribution"):
            model.score(torch.zeros(1, 1, 3, 64, 64), None)
    assert isinstance(model.uses_task_tokens, bool) and model.uses_task_video is False
    assert (model.image_processor is not None) == (name == "autogaze")  # only AutoGaze has a preprocessor


@pytest.mark.parametrize("name", sorted(group_configs("task")))
def test_every_packaged_task_is_a_task(name):
    torch.manual_seed(0)
    task = build_task(_exp(task=_body("task", name)))
    assert isinstance(task, Task) and conformance_problems(task, Task) == []
    assert conformance_problems(type(task), Configurable) == []
    assert (task.embed_tokens is None) == (name != "tube_video_mae")  # only the tube MAE shares X
    assert set(task.trainable_state_dict()) == set(task.state_dict())


def test_the_greedy_oracle_is_a_gaze_model_that_reads_the_task_video(tiny_task):
    oracle = GreedyOracle(tiny_task)
    assert isinstance(oracle, GazeModel) and conformance_problems(oracle, GazeModel) == []
    assert oracle.uses_task_video and not oracle.can_score and oracle.encode_video(torch.zeros(1)) is None


@pytest.mark.parametrize("name", sorted(group_configs("algorithm")))
def test_every_packaged_algorithm_subclasses_the_abc(name):
    cls = component_class("algorithm", group_configs("algorithm")[name])
    assert interfaces.Algorithm is Algorithm  # one contract: the ABC, re-exported
    assert issubclass(cls, Algorithm) and conformance_problems(cls, Configurable) == []
    assert callable(cls.check_experiment)  # the ABC's default, or the algorithm's own rules


def test_the_packaged_dataset_is_a_train_dataset(tmp_path):
    for split in ("train", "val"):  # VideoFolder only lists files until an item is read
        (tmp_path / split).mkdir()
        (tmp_path / split / "a.mp4").write_bytes(b"")
    cfg = {k: v for k, v in group_configs("dataset")["video_folder"].items() if k != "_target_"}
    ds = VideoFolder.from_config({**cfg, "root": str(tmp_path), "clip_len": 2}, split="train")
    assert isinstance(ds, TrainDataset) and conformance_problems(ds, TrainDataset) == []
    assert isinstance(ds, DeviceTransformDataset)
    assert not isinstance(ClipDataset(), DeviceTransformDataset)  # a base dataset does not hand over uint8
    empty = ds.collate([])  # no good items: an empty StepItem that still counts its skipped videos
    for item in (empty, Batch(torch.zeros(1, 1, 3, 2, 2), torch.zeros(1, 1, 3, 2, 2), ["a"]), EmptyItem()):
        assert isinstance(item, StepItem)


# ---------------------------------------------------------------------------------- non-conforming
class BareTask(nn.Module):
    """A user task that parses its config but has no TaskBase defaults and an old forward."""

    @classmethod
    def from_config(cls, cfg):
        return cls()

    @classmethod
    def validate_config(cls, cfg):
        return None

    def forward(self, video_for_task, gazes):
        raise AssertionError("never called")


class BareModel(nn.Module):
    """A user gaze model with budgets and generation only."""

    tokens_per_frame = 4

    @classmethod
    def from_config(cls, cfg):
        return cls()

    @classmethod
    def validate_config(cls, cfg):
        return None

    def sample_budget(self, video, *, training, group_size=1, gazing_ratio=None, task_loss_requirement=None,
                      generator=None, temperature=None):
        raise AssertionError("never called")

    def generate(self, video, budget):
        raise AssertionError("never called")


class NoValidate:
    @classmethod
    def from_config(cls, cfg):
        return cls()


class NotAnAlgorithm:
    @classmethod
    def from_config(cls, cfg):
        return cls()

    @classmethod
    def validate_config(cls, cfg):
        return None


def test_a_non_conforming_task_fails_at_build_time_naming_what_is_missing():
    with pytest.raises(ConfigError) as e:
        build_task(_exp(task={"_target_": "tests.test_interfaces.BareTask"}))
    assert e.value.key == "task._target_" and e.value.value == "tests.test_interfaces.BareTask"
    for missing in ("`set_trainable`", "`trainable_state_dict`", "`load_trainable_state_dict`", "`embed_tokens`",
                    "`visualize`", "`tokens_per_frame`", "`scales`", "`forward` takes no `frame_ids`, `generator`"):
        assert missing in e.value.rule, missing
    assert "autogaze.interfaces.TaskBase" in e.value.fix


def test_a_non_conforming_model_fails_at_build_time_naming_what_is_missing():
    with pytest.raises(ConfigError) as e:
        build_gaze_model(_exp(model={"_target_": "tests.test_interfaces.BareModel"}))
    assert e.value.key == "model._target_"
    for missing in ("`score`", "`encode_video`", "`save_pretrained`", "`uses_task_tokens`", "`can_score`",
                    "`image_processor`", "`generate` takes no `generator`, `temperature`, `do_sample`"):
        assert missing in e.value.rule, missing
    assert "sample_budget" not in e.value.rule  # it has every parameter
    assert "GazeModelBase" in e.value.fix


def test_component_classes_are_checked_before_anything_is_built():
    with pytest.raises(ConfigError, match="is not a Configurable: no `validate_config`") as e:
        component_class("dataset", {"_target_": "tests.test_interfaces.NoValidate"})
    assert e.value.key == "dataset._target_" and "DatasetBase" in e.value.fix
    with pytest.raises(ConfigError, match="not a subclass of autogaze.algorithms.Algorithm"):
        component_class("algorithm", {"_target_": "tests.test_interfaces.NotAnAlgorithm"})


def test_the_bases_fill_every_default():
    class Minimal(DatasetBase):
        def __len__(self):
            return 0

        def __getitem__(self, i):
            raise IndexError(i)

        collate = staticmethod(ClipDataset.collate)

    assert conformance_problems(Minimal(), TrainDataset) == []
    assert conformance_problems(SamplingGazeModel(), GazeModel) == []  # tests/doubles: GazeModelBase + its own
    task = RewardDoubleTask()
    task.set_trainable(False)
    assert not any(p.requires_grad for p in task.parameters()) and task.visualize(None, None, None, None, "x") is None
    with pytest.raises(ConfigError, match="trainer.task_weights"):
        task.load_task_weights("w.pt")


# ---------------------------------------------------------------------------------- the policy boundary
GAZE_MODEL_MEMBERS = set(_members(GazeModel))


class ProtocolOnly:
    """TEST DOUBLE: exposes exactly the GazeModel Protocol's members of ``inner`` (anything else
    raises), and records which were used."""

    def __init__(self, inner: nn.Module):
        self._inner, self.used = inner, set()

    def __getattr__(self, name: str):  # only reached for names not set in __init__
        if name not in GAZE_MODEL_MEMBERS:
            raise AttributeError(f"`{name}` is not a GazeModel member")
        self.used.add(name)
        return getattr(self._inner, name)


def test_the_policy_keeps_the_model_private():
    model = SamplingGazeModel()
    policy = GazePolicy(model, ScoreAdapter(model))
    assert not hasattr(policy, "model") and policy.tokens_per_frame == model.tokens_per_frame


@pytest.mark.parametrize("kind", ["double", "autogaze"])
def test_grpo_runs_on_a_model_with_only_the_protocol(kind):
    """The double has no reusable encoder; tiny AutoGaze has one (encode_video -> shared tokens)."""
    torch.manual_seed(0)
    inner = SamplingGazeModel() if kind == "double" else tiny_autogaze()
    size = 4 if kind == "double" else SIZE
    model = ProtocolOnly(inner)
    alg = GRPO.from_config({"group_size": 2, "optimize_task_loss_prediction": True})
    batch = alg.prepare(ClipDataset.collate([ClipDataset(2, T, size)[i] for i in range(2)]))
    rollout = alg.rollout(GazePolicy(model, model.score), batch, temperature=1.0)
    task_out = RewardDoubleTask()(batch.video_for_task, rollout.gazes)
    alg.loss(batch, rollout, task_out).loss.mean().backward()
    assert any(p.grad is not None for p in inner.parameters())
    assert {"sample_budget", "generate", "score", "encode_video", "training"} <= model.used


def test_tats_warmup_reads_the_token_space_through_the_policy():
    inner = make_tats()
    model = ProtocolOnly(inner)
    alg = TATSPPO.from_config({"warmup_steps": 1})
    alg.on_step_start(StepInfo(step=0, epoch=0, total_steps=2, steps_per_epoch=1, seed=0, temperature=1.0))
    video = torch.rand(2, 4, 3, 32, 32)
    rollout = alg.rollout(GazePolicy(model, model.score), Batch(video, video, ["a", "b"]), 1.0)
    assert isinstance(rollout, GazeRollout) and rollout.gazes.tokens_per_frame == inner.tokens_per_frame
    assert "tokens_per_frame" in model.used and isinstance(rollout.budget, Budget)


def test_policy_passes_only_the_options_that_are_set():
    seen = []

    class Recording(SamplingGazeModel):
        def generate(self, video, budget, **kw):
            seen.append(sorted(kw))
            return super().generate(video, budget, **kw)

    model = Recording()
    policy = GazePolicy(model, model.score)
    video = torch.rand(1, T, 3, 4, 4)
    budget = policy.sample_budget(video)
    policy.generate(video, budget)
    policy.generate(video, budget, temperature=2.0, tokens=None)
    assert seen == [[], ["temperature"]]
