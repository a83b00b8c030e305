"""A DistributedSampler that can start mid-epoch, for exact resume of the data order."""
from __future__ import annotations

from typing import Iterator

from torch.utils.data import DistributedSampler


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler whose order depends only on (seed, epoch), plus a start offset.

    ``set_epoch(e)`` must be called every epoch (upstream never did, so every epoch repeated one
    order). ``set_start(k)`` skips the first ``k`` indices of this rank's order for the current
    epoch only; the trainer uses it to resume inside an epoch.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start = 0

    def set_start(self, start: int) -> None:
        self.start = start

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start
