"""Test helpers for kill-and-resume checks: reseed every RNG, and run a trainer until its fault hook.

The trainer's ``AUTOGAZE_FAULT_AT_STEP`` hook SIGKILLs the process right after the checkpoint of that
step; in-process tests patch ``os.kill`` to raise instead, so the run stops at the same place.
"""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch


class Killed(Exception):
    """Raised in place of the SIGKILL of the fault hook."""


def seed_all(s: int) -> None:
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def fit_until_fault(trainer, step: int, monkeypatch) -> None:
    """``trainer.fit()`` until the fault hook fires after step ``step``'s checkpoint; then undo the
    test's monkeypatches (the environment variable and ``os.kill``)."""
    monkeypatch.setenv("AUTOGAZE_FAULT_AT_STEP", str(step))

    def fake_kill(pid, sig):
        raise Killed

    monkeypatch.setattr(os, "kill", fake_kill)
    with pytest.raises(Killed):
        trainer.fit()
    monkeypatch.undo()
