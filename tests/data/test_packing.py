"""Padding-free collation and token-budget batching."""

import random
from collections import Counter

import pytest
import torch

from llava_hf.data.collator import LlavaDataCollator
from llava_hf.data.sampler import TokenBudgetBatchSampler
from tests.data.test_collator import item

BOUNDARIES = {"cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k"}


def test_flattened_batch_is_one_row_with_restarting_positions():
    batch = LlavaDataCollator(pad_token_id=0, padding_free=True)([
        item([1, 5, 2], [-100, 5, 2], image=1), item([7, 8], [7, 8]), item([1, 9, 9, 3], [-100, -100, 9, 3], image=3),
    ])
    assert set(batch) == {"input_ids", "labels", "position_ids", "pixel_values", "target_positions", *BOUNDARIES}
    assert batch["input_ids"].tolist() == [[1, 5, 2, 7, 8, 1, 9, 9, 3]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    # the second sample's first label would be predicted by the first sample's last token: dropped
    assert batch["labels"].tolist() == [[-100, 5, 2, -100, 8, -100, -100, 9, 3]]
    assert batch["pixel_values"][:, 0, 0, 0].tolist() == [1.0, 3.0]  # in the order their image tokens come
    # the sample boundaries, computed once here for the varlen attention kernels (int32 offsets, Python int maximum)
    for side in "qk":
        assert batch[f"cu_seq_lens_{side}"].dtype == torch.int32
        assert batch[f"cu_seq_lens_{side}"].tolist() == [0, 3, 5, 9] and batch[f"max_length_{side}"] == 4
    # positions whose next token is a target (what the supervised-only loss computes the head for)
    assert batch["target_positions"].tolist() == [0, 1, 3, 6, 7]


def test_flattened_text_only_batch_and_errors():
    batch = LlavaDataCollator(pad_token_id=0, padding_free=True)([item([1, 2], [-100, 2])])
    assert set(batch) == {"input_ids", "labels", "position_ids", "target_positions", *BOUNDARIES}
    assert batch["cu_seq_lens_q"].tolist() == [0, 2] and batch["target_positions"].tolist() == [0]
    with pytest.raises(ValueError, match="batch item 0: 2 input_ids but 1 labels"):
        LlavaDataCollator(0, padding_free=True)([item([1, 2], [2])])


def mixed_lengths(n=300, seed=0):
    rng = random.Random(seed)
    return [rng.randint(20, 600) * (1 if rng.random() < 0.9 else -1) for _ in range(n)]


def test_token_budget_batches_fit_keep_one_modality_and_cover_every_sample_once():
    lengths = mixed_lengths()
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=2000, batch_size=4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert Counter(i for batch in batches for i in batch) == Counter(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or sum(abs(lengths[i]) for i in batch) <= 2000
        assert len({lengths[i] > 0 for i in batch}) == 1
    # full batches: a batch is only cut when the next sample does not fit or the modality changes
    for batch, following in zip(batches, batches[1:]):
        same_modality = (lengths[batch[0]] > 0) == (lengths[following[0]] > 0)
        if same_modality:
            assert sum(abs(lengths[i]) for i in batch) + abs(lengths[following[0]]) > 2000
    assert max(abs(n) for n in lengths) in [abs(lengths[i]) for i in batches[0]]  # the longest sample first


def test_token_budget_order_is_deterministic_per_epoch_and_reaches_the_ordering_sampler():
    lengths = mixed_lengths()
    a = TokenBudgetBatchSampler(lengths, max_tokens=1500, batch_size=4, seed=3)
    b = TokenBudgetBatchSampler(lengths, max_tokens=1500, batch_size=4, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.sampler.set_epoch(1)  # where accelerate's data loader calls it
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert not hasattr(a, "batch_size")  # tells accelerate's BatchSamplerShard that batch sizes vary


def test_a_sample_over_the_budget_is_a_batch_of_its_own_and_bad_budget():
    batches = list(TokenBudgetBatchSampler([50, 900, 40, 30], max_tokens=100, batch_size=2))
    assert [900] in [[[50, 900, 40, 30][i] for i in batch] for batch in batches]
    with pytest.raises(ValueError, match="max_tokens must be positive"):
        TokenBudgetBatchSampler([5], max_tokens=0, batch_size=1)
