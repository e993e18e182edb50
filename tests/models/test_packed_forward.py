"""Padding-free (flattened) batches and the supervised-only loss: same loss and gradients as padded batches,
no attention across samples, and the same numbers as stock transformers' LLaVA."""

import pytest
import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from llava_hf.data.collator import LlavaDataCollator
from llava_hf.export.stock_llava import stock_state_dict
from llava_hf.models.internlm2 import InternLM2Config, internlm2_config_to_llama_config
from llava_hf.models.llava_internlm2 import LlavaInternLM2Config, LlavaInternLM2ForConditionalGeneration
from llava_hf.models import packed_attention
from llava_hf.models.packed_attention import boundaries_from_position_ids, packed_sdpa_attention_forward

IMAGE_TOKEN_ID = 95
VISION = CLIPVisionConfig(
    image_size=28, patch_size=14, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
)
TEXT = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, tie_word_embeddings=False)
ATTENTION = ["sdpa", "eager", "packed_sdpa"]


def make_model(attn_implementation="sdpa", seed=0, text_model="internlm2"):
    torch.manual_seed(seed)
    text = InternLM2Config(**TEXT) if text_model == "internlm2" else LlamaConfig(**TEXT)
    config = LlavaInternLM2Config(text_config=text, vision_config=VISION, image_token_id=IMAGE_TOKEN_ID)
    model = LlavaInternLM2ForConditionalGeneration(config)
    model.language_model.set_attn_implementation(attn_implementation)
    return model


def make_items(seed=0, image_tokens=4):
    """Two image samples and a text-only one in between (the order a mixed batch would have), supervised replies."""
    generator = torch.Generator().manual_seed(seed)

    def sample(n_before, n_after, image, reply):
        ids = torch.randint(1, 90, (n_before + n_after,), generator=generator).tolist()
        ids = ids[:n_before] + [IMAGE_TOKEN_ID] * (image_tokens if image else 0) + ids[n_before:]
        labels = [-100] * (len(ids) - reply) + ids[len(ids) - reply:]
        item = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
        if image:
            item["pixel_values"] = torch.randn(3, 28, 28, generator=generator)
        return item

    return [sample(3, 9, True, 5), sample(14, 0, False, 6), sample(2, 4, True, 3)]


def trainable_grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def loss_and_grads(model, batch, **kwargs):
    model.zero_grad(set_to_none=True)
    loss = model(**batch, **kwargs).loss
    loss.backward()
    return loss.detach(), trainable_grads(model)


@pytest.mark.parametrize("attn_implementation", ATTENTION)
def test_flattened_batch_gives_the_padded_loss_and_gradients(attn_implementation):
    model = make_model(attn_implementation).train()
    items = make_items()
    padded = LlavaDataCollator(pad_token_id=0)(items)
    flat = LlavaDataCollator(pad_token_id=0, padding_free=True)(items)
    assert flat["input_ids"].shape == (1, sum(len(i["input_ids"]) for i in items)) and "attention_mask" not in flat
    assert flat["position_ids"][0].tolist() == [p for i in items for p in range(len(i["input_ids"]))]
    for num_items in (None, torch.tensor(11)):
        kwargs = {} if num_items is None else {"num_items_in_batch": num_items}
        padded_loss, padded_grads = loss_and_grads(model, padded, **kwargs)
        flat_loss, flat_grads = loss_and_grads(model, flat, **kwargs)
        torch.testing.assert_close(flat_loss, padded_loss, atol=1e-5, rtol=0)
        assert padded_grads.keys() == flat_grads.keys() and len(flat_grads) > 20
        for name, grad in padded_grads.items():
            torch.testing.assert_close(flat_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_trainer_counts_the_same_targets_in_both_layouts():
    """HF Trainer's `num_items_in_batch` counts `labels[..., 1:] != -100`: the first label of each flattened sample
    must not count, as the first column of a padded batch does not."""
    items = make_items()
    items[1]["labels"][0] = items[1]["input_ids"][0]  # a sample whose first token carries a label
    padded = LlavaDataCollator(pad_token_id=0)(items)
    flat = LlavaDataCollator(pad_token_id=0, padding_free=True)(items)
    assert int((flat["labels"][..., 1:] != -100).sum()) == int((padded["labels"][..., 1:] != -100).sum())


@pytest.mark.parametrize("attn_implementation", ATTENTION)
def test_a_flattened_sample_never_sees_its_neighbours(attn_implementation):
    model = make_model(attn_implementation).eval()
    model.config.use_cache = True  # a cache must not turn the flattened row into one causal sequence
    items = make_items(seed=1)
    collate = LlavaDataCollator(pad_token_id=0, padding_free=True)
    changed = make_items(seed=1)
    other = make_items(seed=2)
    changed[0] = other[0]  # another first sample (other text, other image), same length
    with torch.no_grad():
        logits = model(**collate(items)).logits[0]
        logits_changed = model(**collate(changed)).logits[0]
    n0 = len(items[0]["input_ids"])
    assert not torch.allclose(logits[:n0], logits_changed[:n0])
    torch.testing.assert_close(logits_changed[n0:], logits[n0:], atol=1e-5, rtol=0)
    # and each sample alone gives the logits it has inside the row
    start = 0
    for item in items:
        alone = collate([item])
        with torch.no_grad():
            single = model(**alone).logits[0]
        torch.testing.assert_close(logits[start:start + len(single)], single, atol=1e-5, rtol=0)
        start += len(single)


def test_packed_sdpa_splits_at_sample_starts_like_the_block_diagonal_mask():
    position_ids = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    bounds = boundaries_from_position_ids(position_ids)
    assert bounds["cu_seq_lens_q"].tolist() == [0, 3, 5, 9] and bounds["max_length_q"] == 4
    torch.manual_seed(0)
    query, key, value = torch.randn(1, 4, 9, 8), torch.randn(1, 2, 9, 8), torch.randn(1, 2, 9, 8)
    module = torch.nn.Module()
    module.is_causal, module.num_key_value_groups, module.training = True, 2, False
    out, _ = packed_sdpa_attention_forward(module, query, key, value, None, position_ids=position_ids, scaling=0.5)
    expected = []
    for start, end in [(0, 3), (3, 5), (5, 9)]:
        q, k, v = query[:, :, start:end], key[:, :, start:end], value[:, :, start:end]
        k, v = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
        expected.append(torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.5))
    torch.testing.assert_close(out, torch.cat(expected, dim=2).transpose(1, 2), atol=1e-6, rtol=0)


def varlen_stand_in(signature: str):
    """torch's `varlen_attn` as each release spells it (2.10: `is_causal`; 2.11: `window_size` and `scale`; 2.12+:
    also `enable_gqa`), computed with SDPA per sample on a CPU (the real kernel is CUDA only), refusing what the real
    one refuses: fewer key/value heads than query heads without `enable_gqa`, a keyword its release lacks."""
    keywords = {"2.10": {"is_causal"}, "2.11": {"window_size", "scale"},
                "2.12": {"window_size", "scale", "enable_gqa"}}[signature]
    calls = []

    def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, **options):
        assert set(options) <= keywords, options
        assert cu_seq_q.dtype == torch.int32 and isinstance(max_q, int) and max_q == int(cu_seq_q.diff().max())
        if key.shape[1] != query.shape[1]:
            assert options.get("enable_gqa"), "GQA without enable_gqa"
            key, value = (t.repeat_interleave(query.shape[1] // t.shape[1], dim=1) for t in (key, value))
        causal = options.get("is_causal", options.get("window_size") == (-1, 0))
        offsets = cu_seq_q.tolist()
        calls.append(len(offsets) - 1)
        return torch.cat([
            torch.nn.functional.scaled_dot_product_attention(
                *(t[start:end].transpose(0, 1) for t in (query, key, value)), is_causal=causal,
                scale=options.get("scale")).transpose(0, 1)
            for start, end in zip(offsets[:-1], offsets[1:])
        ])

    return (varlen_attn, frozenset(keywords)), calls


@pytest.mark.parametrize("signature, text_model", [("2.10", "internlm2"), ("2.11", "internlm2"), ("2.12", "internlm2"),
                                                    ("2.11", "llama")])
def test_packed_varlen_gives_the_padded_loss_and_gradients_with_each_torch_signature(signature, text_model,
                                                                                     monkeypatch):
    """The GPU path's wiring (layout, causal flag, GQA, boundaries) against padded SDPA, one call per layer; also
    through transformers' own Llama (its mask comes from transformers' masking utilities)."""
    api, calls = varlen_stand_in(signature)
    monkeypatch.setattr(packed_attention, "_varlen_api", lambda: api)
    items = make_items()
    padded_loss, padded_grads = loss_and_grads(make_model("sdpa", text_model=text_model).train(),
                                               LlavaDataCollator(0)(items))
    model = make_model(packed_attention.PACKED_VARLEN, text_model=text_model).train()
    loss, grads = loss_and_grads(model, LlavaDataCollator(0, padding_free=True)(items))
    assert calls == [3] * TEXT["num_hidden_layers"]  # one call per layer for the three samples
    torch.testing.assert_close(loss, padded_loss, atol=1e-5, rtol=0)
    for name, grad in padded_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("chunk_size, padding_free", [(1, True), (4, True), (4096, True), (4, False)])
def test_supervised_only_loss_equals_the_stock_loss(chunk_size, padding_free):
    """Padding-free rows bring the target positions from the collator; padded rows find them in the model."""
    model = make_model().train()
    batch = LlavaDataCollator(pad_token_id=0, padding_free=padding_free)(make_items())
    assert ("target_positions" in batch) == padding_free
    for num_items in (None, torch.tensor(9)):
        kwargs = {} if num_items is None else {"num_items_in_batch": num_items}
        model.enable_supervised_loss(None)
        stock_loss, stock_grads = loss_and_grads(model, batch, **kwargs)
        model.enable_supervised_loss(chunk_size)
        out = model(**batch, **kwargs)
        assert out.logits is None  # never computed for the whole row
        model.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.testing.assert_close(out.loss.detach(), stock_loss, atol=1e-6, rtol=0)
        for name, grad in stock_grads.items():
            torch.testing.assert_close(model.get_parameter(name).grad, grad, atol=1e-6, rtol=1e-5, msg=name)
    model.eval()  # evaluation and generation keep the logits
    with torch.no_grad():
        assert model(**batch).logits.shape == (*batch["input_ids"].shape, TEXT["vocab_size"])


def test_supervised_only_loss_without_targets_is_a_zero_with_a_graph():
    model = make_model().train()
    model.enable_supervised_loss(8)
    items = make_items()
    for item in items:
        item["labels"][:] = -100
    batch = LlavaDataCollator(pad_token_id=0, padding_free=True)(items)
    assert model(**batch).loss.item() == 0.0  # the stock mean over no target would be NaN
    loss = model(**batch, num_items_in_batch=torch.tensor(5)).loss  # other micro-batches of the step have targets
    loss.backward()
    assert loss.item() == 0.0 and model.multi_modal_projector.linear_1.weight.grad is not None
    with pytest.raises(ValueError, match="chunk_size must be positive"):
        model.enable_supervised_loss(0)


def test_flattened_batch_loss_matches_stock_llava_on_the_padded_batch():
    """Ours, padding-free with the supervised-only loss, against stock `LlavaForConditionalGeneration` (Llama text
    model, same weights) on the padded batch users train with today."""
    ours = make_model("packed_sdpa").train()
    ours.enable_supervised_loss(3)
    text = InternLM2Config(**TEXT)
    stock_config = LlavaConfig(text_config=internlm2_config_to_llama_config(text), vision_config=VISION,
                               image_token_index=IMAGE_TOKEN_ID, image_seq_length=ours.config.image_seq_length)
    stock = LlavaForConditionalGeneration(stock_config).train()
    stock.load_state_dict(stock_state_dict(ours), strict=True)
    items = make_items(seed=3)
    padded = LlavaDataCollator(pad_token_id=0)(items)
    flat = LlavaDataCollator(pad_token_id=0, padding_free=True)(items)
    stock_loss = stock(**padded).loss
    ours_loss = ours(**flat).loss
    torch.testing.assert_close(ours_loss, stock_loss, atol=1e-5, rtol=0)
    stock_loss.backward()
    ours_loss.backward()
    torch.testing.assert_close(ours.multi_modal_projector.linear_1.weight.grad,
                               stock.model.multi_modal_projector.linear_1.weight.grad, atol=1e-5, rtol=1e-4)
    assert isinstance(stock_config.text_config, LlamaConfig)
