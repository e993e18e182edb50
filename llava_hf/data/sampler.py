"""Length-grouped sampling with image and text-only samples kept in separate mega-batches.

XTuner's `LengthGroupedSampler` (itself LLaVA's modality grouping): shuffle each modality, cut it into
mega-batches of `mega_batch_mult` global batches, sort each mega-batch by length (longest first), shuffle
the mega-batches. Padding is minimal and, apart from the last mega-batch, every global batch (all ranks at
the same step) holds one modality, so no rank runs the vision tower while another does not.
Two deliberate differences: the leftovers of both modalities form the last mega-batch with all image
samples before all text-only ones (XTuner sorts them together, mixing modalities in many batches), and
the mega-batch holding the longest sample is moved to the front as a whole (XTuner swaps one sample,
which can mix modalities), so an out-of-memory shows at step 1.

Resuming: the order depends only on (seed, epoch, lengths, sizes), so HF Trainer's skip-first-batches
resumes exactly where it stopped.

`TokenBudgetBatchSampler` cuts the same order into micro-batches by a token budget (`--max_tokens_per_batch`).
"""

import math
from collections.abc import Iterator, Sequence

import torch


class ModalityLengthGroupedSampler(torch.utils.data.Sampler[int]):
    """Yields dataset indices; `set_epoch(epoch)` reshuffles deterministically per `seed + epoch`.

    `batch_size` is what one rank consumes per optimizer step (per-device batch x gradient accumulation,
    as XTuner passes it). With `shard=True` `__iter__` yields rank `rank`'s indices (`indices[rank::world]`,
    like XTuner). With `shard=False` it yields the whole global order, for a data loader that accelerate
    prepares: accelerate's `BatchSamplerShard` then gives each rank every `world_size`-th batch, which
    covers the same global batches. The order is padded by repeating its start to a multiple of
    `batch_size * world_size` (XTuner's round_up), so ranks get equal counts and nothing is lost.
    """

    def __init__(self, modality_lengths: Sequence[int], batch_size: int, world_size: int = 1, rank: int = 0,
                 seed: int = 0, mega_batch_mult: int | None = None, shard: bool = True):
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"invalid batch_size={batch_size}, world_size={world_size}, rank={rank}")
        if not modality_lengths:
            raise ValueError("modality_lengths is empty")
        if any(length == 0 for length in modality_lengths):
            raise ValueError("modality_lengths must be non-zero (positive: with image, negative: text-only)")
        self.modality_lengths = list(modality_lengths)
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.shard = shard
        self.epoch = 0
        global_batch = batch_size * world_size
        if mega_batch_mult is None:
            mega_batch_mult = max(min(len(self.modality_lengths) // (global_batch * 4), 50), 1)
        self.mega_batch_size = mega_batch_mult * global_batch
        self.total_size = math.ceil(len(self.modality_lengths) / global_batch) * global_batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.total_size // self.world_size if self.shard else self.total_size

    def __iter__(self) -> Iterator[int]:
        indices = self.global_order()
        return iter(indices[self.rank::self.world_size] if self.shard else indices)

    def global_order(self) -> list[int]:
        """Every rank's indices for this epoch, in step order, padded to whole global batches."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        lengths = self.modality_lengths
        image_indices = [i for i, n in enumerate(lengths) if n > 0]
        text_indices = [i for i, n in enumerate(lengths) if n < 0]
        mega_batches, leftovers = [], []
        for group in (image_indices, text_indices):
            if not group:
                continue
            groups = self._mega_batches(group, generator)
            if len(groups[-1]) < self.mega_batch_size:
                leftovers += groups.pop()
            mega_batches += groups
        mega_batches = [mega_batches[i] for i in torch.randperm(len(mega_batches), generator=generator).tolist()]
        if leftovers:
            mega_batches.append(leftovers)
        longest = max(range(len(mega_batches)), key=lambda b: abs(lengths[mega_batches[b][0]]))
        mega_batches.insert(0, mega_batches.pop(longest))
        order = [i for mega_batch in mega_batches for i in mega_batch]
        repeats = math.ceil(self.total_size / len(order))
        return (order * repeats)[: self.total_size]

    def _mega_batches(self, group: list[int], generator: torch.Generator) -> list[list[int]]:
        shuffled = [group[i] for i in torch.randperm(len(group), generator=generator).tolist()]
        return [
            sorted(shuffled[start:start + self.mega_batch_size], key=lambda i: abs(self.modality_lengths[i]), reverse=True)
            for start in range(0, len(shuffled), self.mega_batch_size)
        ]


class TokenBudgetBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Micro-batches of as many samples as fit in `max_tokens` (the sum of their lengths), in the order of
    `ModalityLengthGroupedSampler`, cut wherever the modality changes so that no micro-batch mixes image and
    text-only samples.

    Used as a DataLoader's `batch_sampler`: a step then holds about the same number of tokens whatever the
    sample lengths (short stage-1 captions give many samples per step, long conversations few), instead of a
    fixed number of samples. A sample longer than the budget is a micro-batch of its own. The batches depend
    only on (seed, epoch, lengths), so HF Trainer's resume skips exactly the batches already trained; their
    count varies a little from epoch to epoch. `sampler` (the ordering sampler) is where accelerate's data
    loader calls `set_epoch`; there is no `batch_size`, which tells accelerate's `BatchSamplerShard` that
    batches vary in size (rank r takes every world_size-th batch).
    """

    def __init__(self, modality_lengths: Sequence[int], max_tokens: int, batch_size: int, world_size: int = 1,
                 seed: int = 0, mega_batch_mult: int | None = None):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        self.sampler = ModalityLengthGroupedSampler(modality_lengths, batch_size, world_size=world_size, seed=seed,
                                                    mega_batch_mult=mega_batch_mult, shard=False)
        self.max_tokens = max_tokens
        self._cached: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches())

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def batches(self) -> list[list[int]]:
        """This epoch's micro-batches (computed once per epoch)."""
        epoch = self.sampler.epoch
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self._cut(self.sampler.global_order()[: len(self.sampler.modality_lengths)]))
        return self._cached[1]

    def _cut(self, order: list[int]) -> list[list[int]]:
        lengths = self.sampler.modality_lengths
        batches, current, tokens = [], [], 0
        for i in order:
            n = abs(lengths[i])
            if current and (tokens + n > self.max_tokens or (lengths[i] > 0) != (lengths[current[0]] > 0)):
                batches.append(current)
                current, tokens = [], 0
            current.append(i)
            tokens += n
        if current:
            batches.append(current)
        return batches
