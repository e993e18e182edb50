"""LlavaInternLM2ForConditionalGeneration: parity with stock transformers LLaVA, generation, training, checkpoints."""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
)

from llava_hf.models.internlm2 import InternLM2Config, internlm2_config_to_llama_config
from llava_hf.models.llava_internlm2 import (
    LlavaInternLM2Config,
    LlavaInternLM2ForConditionalGeneration,
)
from llava_hf.export.stock_llava import stock_state_dict
from llava_hf.models.llava_internlm2.modeling_llava_internlm2 import CACHE_FIELD
from llava_hf.testing import build_tiny_llava
from tests.arithmetic import compare_env

IMAGE_TOKEN_ID = 95
VOCAB = 96
VISION = CLIPVisionConfig(
    image_size=28, patch_size=14, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
)
TEXT = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, tie_word_embeddings=False)


def _batch(n_image_tokens: int):
    """Row 0: text + one image + text; row 1: text only, left-padded (padding_side of the InternLM2 tokenizer)."""
    row0 = [1, 5, 6] + [IMAGE_TOKEN_ID] * n_image_tokens + [7, 8, 9, 10]
    row1 = [0] * (len(row0) - 6) + [1, 11, 12, 13, 14, 15]
    input_ids = torch.tensor([row0, row1])
    attention_mask = (input_ids != 0).long()
    labels = input_ids.masked_fill(attention_mask == 0, -100)  # image positions deliberately NOT masked
    return input_ids, attention_mask, labels


def _assert_same_as_stock(ours, stock_config):
    """Stock LLaVA holding our weights (renamed, InternLM2 unpacked, as `export-hf` does) computes our logits."""
    stock = LlavaForConditionalGeneration(stock_config).eval()
    stock.load_state_dict(stock_state_dict(ours), strict=True)
    n_tokens = ours.config.image_seq_length
    input_ids, attention_mask, labels = _batch(n_tokens)
    pixel_values = torch.randn(1, 3, 28, 28)
    ours_out = ours(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask, labels=labels)
    stock_labels = labels.masked_fill(input_ids == IMAGE_TOKEN_ID, -100)
    stock_out = stock(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
                      labels=stock_labels)
    valid = attention_mask.bool()
    torch.testing.assert_close(ours_out.logits[valid], stock_out.logits[valid], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours_out.loss, stock_out.loss, atol=1e-5, rtol=0)


def test_parity_with_stock_llava_for_a_llama_text_model():
    torch.manual_seed(0)
    config = LlavaInternLM2Config(text_config=LlamaConfig(**TEXT), vision_config=VISION, image_token_id=IMAGE_TOKEN_ID)
    ours = LlavaInternLM2ForConditionalGeneration(config).eval()
    stock_config = LlavaConfig(text_config=LlamaConfig(**TEXT), vision_config=VISION, image_token_index=IMAGE_TOKEN_ID,
                               image_seq_length=config.image_seq_length)
    _assert_same_as_stock(ours, stock_config)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_parity_with_stock_llava_plus_llama_for_an_internlm2_text_model(attn_implementation):
    torch.manual_seed(1)
    text = InternLM2Config(**TEXT)
    config = LlavaInternLM2Config(text_config=text, vision_config=VISION, image_token_id=IMAGE_TOKEN_ID)
    config._attn_implementation = attn_implementation
    ours = LlavaInternLM2ForConditionalGeneration(config).eval()
    assert type(ours.language_model).__name__ == "InternLM2ForCausalLM"
    assert ours.language_model.config._attn_implementation == attn_implementation
    stock_config = LlavaConfig(text_config=internlm2_config_to_llama_config(text), vision_config=VISION,
                               image_token_index=IMAGE_TOKEN_ID, image_seq_length=config.image_seq_length)
    stock_config._attn_implementation = attn_implementation
    _assert_same_as_stock(ours, stock_config)


@pytest.fixture(scope="module")
def tiny(tiny_tokenizer_dir, tmp_path_factory):
    """A tiny InternLM2 LLaVA built from saved parts (config records the source folders), + its processor."""
    base = str(tmp_path_factory.mktemp("llava_base"))
    model, processor = build_tiny_llava(save_dir=base, tokenizer_dir=tiny_tokenizer_dir, image_size=56,
                                        text_hidden_size=64, vision_hidden_size=32)
    return model.eval(), processor


def _image_inputs(model, seed=0):
    n = model.config.image_seq_length
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.tensor([[1, 5, 6] + [model.config.image_token_id] * n + [7, 8, 9]])
    return input_ids, torch.randn(1, 3, 56, 56, generator=generator)


def test_config_derives_image_seq_length_and_round_trips(tmp_path):
    assert LlavaInternLM2Config(image_token_id=7).image_seq_length == 576  # CLIP-L/336, CLS dropped
    assert LlavaInternLM2Config(image_token_id=7, vision_feature_select_strategy="full").image_seq_length == 577
    with pytest.raises(ValueError, match="image_seq_length=100 does not match"):
        LlavaInternLM2Config(image_token_id=7, image_seq_length=100)
    config = LlavaInternLM2Config(text_config=InternLM2Config(**TEXT), vision_config=VISION, image_token_id=5,
                                  text_model_name_or_path="llm", vision_model_name_or_path="clip")
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is LlavaInternLM2Config and isinstance(loaded.text_config, InternLM2Config)
    assert (loaded.image_seq_length, loaded.image_token_index, loaded.text_model_name_or_path) == (4, 5, "llm")


def test_count_mismatch_names_both_counts(tiny):
    model, _ = tiny
    input_ids, pixel_values = _image_inputs(model)
    n = model.config.image_seq_length
    with pytest.raises(ValueError, match=rf"{n} image tokens .* 2 image\(s\) give {2 * n} features"):
        model(input_ids=input_ids, pixel_values=pixel_values.repeat(2, 1, 1, 1))
    with pytest.raises(ValueError, match=rf"{n} image tokens .* 0 image\(s\) give 0 features"):
        model(input_ids=input_ids)


def test_greedy_generate_with_an_image_matches_step_by_step_argmax(tiny):
    model, _ = tiny
    input_ids, pixel_values = _image_inputs(model)
    vision_calls = []
    hook = model.vision_tower.register_forward_hook(lambda *args: vision_calls.append(1))
    try:
        generated = model.generate(input_ids=input_ids, pixel_values=pixel_values, max_new_tokens=6, do_sample=False)
    finally:
        hook.remove()
    assert len(vision_calls) == 1  # pixels only on the first step, the KV cache carries them afterwards
    sequence = input_ids
    with torch.no_grad():
        for _ in range(generated.shape[1] - input_ids.shape[1]):
            logits = model(input_ids=sequence, pixel_values=pixel_values, use_cache=False).logits
            sequence = torch.cat([sequence, logits[:, -1].argmax(-1, keepdim=True)], dim=-1)
    assert torch.equal(generated, sequence)


def test_prepare_inputs_for_generation_drops_pixels_after_the_first_step(tiny):
    model, _ = tiny
    input_ids, pixel_values = _image_inputs(model)
    first = model.prepare_inputs_for_generation(input_ids, pixel_values=pixel_values, is_first_iteration=True)
    later = model.prepare_inputs_for_generation(input_ids, pixel_values=pixel_values, is_first_iteration=False)
    assert first["pixel_values"] is pixel_values and "pixel_values" not in later


def test_mixed_batch_trains_with_a_frozen_vision_tower(tiny):
    model, _ = tiny
    model.train()
    model.vision_tower.requires_grad_(False)
    try:
        n = model.config.image_seq_length
        row0 = [1, 5] + [model.config.image_token_id] * n + [7, 8, 9]
        row1 = [2] * (len(row0) - 6) + [1, 11, 12, 13, 14, 15]
        input_ids = torch.tensor([row0, row1])
        attention_mask = torch.ones_like(input_ids)
        attention_mask[1, : len(row0) - 6] = 0
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        pixel_values = torch.randn(1, 3, 56, 56)
        out = model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask, labels=labels)
        assert torch.isfinite(out.loss) and out.image_hidden_states.grad_fn is not None
        out.loss.backward()
        for name, param in model.multi_modal_projector.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        assert all(p.grad is None for p in model.vision_tower.parameters())
        # image positions never count in the loss, whatever the labels say
        masked = labels.clone()
        masked[input_ids == model.config.image_token_id] = -100
        again = model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask, labels=masked)
        torch.testing.assert_close(out.loss, again.loss)
        # a text-only micro-batch (the other DDP rank) still reaches the projector, with exactly zero gradient
        model.zero_grad(set_to_none=True)
        text_only = model(input_ids=input_ids[1:], attention_mask=attention_mask[1:], labels=labels[1:])
        with torch.no_grad():
            model.eval()
            plain = model(input_ids=input_ids[1:], attention_mask=attention_mask[1:]).logits
            assert torch.equal(text_only.logits, plain)  # adding the zero term changes no value
        text_only.loss.backward()
        for name, param in model.multi_modal_projector.named_parameters():
            assert param.grad is not None and not param.grad.any(), name
    finally:
        model.zero_grad(set_to_none=True)
        model.vision_tower.requires_grad_(True)
        model.eval()


def test_gradient_checkpointing_gives_the_same_gradients(tiny_tokenizer_dir):
    model, _ = build_tiny_llava(tokenizer_dir=tiny_tokenizer_dir, image_size=28, text_hidden_size=64,
                                vision_hidden_size=32)
    model.train()
    input_ids, _, labels = _batch(model.config.image_seq_length)
    input_ids[input_ids == IMAGE_TOKEN_ID] = model.config.image_token_id
    pixel_values = torch.randn(1, 3, 28, 28)

    def grads():
        model.zero_grad(set_to_none=True)
        model(input_ids=input_ids, pixel_values=pixel_values, labels=input_ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    reference = grads()
    model.gradient_checkpointing_enable()
    assert model.language_model.model.gradient_checkpointing
    checkpointed = grads()
    assert reference.keys() == checkpointed.keys()
    for name in reference:
        torch.testing.assert_close(checkpointed[name], reference[name], msg=name)


def test_save_and_auto_reload_give_identical_logits_and_carry_remote_code(tiny, tmp_path):
    model, _ = tiny
    input_ids, pixel_values = _image_inputs(model)
    expected = model(input_ids=input_ids, pixel_values=pixel_values).logits
    model.save_pretrained(tmp_path)
    for auto in (AutoModel, AutoModelForImageTextToText):
        reloaded = auto.from_pretrained(tmp_path)
        assert type(reloaded) is LlavaInternLM2ForConditionalGeneration
        assert torch.equal(reloaded(input_ids=input_ids, pixel_values=pixel_values).logits, expected)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForImageTextToText"] == (
        "modeling_llava_internlm2.LlavaInternLM2ForConditionalGeneration"
    )
    for name in ("modeling_llava_internlm2.py", "configuration_llava_internlm2.py", "modeling_internlm2.py",
                 "configuration_internlm2.py"):
        assert (tmp_path / name).is_file(), name


def _save_projector_only(model, folder):
    projector = {k: v for k, v in model.state_dict().items() if k.startswith("multi_modal_projector.")}
    model.save_pretrained(folder, state_dict=projector)


def test_projector_only_checkpoint_is_rebuilt_from_the_recorded_sources(tiny, tmp_path):
    model, _ = tiny
    input_ids, pixel_values = _image_inputs(model)
    expected = model(input_ids=input_ids, pixel_values=pixel_values).logits
    _save_projector_only(model, tmp_path)
    projector_bytes = sum(p.numel() * p.element_size() for p in model.multi_modal_projector.parameters())
    assert os.path.getsize(tmp_path / "model.safetensors") < projector_bytes + 4096
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert type(reloaded) is LlavaInternLM2ForConditionalGeneration and not reloaded.training
    assert torch.equal(reloaded(input_ids=input_ids, pixel_values=pixel_values).logits, expected)


def test_projector_only_checkpoint_errors_name_the_problem(tiny, tmp_path):
    model, _ = tiny
    _save_projector_only(model, tmp_path / "no_source")
    config = json.loads((tmp_path / "no_source" / "config.json").read_text())
    config["text_model_name_or_path"] = None
    (tmp_path / "no_source" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="no `language_model.\\*` tensors and config.text_model_name_or_path"):
        LlavaInternLM2ForConditionalGeneration.from_pretrained(tmp_path / "no_source")

    from safetensors.torch import save_file

    folder = tmp_path / "stray"
    _save_projector_only(model, folder)
    save_file({"multi_modal_projector.linear_3.weight": torch.zeros(2)}, folder / "model.safetensors")
    with pytest.raises(ValueError, match="`multi_modal_projector.linear_3.weight` matches no parameter"):
        LlavaInternLM2ForConditionalGeneration.from_pretrained(folder)


def test_embeddings_delegate_to_the_language_model(tiny_tokenizer_dir):
    model, _ = build_tiny_llava(tokenizer_dir=tiny_tokenizer_dir, text_model_type="llama", image_size=28,
                                text_hidden_size=64, vision_hidden_size=32)
    assert model.get_input_embeddings() is model.language_model.model.embed_tokens
    assert model.get_output_embeddings() is model.language_model.lm_head
    vocab = model.config.text_config.vocab_size
    model.resize_token_embeddings(vocab + 3)
    assert model.language_model.lm_head.weight.shape[0] == vocab + 3
    assert model.config.text_config.vocab_size == model.language_model.config.vocab_size == vocab + 3
    assert {"LlamaDecoderLayer", "CLIPEncoderLayer"} <= set(model._no_split_modules)
    # accelerate's FSDP auto-wrap uses this list and rejects a class the model does not contain
    assert set(model._no_split_modules) <= {type(m).__name__ for m in model.modules()}


def test_backbones_keep_their_attention_implementation(tiny):
    model, _ = tiny  # built from saved parts: the LLM and the CLIP were loaded with sdpa, then assembled
    assert model.language_model.config._attn_implementation == "sdpa"
    assert model.vision_tower.config._attn_implementation == "sdpa"


def test_cache_is_returned_under_the_installed_transformers_name(tiny):
    model, _ = tiny
    input_ids, pixel_values = _image_inputs(model)
    out = model(input_ids=input_ids, pixel_values=pixel_values, use_cache=True)
    assert getattr(out, CACHE_FIELD).get_seq_length() == input_ids.shape[1]
    model.config.use_cache = False  # what training sets on the top-level config
    try:
        assert getattr(model(input_ids=input_ids, pixel_values=pixel_values), CACHE_FIELD) is None
    finally:
        del model.config.use_cache
    # a decoding step: only the new token, the cache carries the image
    step = model(input_ids=torch.tensor([[3]]), use_cache=True, **{CACHE_FIELD: getattr(out, CACHE_FIELD)})
    full = model(input_ids=torch.cat([input_ids, torch.tensor([[3]])], 1), pixel_values=pixel_values).logits
    torch.testing.assert_close(step.logits[:, -1], full[:, -1], atol=1e-5, rtol=0)


REMOTE_SCRIPT = """
import sys


class HideLlavaHf:  # even an editable install must not be found
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "llava_hf":
            raise ImportError("llava_hf is hidden in this test")


sys.meta_path.insert(0, HideLlavaHf())
import torch
from transformers import AutoModelForImageTextToText
inputs = torch.load(sys.argv[1])
for folder in sys.argv[2:]:
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    logits = model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"]).logits
    assert torch.equal(logits, inputs["expected"]), (folder, (logits - inputs["expected"]).abs().max())
print("ok")
"""


@pytest.mark.slow
def test_saved_folders_load_with_trust_remote_code_without_llava_hf(tiny, tmp_path):
    model, _ = tiny
    input_ids, pixel_values = _image_inputs(model)
    expected = model(input_ids=input_ids, pixel_values=pixel_values).logits.detach()
    model.save_pretrained(tmp_path / "full")
    _save_projector_only(model, tmp_path / "projector_only")
    torch.save({"input_ids": input_ids, "pixel_values": pixel_values, "expected": expected}, tmp_path / "inputs.pt")
    (tmp_path / "remote.py").write_text(REMOTE_SCRIPT)
    env = compare_env(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-P", str(tmp_path / "remote.py"), str(tmp_path / "inputs.pt"), str(tmp_path / "full"),
         str(tmp_path / "projector_only")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
