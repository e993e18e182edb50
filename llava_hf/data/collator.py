"""Batching for LLaVA items: right padding, attention mask from true lengths, images only where present."""

import torch

from .tokenization import IGNORE_INDEX


class LlavaDataCollator:
    """`{"input_ids", "attention_mask", "labels"[, "pixel_values"]}` from `LlavaDataset` items.

    The mask comes from each item's length, not from `input_ids != pad`, because pad may equal EOS.
    `pixel_values` stacks the images of the samples that have one, in batch order (the order the model
    fills image tokens); it is omitted for an all-text batch.
    """

    def __init__(self, pad_token_id: int):
        if pad_token_id is None:
            raise ValueError("pad_token_id is None; set tokenizer.pad_token (XTuner pads with 0)")
        self.pad_token_id = pad_token_id

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        if not items:
            raise ValueError("cannot collate an empty batch")
        lengths = [len(item["input_ids"]) for item in items]
        longest = max(lengths)
        input_ids = torch.full((len(items), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(items), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(items), longest), dtype=torch.long)
        for row, (item, length) in enumerate(zip(items, lengths)):
            if len(item["labels"]) != length:
                raise ValueError(f"batch item {row}: {length} input_ids but {len(item['labels'])} labels")
            input_ids[row, :length] = torch.as_tensor(item["input_ids"])
            labels[row, :length] = torch.as_tensor(item["labels"])
            attention_mask[row, :length] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        images = [item["pixel_values"] for item in items if item.get("pixel_values") is not None]
        if images:
            shapes = {tuple(image.shape) for image in images}
            if len(shapes) > 1:
                raise ValueError(f"images in one batch must share a shape, got {sorted(shapes)}")
            batch["pixel_values"] = torch.stack(images)
        return batch
