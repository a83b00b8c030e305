"""VideoMAE task vs upstream: fixture parity, strict weight loading, released key layout."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from autogaze.tasks.video_mae_reconstruction import VideoMAEReconstruction, WeightsError
from autogaze.tasks.video_mae_reconstruction.weights import load_task_state_dict
from autogaze.types import Gazes

TOL = 1e-4


def _fixture_task(fixtures_dir, **rmc):
    cfg = {"recon_model": str(fixtures_dir / "videomae_tiny_config.json"), "scales": "32+64+112+224",
           "recon_model_config": {"max_num_frames": 16, "loss_type": "l1", "loss_weights": "1", **rmc}}
    return VideoMAEReconstruction.from_config(cfg)


def _fixture_gazes(reference):
    p = "greedy_ratio0.1."
    return Gazes(reference[p + "gazing_pos"], reference[p + "if_padded_gazing"],
                 reference[p + "num_gazing_each_frame"], tokens_per_frame=265)


def test_tiny_upstream_videomae_matches_fixture(fixtures_dir, reference):
    task = _fixture_task(fixtures_dir)
    report = task.load_task_weights(fixtures_dir / "videomae_tiny.safetensors")
    assert not report.missing and not report.unexpected and report.loaded == len(task.state_dict())
    frames = reference["mae.frame_idx_to_reconstruct"]
    out = task(reference["video"], _fixture_gazes(reference), frame_ids=frames)

    err_frame = (out.loss_per_frame - reference["mae.loss_each_reconstruction_frame"]).abs().max().item()
    err_mean = (out.loss - reference["mae.loss_mean"]).abs().max().item()
    err_rec = (out.reconstruction - reference["mae.reconstruction"]).abs().max().item()
    print(f"parity max abs err: loss_per_frame {err_frame:.2e}, loss_mean {err_mean:.2e}, reconstruction {err_rec:.2e}")
    assert out.frame_ids.tolist() == [3, 9]
    assert err_frame <= TOL and err_mean <= TOL and err_rec <= TOL
    # Frozen by default: eval mode and no graph.
    assert not task.mae.training and not out.loss.requires_grad


def test_tiny_fixture_rejects_missing_and_unexpected_keys(fixtures_dir, tmp_path):
    sd = load_file(str(fixtures_dir / "videomae_tiny.safetensors"))
    task = _fixture_task(fixtures_dir)

    missing = dict(sd)
    missing.pop("mae.decoder.time_embed")
    with pytest.raises(WeightsError, match="(?s)1 missing keys.*mae.decoder.time_embed"):
        load_task_state_dict(task, missing)

    extra = dict(sd, **{"mae.vit.extra_table": torch.zeros(2)})
    with pytest.raises(WeightsError, match="(?s)unexpected keys.*mae.vit.extra_table"):
        load_task_state_dict(task, extra)
    report = load_task_state_dict(task, extra, allow_unexpected=True)
    assert report.unexpected == ["mae.vit.extra_table"]

    # A frame-count mismatch is a shape error naming the key, never a silent partial load.
    wrong = _fixture_task(fixtures_dir, max_num_frames=8)
    with pytest.raises(WeightsError, match="(?s)time_embed.*\\(16, 64\\).*\\(8, 64\\)"):
        load_task_state_dict(wrong, sd)


def test_ddp_prefixed_pt_file_loads(fixtures_dir, tmp_path):
    sd = load_file(str(fixtures_dir / "videomae_tiny.safetensors"))
    path = tmp_path / "checkpoint_task.pt"
    torch.save({"module." + k: v for k, v in sd.items()}, path)
    task = _fixture_task(fixtures_dir)
    task.load_task_weights(path)
    for k, v in task.state_dict().items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=0)


def test_large_preset_takes_released_keys_without_weights(fixtures_dir):
    shapes = json.loads((fixtures_dir / "videomae_large_state_dict_shapes.json").read_text())
    with torch.device("meta"):  # no memory, no weights
        task = VideoMAEReconstruction.from_config(
            {"recon_model": "facebook/vit-mae-large", "scales": "32+64+112+224"})
    own = {k: list(v.shape) for k, v in task.state_dict().items()}
    assert sorted(own) == sorted(shapes)
    assert own == shapes
    sd = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    report = load_task_state_dict(task, sd, assign=True)
    assert report.loaded == len(shapes) == 530 and not report.missing and not report.unexpected


def test_released_layout_with_feature_models_fills_them(fixtures_dir, tmp_path):
    """videomae.pt also holds mae.dinov2_reg.* and mae.siglip2.* (and maybe a SigLIP text tower)."""
    rmc = {"loss_type": "l1+dinov2_reg+siglip2", "loss_weights": "1+0.3+0.3",
           "dinov2_reg_loss_config": {"model": "tiny"}, "siglip2_loss_config": {"model": "tiny"}}
    src = _fixture_task(fixtures_dir, **rmc)
    sd = dict(load_file(str(fixtures_dir / "videomae_tiny.safetensors")))
    for name, fl in src.feature_losses.items():
        sd.update({f"mae.{name}.{k}": v.clone() for k, v in fl.model.state_dict().items()})
    sd["mae.siglip2.logit_scale"] = torch.zeros(1)  # a full SiglipModel's extras are ignored on purpose
    save_file(sd, str(tmp_path / "videomae.safetensors"))

    task = _fixture_task(fixtures_dir, **rmc)
    with pytest.raises(WeightsError, match="(?s)missing.*dinov2_reg"):  # random feature weights are never silent
        load_task_state_dict(task, load_file(str(fixtures_dir / "videomae_tiny.safetensors")))
    report = task.load_task_weights(tmp_path / "videomae.safetensors")
    assert sorted(report.filled_feature_models) == ["dinov2_reg", "siglip2"]
    assert report.ignored == ["mae.siglip2.logit_scale"]
    for name, fl in task.feature_losses.items():
        assert fl.is_pretrained
        for k, v in fl.model.state_dict().items():
            assert torch.equal(v, src.feature_losses[name].model.state_dict()[k])
    # Our checkpoints hold the MAE only; reloading one keeps the already-filled feature models.
    assert not any(k.startswith(("mae.dinov2_reg", "mae.siglip2")) for k in task.trainable_state_dict())
    torch.save(task.trainable_state_dict(), tmp_path / "ckpt.pt")
    task.load_task_weights(tmp_path / "ckpt.pt")


def test_hydra_yaml_instantiates_the_task():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from autogaze.config import CONFIG_DIR

    cfg = OmegaConf.load(CONFIG_DIR / "task" / "video_mae_reconstruction.yaml")
    cfg.recon_model, cfg.scales = "tiny", "32+64+112+224"
    task = instantiate(cfg)
    assert isinstance(task, VideoMAEReconstruction)
    assert task.gaze_model_kwargs == {"target_scales": [32, 64, 112, 224], "target_patch_size": 16}
    assert task.tokens_per_frame == 265 and task.config.attn_mode == "sdpa" and task.loss_weights == {"l1": 1.0}


def test_local_from_pretrained_dirs(tmp_path):
    """recon_model / <loss>_loss_config.model may be local save_pretrained directories."""
    from transformers import Dinov2WithRegistersModel, ViTMAEConfig, ViTMAEForPreTraining

    from autogaze.tasks.video_mae_reconstruction.config import MAE_PRESETS
    from autogaze.tasks.video_mae_reconstruction.losses import FEATURE_PRESETS, build_feature_loss

    torch.manual_seed(0)
    stock = ViTMAEForPreTraining(ViTMAEConfig(**MAE_PRESETS["tiny"]))
    stock.save_pretrained(tmp_path / "mae")
    task = VideoMAEReconstruction.from_config({"recon_model": str(tmp_path / "mae"), "scales": "32+64"})
    own = task.mae.state_dict()
    for k, v in stock.state_dict().items():  # stock weights are the init; new tables start at zero
        assert torch.equal(own[k], v), k
    assert own["vit.embeddings.scale_embed"].abs().sum() == 0 and own["decoder.time_embed"].abs().sum() == 0

    from transformers import Dinov2WithRegistersConfig
    dino = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**FEATURE_PRESETS["dinov2_reg"]["tiny"]))
    dino.save_pretrained(tmp_path / "dino")
    fl = build_feature_loss("dinov2_reg", str(tmp_path / "dino"), "sdpa")
    assert fl.is_pretrained and not fl.model.training
    assert all(torch.equal(v, dino.state_dict()[k]) for k, v in fl.model.state_dict().items())
