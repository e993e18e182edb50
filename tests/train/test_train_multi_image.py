"""Text-only, single-image and multi-image samples in one training run: validated, batched together (images of one
micro-batch in token order), and the padding-free defaults train exactly like padded batches with the stock loss."""

from llava_hf.train import parse_args, train
from tests.multi_image_data import write_mixed_data
from tests.train.conftest import common_args, losses
from tests.train.test_train_packing import base_args


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
