"""Installing like a user: build the wheel, install it (non-editable) into a fresh venv, and run the
entry points and the Python API from an unrelated folder, with no checkout on ``sys.path``.

Fast and offline: the wheel is built without build isolation, and the fresh venv gets this
environment's dependencies through a ``.pth`` line instead of a second download of torch.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("demo_mae", "video_folder_video_mae_reconstruction_ar_gaze_ntp",
             "video_folder_video_mae_reconstruction_ar_gaze_grpo")


def _run(cmd: list, cwd: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    # No PYTHONPATH / VIRTUAL_ENV from the caller: the installed copy must be the only autogaze in reach.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="disabled", OMP_NUM_THREADS="1", PIP_NO_INDEX="1")
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"{cmd} -> {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def _uv() -> list[str] | None:
    if importlib.util.find_spec("uv") is not None:  # scripts/setup_env.sh installs it into .venv
        return [sys.executable, "-m", "uv"]
    exe = shutil.which("uv")
    return [exe] if exe else None


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the fresh venv's python, an empty working folder outside the checkout)."""
    uv = _uv()
    if uv is None or importlib.util.find_spec("setuptools") is None:
        pytest.skip("needs uv and setuptools in this environment (scripts/setup_env.sh installs both)")
    root = tmp_path_factory.mktemp("install")
    # Build from a copy: setuptools writes build/ and *.egg-info beside pyproject.toml, and the
    # checkout may be shared with other runs.
    src = root / "src"
    shutil.copytree(REPO / "autogaze", src / "autogaze", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", root / "dist", src])
    wheel = next((root / "dist").glob("autogaze-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"autogaze/configs/{c}.yaml" for c in TOP_LEVEL} <= names
    assert "autogaze/configs/trainer/trainer.yaml" in names and "autogaze/configs/model/autogaze.yaml" in names

    venv = root / "venv"
    _run([*uv, "venv", "-q", "--python", sys.executable, venv])
    py = venv / "bin" / "python"
    # The dependencies: this environment's site-packages, appended by a .pth line. A directory
    # named in a .pth is only added to sys.path; the .pth files inside it (among them our editable
    # install's import hook) are not run, so the checkout stays invisible to the new venv.
    purelib = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (Path(purelib) / "_autogaze_test_deps.pth").write_text("\n".join(deps) + "\n")
    _run([*uv, "pip", "install", "-q", "--offline", "--no-deps", "--python", py, wheel])
    cwd = root / "elsewhere"
    cwd.mkdir()
    return py, cwd


API_SCRIPT = r"""
import json, sys
import av, torch
import autogaze
from autogaze.config import CONFIG_DIR
from autogaze.datasets.synthetic import make_clip, make_synthetic_dataset, write_mp4
from autogaze.datasets.video_utils import read_video_pyav, sample_frame_indices, transform_video_for_pytorch
from autogaze.models.autogaze import AutoGaze, AutoGazeImageProcessor
from autogaze.models.autogaze.config import tiny_config

model = AutoGaze(tiny_config()).eval()  # stands in for from_pretrained("nvidia/AutoGaze")
model.save_pretrained("tiny_gaze")
model = AutoGaze.from_pretrained("tiny_gaze").eval()
processor = AutoGazeImageProcessor(size={"shortest_edge": 64})
path = write_mp4("clip.mp4", make_clip(6, 64, seed=0))
with av.open(str(path)) as container:
    indices = sample_frame_indices(clip_len=4, frame_sample_rate=1, seg_len=container.streams.video[0].frames)
    video = read_video_pyav(container, indices)
x = transform_video_for_pytorch(video, processor)
with torch.inference_mode():
    out = model({"video": x}, gazing_ratio=0.5)
make_synthetic_dataset("data", n_train=2, n_val=1, num_frames=8, size=64)  # for the training run
print(json.dumps({"file": autogaze.__file__, "configs": str(CONFIG_DIR), "x": list(x.shape),
                  "gazing_pos": list(out["gazing_pos"].shape)}))
"""


def test_installed_package_runs_from_any_folder(installed):
    py, cwd = installed
    # the Python API, QUICK_START-style, on a tiny model
    res = json.loads(_run([py, "-c", API_SCRIPT], cwd=cwd).stdout.strip().splitlines()[-1])
    venv = py.parent.parent
    assert Path(res["file"]).is_relative_to(venv) and not Path(res["file"]).is_relative_to(REPO), res
    assert Path(res["configs"]).is_relative_to(venv) and res["x"] == [1, 4, 3, 64, 64]
    assert res["gazing_pos"][0] == 1
    # Hydra finds the packaged configs: compose and print a top-level experiment without training
    job = _run([py, "-m", "autogaze.train", "--config-name", TOP_LEVEL[1], "--cfg", "job"], cwd=cwd).stdout
    assert "_target_: autogaze.algorithms.NTP" in job and "log_nsteps:" in job and "scales:" in job
    # a real one-step training run of the demo's task experiment on the synthetic clips written above
    _run([py, "-m", "autogaze.train", "--config-name", TOP_LEVEL[0], "dataset.root=data", "trainer.logdir=exps",
          "trainer.max_steps=1", "trainer.batch_size=2", "trainer.per_gpu_max_batch_size=2",
          "trainer.num_workers=0", "trainer.max_val_batches=1"], cwd=cwd, timeout=180)
    assert (cwd / "exps" / "demo_mae" / "checkpoint_latest_task.pt").is_file()
    # the gaze CLI
    assert "usage: python -m autogaze.gaze" in _run([py, "-m", "autogaze.gaze", "--help"], cwd=cwd).stdout
