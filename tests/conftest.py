"""Shared test set-up: offline hub, few threads, and the upstream fixtures (skipped when absent)."""
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]
FIXTURES = (REPO / ".." / "shared" / "fixtures" / "upstream").resolve()


@pytest.fixture()
def one_thread():
    """One torch thread for the test. Tiny models are per-op overhead: on 2 busy shared cores a second
    thread spins and runs 10-20x slower (measured: 0.3 s against 4-8 s for one `label` call). A module
    opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Path to ../shared/fixtures/upstream; skips the test when the folder is absent
    (an outside clone has no ../shared; CI always has it)."""
    if not FIXTURES.is_dir():
        pytest.skip(f"upstream fixtures not found at {FIXTURES} (they live beside the repo in ../shared)")
    return FIXTURES


@pytest.fixture(scope="session")
def reference(fixtures_dir):
    """The tensors of reference.safetensors, as a dict."""
    from safetensors.torch import load_file

    return load_file(str(fixtures_dir / "reference.safetensors"))


@pytest.fixture(scope="module")
def model():
    """A tiny random AutoGaze (scales 32+64, P=20, see ``tiny_config``), seeded, in eval mode."""
    from autogaze.models.autogaze import AutoGaze
    from autogaze.models.autogaze.config import tiny_config

    torch.manual_seed(0)
    return AutoGaze(tiny_config()).eval()
