"""Grouped distributed batch sampler (shards, grouping, resume) and the inference sampler."""

from __future__ import annotations

import pytest

from ladet.data.samplers import GroupedBatchSampler, InferenceSampler, SampleKey


def _indices(batches: list[list[SampleKey]]) -> list[list[int]]:
    return [[key.dataset_index for key in batch] for batch in batches]


def test_batches_share_one_group_and_carry_the_epoch() -> None:
    groups = [0, 1] * 10 + [1] * 7
    sampler = GroupedBatchSampler(groups, batch_size=4, seed=1, epoch=2)
    batches = list(sampler)
    assert len(batches) == len(sampler) == sampler.batches_per_epoch == 3 + 5  # ceil(10/4) + ceil(17/4)
    for batch in batches:
        assert len(batch) == 4
        assert len({groups[key.dataset_index] for key in batch}) == 1
        assert all(key.epoch == 2 for key in batch)
    assert {key.dataset_index for batch in batches for key in batch} == set(range(len(groups)))


def test_shards_are_disjoint_equal_and_cover_everything() -> None:
    groups = [1] * 16 + [0] * 8  # 4 + 2 batches of 4, divisible by 2 ranks: no completion needed
    shards = [
        _indices(list(GroupedBatchSampler(groups, 4, rank=rank, world_size=2, seed=3))) for rank in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 3
    flat = [[index for batch in shard for index in batch] for shard in shards]
    assert not set(flat[0]) & set(flat[1])
    assert sorted(flat[0] + flat[1]) == list(range(24))


def test_uneven_sizes_still_give_equal_lengths() -> None:
    groups = [1] * 13 + [0] * 6  # 4 + 2 = 6 batches: 3 ranks -> 2 each; 4 ranks -> 2 each (2 repeated)
    for world_size, expected in ((3, 2), (4, 2)):
        samplers = [
            GroupedBatchSampler(groups, 4, rank=rank, world_size=world_size) for rank in range(world_size)
        ]
        lengths = {len(list(sampler)) for sampler in samplers}
        assert lengths == {expected} and all(sampler.batches_per_epoch == expected for sampler in samplers)
        covered = {key.dataset_index for sampler in samplers for batch in sampler for key in batch}
        assert covered == set(range(19))


def test_shuffle_depends_on_seed_and_epoch_only() -> None:
    groups = [0, 1, 1] * 20

    def order(seed: int, epoch: int, rank: int = 0) -> list[list[int]]:
        return _indices(list(GroupedBatchSampler(groups, 2, rank=rank, world_size=2, seed=seed, epoch=epoch)))

    assert order(0, 1) == order(0, 1)
    assert order(0, 1) != order(0, 2)
    assert order(0, 1) != order(1, 1)
    sampler = GroupedBatchSampler(groups, 2, rank=0, world_size=2, seed=0)
    sampler.set_epoch(2)
    assert _indices(list(sampler)) == order(0, 2)


def test_resume_mid_epoch_gives_the_remaining_batches() -> None:
    groups = [0, 1, 1, 0, 1] * 9
    uninterrupted = GroupedBatchSampler(groups, 3, rank=1, world_size=2, seed=7, epoch=4)
    full = list(uninterrupted)
    resumed = GroupedBatchSampler(groups, 3, rank=1, world_size=2, seed=7, epoch=4, start_batch=3)
    assert len(resumed) == len(full) - 3
    assert list(resumed) == full[3:]
    # state_dict / load_state_dict
    partial = GroupedBatchSampler(groups, 3, rank=1, world_size=2, seed=7, epoch=4)
    iterator = iter(partial)
    consumed = [next(iterator) for _ in range(2)]
    state = partial.state_dict()
    assert state == {"epoch": 4, "batches_done": 2} and consumed == full[:2]
    restored = GroupedBatchSampler(groups, 3, rank=1, world_size=2, seed=7)
    restored.load_state_dict(state)
    assert list(restored) == full[2:]
    assert len(restored) == len(full)  # the next iteration is a full epoch again
    with pytest.raises(ValueError):
        restored.set_epoch(0, start_batch=len(full) + 1)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        GroupedBatchSampler([0, 1], 0)
    with pytest.raises(ValueError):
        GroupedBatchSampler([0, 1], 1, rank=2, world_size=2)
    with pytest.raises(ValueError):
        GroupedBatchSampler([], 1)


@pytest.mark.parametrize(("size", "world_size"), [(10, 3), (2, 4), (8, 1)])
def test_inference_sampler_shards(size: int, world_size: int) -> None:
    shards = [list(InferenceSampler(size, rank, world_size)) for rank in range(world_size)]
    flat = [index for shard in shards for index in shard]
    assert sorted(flat) == list(range(size)) and len(flat) == size
    lengths = [len(shard) for shard in shards]
    assert max(lengths) - min(lengths) <= 1
    assert [len(InferenceSampler(size, rank, world_size)) for rank in range(world_size)] == lengths
