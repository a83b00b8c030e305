"""What every evaluation loop shares: eval mode for the duration, and the batches it reads."""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

from torch import nn

from autogaze.types import Batch


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode, and restore each one's own mode afterwards (even on error)."""
    was = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, training in zip(modules, was):
            m.train(training)


def nonempty_batches(batches: Iterable[Batch], max_batches: int | None = None) -> Iterator[tuple[int, Batch]]:
    """(index, batch) for the first ``max_batches`` batches (None = all), skipping batches left empty
    because every video in them was undecodable. The index seeds per-batch random draws."""
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            return
        if batch.batch_size:
            yield i, batch
