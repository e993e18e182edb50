"""Builders: a model from a pretrained LLM + CLIP (+ projector), and the tiny random model of tests and the demo."""

import os

import pytest
import torch

from llava_hf.models.llava_internlm2 import (
    LlavaInternLM2ForConditionalGeneration,
    build_llava_from_pretrained,
    load_projector_weights,
)
from llava_hf.testing import build_tiny_llava


@pytest.fixture(scope="module")
def base(tiny_tokenizer_dir, tmp_path_factory):
    """Saved parts (`base/llm`, `base/clip`) and the model build_tiny_llava assembled from them."""
    folder = str(tmp_path_factory.mktemp("base"))
    model, processor = build_tiny_llava(save_dir=folder, tokenizer_dir=tiny_tokenizer_dir, image_size=28,
                                        text_hidden_size=64, vision_hidden_size=32)
    return folder, model, processor


def test_tiny_build_records_its_sources_and_adds_the_image_token(base):
    folder, model, processor = base
    llm, clip = os.path.join(folder, "llm"), os.path.join(folder, "clip")
    assert (model.config.text_model_name_or_path, model.config.vision_model_name_or_path) == (llm, clip)
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= set(os.listdir(llm))
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= set(os.listdir(clip))
    image_token_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert model.config.image_token_id == processor.image_token_id == image_token_id == len(processor.tokenizer) - 1
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    assert processor.image_seq_length == model.config.image_seq_length == 4
    # the new row is the mean of the pretrained rows (deterministic, unlike sampled mean-resizing)
    embeddings = model.get_input_embeddings().weight
    torch.testing.assert_close(embeddings[image_token_id], embeddings[:image_token_id].mean(0))
    head = model.get_output_embeddings().weight
    torch.testing.assert_close(head[image_token_id], head[:image_token_id].mean(0))


def test_rebuilding_from_the_same_sources_is_bit_identical(base):
    folder, model, _ = base
    torch.manual_seed(0)
    first, _ = build_llava_from_pretrained(os.path.join(folder, "llm"), os.path.join(folder, "clip"))
    torch.manual_seed(0)
    second, _ = build_llava_from_pretrained(os.path.join(folder, "llm"), os.path.join(folder, "clip"))
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys() == model.state_dict().keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    backbone = [k for k in a if not k.startswith("multi_modal_projector.")]
    assert all(torch.equal(a[k], model.state_dict()[k]) for k in backbone)


def test_tiny_build_is_deterministic_and_works_with_other_text_models(tiny_tokenizer_dir):
    first, _ = build_tiny_llava(tokenizer_dir=tiny_tokenizer_dir, image_size=28, text_hidden_size=64,
                                vision_hidden_size=32, seed=3)
    second, _ = build_tiny_llava(tokenizer_dir=tiny_tokenizer_dir, image_size=28, text_hidden_size=64,
                                 vision_hidden_size=32, seed=3)
    assert all(torch.equal(v, second.state_dict()[k]) for k, v in first.state_dict().items())
    for text_model_type, lm_class in (("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM")):
        model, processor = build_tiny_llava(tokenizer_dir=tiny_tokenizer_dir, text_model_type=text_model_type,
                                            image_size=28, text_hidden_size=64, vision_hidden_size=32)
        assert type(model.language_model).__name__ == lm_class
        inputs = processor(images=[_gray_image()], text="<image>\nhi")
        assert model(**inputs).logits.shape[-1] == model.config.text_config.vocab_size


def _gray_image():
    from PIL import Image

    return Image.new("RGB", (30, 20), (128, 128, 128))


def test_projector_weights_load_from_a_folder_or_file(base, tmp_path):
    folder, model, _ = base
    projector = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("multi_modal_projector.")}
    model.save_pretrained(tmp_path / "stage1", state_dict=dict(projector))  # save_pretrained empties the dict
    rebuilt, _ = build_llava_from_pretrained(os.path.join(folder, "llm"), os.path.join(folder, "clip"),
                                             projector_path=str(tmp_path / "stage1"))
    for key, value in projector.items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    with pytest.raises(ValueError, match=r"missing tensors \['multi_modal_projector.linear_2.bias'\]"):
        from safetensors.torch import save_file

        save_file({k: v for k, v in projector.items() if k != "multi_modal_projector.linear_2.bias"},
                  tmp_path / "partial.safetensors")
        load_projector_weights(rebuilt, str(tmp_path / "partial.safetensors"))
    with pytest.raises(FileNotFoundError, match="projector weights not found"):
        load_projector_weights(rebuilt, str(tmp_path / "nowhere.safetensors"))


def test_builder_passes_dtype_to_the_backbones(base):
    folder, _, _ = base
    model, _ = build_llava_from_pretrained(os.path.join(folder, "llm"), os.path.join(folder, "clip"),
                                           dtype=torch.bfloat16, vision_feature_layer=-1)
    assert isinstance(model, LlavaInternLM2ForConditionalGeneration)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config.vision_feature_layer == -1
