"""Several images per sample in the model: each image's features land at its own `<image>` block, in order, as
stock transformers' `LlavaForConditionalGeneration` places them, and padded and padding-free batches of samples with
0, 1 and 3 images give the same loss and gradients."""

import pytest
import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration

from llava_hf.data.collator import LlavaDataCollator
from llava_hf.export.stock_llava import stock_state_dict
from llava_hf.models.internlm2 import internlm2_config_to_llama_config
from tests.models.test_packed_forward import IMAGE_TOKEN_ID, VISION, loss_and_grads, make_model

N = 4  # image tokens per image: 28 px / 14 px patches, CLS dropped


def image(seed: int) -> torch.Tensor:
    """A distinguishable image: its own random pixels."""
    return torch.randn(3, 28, 28, generator=torch.Generator().manual_seed(seed))


def sample(pieces, images, reply: int):
    """`pieces`: text lengths around the images (one more than images); the last `reply` tokens supervised."""
    generator = torch.Generator().manual_seed(len(pieces) * 100 + reply)
    ids = []
    for index, n_text in enumerate(pieces):
        ids += torch.randint(1, 90, (n_text,), generator=generator).tolist()
        if index < len(images):
            ids += [IMAGE_TOKEN_ID] * N
    labels = [-100] * (len(ids) - reply) + ids[len(ids) - reply:]
    item = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
    if images:
        item["pixel_values"] = torch.stack(images) if len(images) > 1 else images[0]
    return item


def mixed_items(order=(0, 1, 2)):
    """Three images interleaved with text, a text-only sample, one image: the images in the order given."""
    three = [image(seed) for seed in order]
    return [sample([3, 2, 5, 4], three, 4), sample([12], [], 5), sample([2, 6], [image(3)], 3)]


def image_blocks(input_ids):
    """Start positions (row, column) of each `<image>` block, in the order the features fill them."""
    is_image = input_ids == IMAGE_TOKEN_ID
    starts = is_image & ~torch.nn.functional.pad(is_image, (1, 0))[:, :-1]
    return starts.nonzero().tolist()


def test_each_image_lands_at_its_own_placeholder_like_stock_llava():
    ours = make_model("eager").eval()
    items = mixed_items()
    batch = LlavaDataCollator(pad_token_id=0)(items)
    assert batch["pixel_values"].shape == (4, 3, 28, 28)
    seen = {}
    hook = ours.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(embeds=kwargs["inputs_embeds"]), with_kwargs=True)
    with torch.no_grad():
        out = ours(**batch)
        features = ours.get_image_features(batch["pixel_values"])
    hook.remove()
    blocks = image_blocks(batch["input_ids"])
    assert [row for row, _ in blocks] == [0, 0, 0, 2]
    for k, (row, start) in enumerate(blocks):  # image k's features, and no other image's, fill block k
        torch.testing.assert_close(seen["embeds"][row, start:start + N], features[k], atol=0, rtol=0)
        for other in set(range(4)) - {k}:
            assert not torch.allclose(seen["embeds"][row, start:start + N], features[other])

    text = ours.config.text_config
    stock_config = LlavaConfig(text_config=internlm2_config_to_llama_config(text), vision_config=VISION,
                               image_token_index=IMAGE_TOKEN_ID, image_seq_length=N)
    stock_config._attn_implementation = "eager"
    stock = LlavaForConditionalGeneration(stock_config).eval()
    stock.load_state_dict(stock_state_dict(ours), strict=True)
    with torch.no_grad():
        stock_out = stock(**batch)
    valid = batch["attention_mask"].bool()
    torch.testing.assert_close(out.logits[valid], stock_out.logits[valid], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.loss, stock_out.loss, atol=1e-5, rtol=0)

    # the order matters: the second and third images swapped change what follows the second placeholder only
    swapped = LlavaDataCollator(pad_token_id=0)(mixed_items(order=(0, 2, 1)))
    with torch.no_grad():
        swapped_logits = ours(**swapped).logits
    second = blocks[1][1]
    torch.testing.assert_close(swapped_logits[0, :second], out.logits[0, :second], atol=1e-6, rtol=0)
    assert not torch.allclose(swapped_logits[0, second:], out.logits[0, second:])
    torch.testing.assert_close(swapped_logits[1:], out.logits[1:], atol=1e-6, rtol=0)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "packed_sdpa"])
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_padded_and_padding_free_batches_of_0_1_and_3_images_give_the_same_loss(attn_implementation, chunk_size):
    items = mixed_items()
    padded_model = make_model("sdpa").train()
    padded_model.enable_supervised_loss(chunk_size)
    padded_loss, padded_grads = loss_and_grads(padded_model, LlavaDataCollator(0)(items))
    model = make_model(attn_implementation).train()
    model.enable_supervised_loss(chunk_size)
    flat = LlavaDataCollator(0, padding_free=True)(items)
    assert flat["pixel_values"].shape == (4, 3, 28, 28) and flat["cu_seq_lens_q"].tolist()[-1] == flat["input_ids"].shape[1]
    loss, grads = loss_and_grads(model, flat)
    torch.testing.assert_close(loss, padded_loss, atol=1e-5, rtol=0)
    assert grads.keys() == padded_grads.keys() and any(name.startswith("multi_modal_projector") for name in grads)
    for name, grad in padded_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
