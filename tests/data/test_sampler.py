import random
from collections import Counter

import pytest

from llava_hf.data.sampler import ModalityLengthGroupedSampler


def mixed_lengths(n=203, seed=0):
    rng = random.Random(seed)
    return [rng.randint(5, 500) * (1 if rng.random() < 0.8 else -1) for _ in range(n)]


def test_same_seed_same_order_and_epochs_differ():
    lengths = mixed_lengths()
    a = ModalityLengthGroupedSampler(lengths, batch_size=4, seed=3)
    b = ModalityLengthGroupedSampler(lengths, batch_size=4, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(ModalityLengthGroupedSampler(lengths, batch_size=4, seed=4)) != first
    b.set_epoch(1)
    assert list(a) == list(b)


def test_resuming_at_step_k_gives_the_same_remaining_order():
    lengths = mixed_lengths()
    sampler = ModalityLengthGroupedSampler(lengths, batch_size=4, seed=0)
    sampler.set_epoch(2)
    full = list(sampler)
    restarted = ModalityLengthGroupedSampler(lengths, batch_size=4, seed=0)
    restarted.set_epoch(2)
    k = 7  # HF Trainer skips the first k batches of the same order
    assert list(restarted)[k * 4:] == full[k * 4:]


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_cover_every_sample_once_modulo_round_up(world_size):
    lengths = mixed_lengths()
    per_rank = [list(ModalityLengthGroupedSampler(lengths, batch_size=4, world_size=world_size, rank=r, seed=1))
                for r in range(world_size)]
    assert len({len(indices) for indices in per_rank}) == 1
    counts = Counter(i for indices in per_rank for i in indices)
    assert set(counts) == set(range(len(lengths)))
    total = sum(counts.values())
    assert total % (4 * world_size) == 0 and total - len(lengths) < 4 * world_size
    assert sum(c - 1 for c in counts.values()) == total - len(lengths)


def test_global_batches_are_single_modality_except_at_the_seam():
    lengths = mixed_lengths(n=1000)
    world, batch = 2, 8
    ranks = [list(ModalityLengthGroupedSampler(lengths, batch_size=batch, world_size=world, rank=r, seed=0))
             for r in range(world)]
    steps = len(ranks[0]) // batch
    mixed = 0
    for step in range(steps):
        signs = {lengths[i] > 0 for r in ranks for i in r[step * batch:(step + 1) * batch]}
        mixed += len(signs) > 1
    assert mixed <= 2  # the image/text seam of the leftover mega-batch, plus the round-up tail


def test_unsharded_order_split_like_accelerate_gives_the_same_global_batches():
    lengths = mixed_lengths()
    world, batch = 2, 4
    global_order = list(ModalityLengthGroupedSampler(lengths, batch_size=batch, world_size=world, shard=False))
    sharded = [list(ModalityLengthGroupedSampler(lengths, batch_size=batch, world_size=world, rank=r)) for r in range(world)]
    for step in range(len(sharded[0]) // batch):
        accelerate_step = global_order[step * batch * world:(step + 1) * batch * world]  # rank r takes batch r
        ours = [i for r in range(world) for i in sharded[r][step * batch:(step + 1) * batch]]
        assert sorted(accelerate_step) == sorted(ours)


def test_longest_batch_first_and_lengths_sorted_within_mega_batches():
    lengths = mixed_lengths(n=400)
    order = list(ModalityLengthGroupedSampler(lengths, batch_size=4, mega_batch_mult=5, seed=2))
    assert abs(lengths[order[0]]) == max(abs(n) for n in lengths)
    mega = [abs(lengths[i]) for i in order[:20]]
    assert mega == sorted(mega, reverse=True)


def test_single_modality_and_bad_input():
    assert sorted(ModalityLengthGroupedSampler([-3, -5, -2], batch_size=1)) == [0, 1, 2]
    with pytest.raises(ValueError, match="non-zero"):
        ModalityLengthGroupedSampler([3, 0], batch_size=1)
    with pytest.raises(ValueError, match="rank=2"):
        ModalityLengthGroupedSampler([3], batch_size=1, world_size=2, rank=2)
