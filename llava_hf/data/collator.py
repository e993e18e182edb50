"""Batching for LLaVA items: padded rows, or one padding-free row of all the samples (per-sample position ids).

Padding-free ("flattened") batches are what transformers' `DataCollatorWithFlattening(return_flash_attn_kwargs=True)`
makes for text: the samples are concatenated into one row, `position_ids` restart at 0 for each sample, there is no
`attention_mask`, and the sample boundaries come with the batch, computed here once from the lengths
(`cu_seq_lens_q/k`: int32 offsets `[n + 1]`, `max_length_q/k`: Python ints), so the varlen attention kernels
(`models/packed_attention.py`, flash-attention) read them without a device sync in any layer. The first label of
every sample is -100, so the shifted next-token loss never predicts across a boundary, and `target_positions` lists
the positions that have a target, for the supervised-only loss. Loss, gradients and `num_items_in_batch` are then
those of the padded batch, without computing a single padding position.
"""

import itertools

import torch

from .tokenization import IGNORE_INDEX


class LlavaDataCollator:
    """`{"input_ids", "attention_mask", "labels"[, "pixel_values"]}` from `LlavaDataset` items.

    Padded (default): right padding; the mask comes from each item's length, not from `input_ids != pad`,
    because pad may equal EOS. `padding_free=True`: one row `[1, total length]` with `position_ids`, the sample
    boundaries and `target_positions` instead of an attention mask (see the module docstring).
    `pixel_values` `[n_images, 3, H, W]` holds the images of the samples that have any (`[3, H, W]` for one,
    `[n, 3, H, W]` for several), in batch order and within a sample in the order of its image tokens, which is the
    order the model fills image tokens in; it is omitted for an all-text batch.
    """

    def __init__(self, pad_token_id: int, padding_free: bool = False):
        if pad_token_id is None:
            raise ValueError("pad_token_id is None; set tokenizer.pad_token (XTuner pads with 0)")
        self.pad_token_id = pad_token_id
        self.padding_free = padding_free

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        if not items:
            raise ValueError("cannot collate an empty batch")
        for row, item in enumerate(items):
            if len(item["labels"]) != len(item["input_ids"]):
                raise ValueError(f"batch item {row}: {len(item['input_ids'])} input_ids but {len(item['labels'])} labels")
        batch = self._flatten(items) if self.padding_free else self._pad(items)
        images = [item["pixel_values"] for item in items if item.get("pixel_values") is not None]
        if images:
            shapes = {tuple(image.shape[-3:]) for image in images}
            if len(shapes) > 1:
                raise ValueError(f"images in one batch must share a shape, got {sorted(shapes)}")
            batch["pixel_values"] = torch.cat([image.reshape(-1, *image.shape[-3:]) for image in images])
        return batch

    def _pad(self, items: list[dict]) -> dict[str, torch.Tensor]:
        lengths = [len(item["input_ids"]) for item in items]
        longest = max(lengths)
        input_ids = torch.full((len(items), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(items), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(items), longest), dtype=torch.long)
        for row, (item, length) in enumerate(zip(items, lengths)):
            input_ids[row, :length] = torch.as_tensor(item["input_ids"])
            labels[row, :length] = torch.as_tensor(item["labels"])
            attention_mask[row, :length] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    @staticmethod
    def _flatten(items: list[dict]) -> dict[str, torch.Tensor]:
        input_ids = torch.cat([torch.as_tensor(item["input_ids"], dtype=torch.long) for item in items])
        labels = [torch.as_tensor(item["labels"], dtype=torch.long).clone() for item in items]
        for sample_labels in labels:
            # Nothing predicts a sample's first token (as in a padded row); in one flat row the previous sample's
            # last token would, so its label goes.
            sample_labels[0] = IGNORE_INDEX
        labels = torch.cat(labels)
        lengths = [len(item["input_ids"]) for item in items]
        position_ids = torch.cat([torch.arange(length) for length in lengths])
        cu_seq_lens = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
        return {
            "input_ids": input_ids[None],
            "labels": labels[None],
            "position_ids": position_ids[None],
            "cu_seq_lens_q": cu_seq_lens,
            "cu_seq_lens_k": cu_seq_lens,
            "max_length_q": max(lengths),
            "max_length_k": max(lengths),
            # position t predicts label t + 1 (within its sample: each sample's first label is -100)
            "target_positions": torch.nonzero(labels[1:] != IGNORE_INDEX).flatten(),
        }
