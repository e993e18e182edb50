"""Text-only, single-image and multi-image samples in one training run: validated, batched together (images of one
micro-batch in token order), and the padding-free defaults train exactly like padded batches with the stock loss."""

import json

from PIL import Image

from llava_hf.train import parse_args, train
from tests.train.conftest import common_args, losses
from tests.train.test_train_packing import base_args

COLORS = [(220, 40, 40), (40, 170, 60), (40, 70, 220)]


def write_mixed_data(folder):
    """4 one-image, 4 multi-image (2 or 3 images, placeholders in both turns) and 4 text-only samples."""
    images = folder / "images"
    images.mkdir(parents=True)
    for i, color in enumerate(COLORS):
        Image.new("RGB", (30 + 5 * i, 30), color).save(images / f"{i}.png")

    def turn(question, answer):
        return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]

    samples = []
    for i in range(4):
        samples.append({"id": f"one{i}", "image": f"{i % 3}.png", "conversations": turn("<image>\nWhat color?", "red")})
        several = [f"{(i + k) % 3}.png" for k in range(2 + i % 2)]
        questions = turn("Compare " + " and ".join(["<image>"] * (len(several) - 1)) + ".", "They differ.")
        samples.append({"id": f"multi{i}", "image": several,
                        "conversations": questions + turn("And <image>?", "green")})
        samples.append({"id": f"text{i}", "conversations": turn("Say the word " * (i + 1), "the word")})
    path = folder / "data.json"
    path.write_text(json.dumps(samples))
    return str(path), str(images)


def test_mixed_image_counts_train_padding_free_like_padded(micro_base, tmp_path):
    data = write_mixed_data(tmp_path / "data")
    fast = train(*parse_args(common_args(tmp_path / "fast", data, **base_args(micro_base))))
    stock = train(*parse_args(common_args(tmp_path / "stock", data, **base_args(
        micro_base, padding_free="false", loss_chunk_size=0, attn_implementation="sdpa"))))
    dataset = fast.train_dataset
    assert sorted(dataset.image_counts) == [0] * 4 + [1] * 4 + [2, 2, 3, 3]
    assert (dataset.stats["with_image"], dataset.stats["multi_image"], dataset.stats["text_only"]) == (8, 4, 4)
    batches = [next(iter(trainer.get_train_dataloader())) for trainer in (fast, stock)]
    for batch in batches:  # the first micro-batch: image samples, several with more than one image
        n_image_tokens = int((batch["input_ids"] == dataset.processor.image_token_id).sum())
        assert n_image_tokens == batch["pixel_values"].shape[0] * dataset.image_seq_length > 4 * dataset.image_seq_length
    fast_losses, stock_losses = losses(fast), losses(stock)
    assert sorted(fast_losses) == sorted(stock_losses) == [1, 2, 3, 4]
    for step, loss in stock_losses.items():
        assert abs(fast_losses[step] - loss) < 1e-5, (step, fast_losses[step], loss)
