import pytest
import torch

from llava_hf.data.collator import LlavaDataCollator


def item(ids, labels, image=None):
    out = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
    if image is not None:
        out["pixel_values"] = torch.full((3, 4, 4), float(image))
    return out


def test_right_padding_mask_from_lengths_and_images_in_order():
    # pad id 2 equals the last real token of the first row: the mask must not come from `ids != pad`.
    batch = LlavaDataCollator(pad_token_id=2)([
        item([1, 5, 2], [-100, 5, 2], image=1), item([1, 6, 7, 8, 2], [-100, -100, 7, 8, 2]), item([1, 9], [-100, 9], image=3),
    ])
    assert batch["input_ids"].tolist() == [[1, 5, 2, 2, 2], [1, 6, 7, 8, 2], [1, 9, 2, 2, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 5, 2, -100, -100], [-100, -100, 7, 8, 2], [-100, 9, -100, -100, -100]]
    assert batch["pixel_values"].shape == (2, 3, 4, 4)
    assert batch["pixel_values"][:, 0, 0, 0].tolist() == [1.0, 3.0]


def test_text_only_batch_has_no_pixel_values():
    batch = LlavaDataCollator(pad_token_id=0)([item([1, 2], [-100, 2])])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}


def test_errors():
    with pytest.raises(ValueError, match="pad_token_id is None"):
        LlavaDataCollator(None)
    with pytest.raises(ValueError, match="batch item 0: 2 input_ids but 1 labels"):
        LlavaDataCollator(0)([item([1, 2], [2])])
