"""trainer.transform_on_device: uint8 batches finished on the device equal the CPU path bit for bit.

There is no GPU here. The code that CUDA runs (the integer resize of aa_resize.py, forced with
``kernel="integer"``) runs on the CPU device and is compared with the CPU path. It is integer
arithmetic plus gathers from CPU-built tables, so the comparison holds on CUDA as well.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from autogaze.algorithms import NTP
from autogaze.config import LoggerConfig, TrainerConfig, parse_config
from autogaze.datasets.aa_resize import ResizeTables, resize_boxes, taps
from autogaze.datasets.device_transform import LoaderBatch, RawBatch
from autogaze.datasets.labels import write_labels
from autogaze.datasets.synthetic import make_clip, make_synthetic_dataset, write_mp4
from autogaze.datasets.video_folder import VideoFolder
from autogaze.trainer import Trainer
from autogaze.types import Batch
from autogaze.utils.distributed import DistInfo
from autogaze.utils.metric_logger import MetricLogger
from autogaze.utils.parsing import ConfigError
from tests.doubles import P, DoubleGazeModel, DoubleTask

OTHER_NORM = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}  # gaze != task: two outputs
RRC = {"aug_type": "random_resized_crop"}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """3 square 64-px clips of 6 frames plus one 48x80 clip (mixed sizes: padded stacking)."""
    r = make_synthetic_dataset(tmp_path_factory.mktemp("dev"), n_train=3, n_val=1, num_frames=6, size=64, seed=0)
    write_mp4(r / "train" / "wide.mp4", make_clip(6, (48, 80), seed=3))
    return r


def folder(root, on_device=False, preprocessing=None, **kw):
    ds = VideoFolder.from_config({"root": str(root), "clip_len": 4, **kw}, split="train", size=32,
                                 preprocessing=preprocessing, tokens_per_frame=P)
    ds.set_transform_on_device(on_device)
    return ds


@pytest.mark.parametrize("hw_in, hw_out", [((448, 448), (224, 224)), ((37, 53), (20, 29)), ((20, 29), (61, 90)),
                                           ((64, 41), (64, 32)), ((30, 30), (31, 29)), ((449, 300), (32, 224))])
def test_integer_resize_equals_torch_uint8_kernel(hw_in, hw_out):
    x = torch.randint(0, 256, (2, 3, *hw_in), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(x, size=hw_out, mode="bilinear", antialias=True, align_corners=False)
    ours = resize_boxes(x[None], ResizeTables.build([(0, 0, *hw_in)], hw_out))[0]
    assert torch.equal(ours, ref)
    # Why not the float kernel (CUDA's only antialiased one) plus rounding: it is off by one level.
    flt = F.interpolate(x.float(), size=hw_out, mode="bilinear", antialias=True).add(0.5).floor().clamp(0, 255)
    assert (flt - ref.float()).abs().max() <= 1


def test_boxes_of_one_batch_each_get_their_own_crop_and_weights():
    x = torch.randint(0, 256, (3, 2, 3, 64, 80), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    boxes = [(0, 0, 64, 80), (5, 7, 30, 41), (10, 20, 54, 33)]
    ours = resize_boxes(x, ResizeTables.build(boxes, (32, 32)), chunk_frames=2)   # 1 clip per chunk
    for b, (top, left, h, w) in enumerate(boxes):
        ref = F.interpolate(x[b, :, :, top:top + h, left:left + w], size=(32, 32), mode="bilinear", antialias=True)
        assert torch.equal(ours[b], ref), b
    idx, w, prec = taps(448, 224)
    assert idx.shape == w.shape == (224, 5) and prec == 16 and (w.sum(1) - (1 << 16)).__abs__().max() <= 2


@pytest.mark.parametrize("aug, prep", [(None, None), (RRC, None), (RRC, OTHER_NORM)])
@pytest.mark.parametrize("kernel", ["auto", "integer"])
def test_device_path_is_bit_identical_to_cpu_path(root, aug, prep, kernel):
    cpu_ds, dev_ds = folder(root, False, prep, train_data_aug=aug), folder(root, True, prep, train_data_aug=aug)
    idx = range(len(cpu_ds))
    cpu = cpu_ds.collate([cpu_ds[i] for i in idx])
    raw = dev_ds.collate([dev_ds[i] for i in idx])
    assert isinstance(raw, RawBatch) and raw.frames.dtype == torch.uint8 and raw.frames.shape == (4, 4, 3, 64, 80)
    out = raw.to("cpu", kernel=kernel)
    assert type(out) is Batch and out.paths == cpu.paths
    assert out.video.shape == (4, 4, 3, 32, 32) and torch.equal(out.video, cpu.video)
    assert torch.equal(out.video_for_task, cpu.video_for_task)
    assert (out.video_for_task is out.video) == (cpu.video_for_task is cpu.video) == (prep is None)


def test_crop_boxes_are_drawn_per_clip_and_workers_change_nothing(root):
    ds = folder(root, True, random_sample_frame=True, train_data_aug=RRC)
    a = ds[1]["box"]
    assert ds[1]["box"] == a                                             # fixed by (seed, epoch, index)
    ds.set_epoch(1)
    assert ds[1]["box"] != a                                             # a new box each epoch
    ds.set_epoch(0)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=ds.collate)
    via_workers = torch.cat([b.to("cpu").video for b in loader])        # stacked in shared memory
    cpu = folder(root, False, random_sample_frame=True, train_data_aug=RRC)
    assert torch.equal(via_workers, torch.stack([cpu[i]["video"] for i in range(len(cpu))]))


def test_bad_videos_are_skipped_and_counted_in_device_mode(root, tmp_path):
    (tmp_path / "train").mkdir()
    good = sorted((root / "train").glob("*.mp4"))[0]
    (tmp_path / "train" / "a.mp4").write_bytes(good.read_bytes())
    (tmp_path / "train" / "b_zero.mp4").write_bytes(b"")
    ds = folder(tmp_path, True)
    batch = ds.collate([ds[0], ds[1]])
    assert isinstance(batch, RawBatch) and batch.batch_size == 1
    assert [p.rsplit("/", 1)[1] for p in batch.to("cpu").skipped_paths] == ["b_zero.mp4"]
    empty = ds.collate([ds[1]])                                           # all bad: the CPU path's zero-row batch
    assert isinstance(empty, LoaderBatch) and empty.batch_size == 0 and len(empty.skipped_paths) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("aug, prep", [(None, None), (RRC, OTHER_NORM)])
def test_cuda_result_equals_cpu_path(root, aug, prep):
    cpu_ds, dev_ds = folder(root, False, prep, train_data_aug=aug), folder(root, True, prep, train_data_aug=aug)
    cpu = cpu_ds.collate([cpu_ds[i] for i in range(len(cpu_ds))])
    out = dev_ds.collate([dev_ds[i] for i in range(len(dev_ds))]).pin_memory().to("cuda", non_blocking=True)
    assert torch.equal(out.video.cpu(), cpu.video) and torch.equal(out.video_for_task.cpu(), cpu.video_for_task)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinning needs CUDA")
def test_pin_memory_keeps_shared_video(root):
    raw = folder(root, True).collate([folder(root, True)[0]])
    assert raw.pin_memory().frames.is_pinned()
    cpu = folder(root, False).collate([folder(root, False)[0]])
    pinned = cpu.pin_memory()
    assert pinned.video.is_pinned() and pinned.video_for_task is pinned.video


def _config(**trainer):
    return {"dataset": {"_target_": "tests.doubles.DoubleDataset", "clip_len": 2}, "model": {}, "task": {},
            "algorithm": {}, "trainer": trainer}


def test_config_key_is_validated_before_any_work():
    with pytest.raises(ConfigError) as e:
        parse_config(_config(transform_on_device="yes"))
    assert e.value.key == "trainer.transform_on_device" and e.value.value == "yes"
    assert "true or false" in e.value.rule and "transform_on_device=true" in e.value.fix
    with pytest.raises(ConfigError, match="DoubleDataset cannot hand over uint8 frames"):
        parse_config(_config(transform_on_device=True))
    assert parse_config(_config()).trainer.transform_on_device is False
    ok = {**_config(transform_on_device=True), "dataset": {"_target_": "autogaze.datasets.video_folder.VideoFolder",
                                                          "clip_len": 2}}
    assert parse_config(ok).trainer.transform_on_device is True


def _trainer(tmp_path, ds, on_device: bool) -> Trainer:
    torch.manual_seed(0)
    cfg = TrainerConfig(batch_size=4, per_gpu_max_batch_size=2, lr=0.1, optimizer="sgd", lr_schedule="constant",
                        n_epochs=1, num_workers=0, device="cpu", train_task=False, val_nsteps=1000,
                        save_nsteps=1000, visualize_every=0, seed=0, transform_on_device=on_device)
    return Trainer(cfg, DoubleGazeModel(), DoubleTask(), NTP.from_config({"optimize_task_loss_prediction": True}),
                   ds, None, ds.collate, DistInfo(), tmp_path, MetricLogger(LoggerConfig(), tmp_path, "t", {}, True), {})


def test_trainer_step_in_uint8_mode_equals_cpu_path(root, tmp_path):
    """One optimizer step (2 micro-batches of 2, one corrupt clip): same parameters, same skip count."""
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    for p in sorted((root / "train").glob("*.mp4"))[:3]:
        (data / "train" / p.name).write_bytes(p.read_bytes())
    (data / "train" / "corrupt.mp4").write_bytes(b"not a video" * 50)
    paths = sorted((data / "train").glob("*.mp4"))
    write_labels(tmp_path / "labels.json", {str(p): {"gazing_pos": [[t * P + 1, t * P + 3] for t in range(4)],
                                                    "task_losses": [[0.5, 0.4]] * 4} for p in paths})
    runs = {}
    for on_device in (False, True):
        ds = folder(data, train_data_aug=RRC, gt_gazing_pos_paths={"train": str(tmp_path / "labels.json")})
        t = _trainer(tmp_path / str(on_device), ds, on_device)
        assert ds.on_device is on_device
        it = t._micro_batches()
        metrics = t.train_step([next(it), next(it)])
        runs[on_device] = (metrics, {k: v.clone() for k, v in t.gaze_model.state_dict().items()})
    (m_cpu, p_cpu), (m_dev, p_dev) = runs[False], runs[True]
    assert m_dev["skipped_videos"] == m_cpu["skipped_videos"] == 1.0
    assert m_dev["loss"] == m_cpu["loss"]
    assert all(torch.equal(p_cpu[k], p_dev[k]) for k in p_cpu)
