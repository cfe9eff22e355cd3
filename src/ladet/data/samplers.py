"""Batch samplers: aspect-ratio grouped, distributed and resumable training; sharded evaluation.

Training batches of one epoch are a pure function of (seed, epoch, group ids, batch size, world
size), identical on every rank, so:

* every rank gets the same number of batches (``batches_per_epoch``) and its own shard;
* a run resumed at batch ``k`` of an epoch (``start_batch=k``) yields exactly the remaining batches
  an uninterrupted run would have produced.

Construction of an epoch (all ranks compute the same list):

1. permute all dataset indices with a generator seeded by (seed, epoch);
2. split the permutation by group (aspect-ratio flag) keeping the permuted order; complete each
   group to a multiple of ``batch_size`` by repeating its first members (mmdet ``GroupSampler``),
   so every batch is full and single-orientation;
3. order the batches by the permutation position of their last original member (the moment a
   torchvision ``GroupedBatchSampler`` buffer would have filled);
4. repeat batches from the start until their number is a multiple of ``world_size``;
   rank r takes batches r, r + world_size, ...

Duplicates happen only through the completions of steps 2 and 4 (as in ``DistributedSampler``).
Each yielded element is a :class:`SampleKey` (index, epoch), which
:class:`ladet.data.coco.CocoDetection` accepts, so the per-sample random draws follow the epoch
without relying on a worker's copy of the dataset.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Sampler


class SampleKey(NamedTuple):
    """A dataset index together with the epoch whose random draws it must use.

    (``dataset_index`` rather than ``index``: a NamedTuple field may not shadow ``tuple.index``.)
    """

    dataset_index: int
    epoch: int


class GroupedBatchSampler(Sampler[list[SampleKey]]):
    """Aspect-ratio grouped, distributed-aware, resumable batch sampler.

    Args:
        group_ids: group id per dataset index (e.g. 1 = landscape, 0 = portrait).
        batch_size: images per batch on each rank.
        rank, world_size: this process's shard.
        seed: base seed of the shuffle.
        shuffle: False keeps dataset order inside each group (for debugging).
        epoch: the epoch to produce first.
        start_batch: skip this many batches of that epoch (resume); reset to 0 by ``set_epoch``.
    """

    def __init__(
        self,
        group_ids: Sequence[int],
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        epoch: int = 0,
        start_batch: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"invalid rank {rank} for world_size {world_size}")
        if len(group_ids) == 0:
            raise ValueError("GroupedBatchSampler needs at least one sample")
        self.group_ids = np.asarray(group_ids, dtype=np.int64)  # [N]
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = epoch
        self.start_batch = 0
        self.batches_done = 0
        counts = np.bincount(self.group_ids)
        total_batches = int(sum((count + batch_size - 1) // batch_size for count in counts if count > 0))
        self.batches_per_epoch = (total_batches + world_size - 1) // world_size
        self.set_epoch(epoch, start_batch)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Selects the epoch of the next iteration and how many of its batches to skip."""
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} outside [0, {self.batches_per_epoch}]")
        self.epoch = epoch
        self.start_batch = start_batch
        self.batches_done = start_batch

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """All batches of ``epoch`` across ranks, before sharding (each an int64 array)."""
        count = len(self.group_ids)
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed * 1_000_003 + epoch)
            permutation = torch.randperm(count, generator=generator).numpy()
        else:
            permutation = np.arange(count)
        position_in_permutation = np.empty(count, dtype=np.int64)
        position_in_permutation[permutation] = np.arange(count)
        batches: list[np.ndarray] = []
        fill_positions: list[int] = []
        for group in np.unique(self.group_ids):
            members = permutation[self.group_ids[permutation] == group]  # permuted order
            num_batches = (len(members) + self.batch_size - 1) // self.batch_size
            completed = np.resize(members, num_batches * self.batch_size)  # cyclic completion
            for batch_index in range(num_batches):
                batch = completed[batch_index * self.batch_size : (batch_index + 1) * self.batch_size]
                last_original = members[min((batch_index + 1) * self.batch_size, len(members)) - 1]
                batches.append(batch)
                fill_positions.append(int(position_in_permutation[last_original]))
        order = np.argsort(np.asarray(fill_positions), kind="stable")
        batches = [batches[i] for i in order]
        target = self.batches_per_epoch * self.world_size
        return [batches[i % len(batches)] for i in range(target)]

    def rank_batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of ``epoch`` (``batches_per_epoch`` of them)."""
        return self.global_batches(epoch)[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        epoch, start = self.epoch, self.start_batch
        for batch in self.rank_batches(epoch)[start:]:
            self.batches_done += 1
            yield [SampleKey(int(index), epoch) for index in batch]
        # The next iteration starts the same epoch from its beginning unless set_epoch says otherwise.
        self.start_batch = 0

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch

    def state_dict(self) -> dict[str, int]:
        """{"epoch", "batches_done"}. Note: with DataLoader prefetching, ``batches_done`` counts
        batches handed to the loader, which runs ahead of training; a trainer should store the
        number of batches it actually consumed (same keys) and pass it to ``load_state_dict``."""
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.set_epoch(int(state["epoch"]), int(state["batches_done"]))


class InferenceSampler(Sampler[int]):
    """Contiguous, disjoint shard of ``range(size)`` for rank ``rank`` (no padding, no duplicates).

    Shard sizes differ by at most one; their union is every index exactly once.
    """

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"invalid rank {rank} for world_size {world_size}")
        per_rank, remainder = divmod(size, world_size)
        self.start = rank * per_rank + min(rank, remainder)
        self.end = self.start + per_rank + (1 if rank < remainder else 0)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.end))

    def __len__(self) -> int:
        return self.end - self.start
