"""`llava-hf export-hf`: stock `LlavaForConditionalGeneration` folders that plain transformers loads without
llava_hf and without remote code, with our logits and our greedy generation (InternLM2- and Llama-based)."""

import json

import pytest
from safetensors.torch import load_file
from transformers import (CLIPVisionConfig, Dinov2WithRegistersConfig, LlamaConfig, PreTrainedConfig,
                          SiglipVisionConfig)

from llava_hf.cli.main import main as cli
from llava_hf.export.stock_llava import stock_llava_config
from llava_hf.inference import UserInputError, load_model_and_processor
from llava_hf.models.llava_internlm2 import LlavaInternLM2Config
from llava_hf.testing import build_tiny_llava
from tests.export.shipping_helpers import TINY, assert_runs_like_ours, chat_inputs, our_outputs, run_folder


@pytest.fixture(scope="module", params=["internlm2", "llama"])
def model_dir(request, tmp_path_factory, tiny_tokenizer_dir):
    """A saved tiny model of each text-model family (the Llama one stands for Vicuna / LLaVA-1.5)."""
    root = tmp_path_factory.mktemp(f"{request.param}_model")
    model, processor = build_tiny_llava(save_dir=str(root / "parts"), tokenizer_dir=tiny_tokenizer_dir,
                                        text_model_type=request.param, seed=3, **TINY)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    return root / "model"


@pytest.mark.slow
def test_stock_export_gives_our_logits_and_generation_without_llava_hf(model_dir, image, tmp_path,
                                                                       run_without_llava_hf):
    model, processor = load_model_and_processor(str(model_dir), torch_dtype="float32")
    inputs = chat_inputs(processor, image)
    assert cli(["export-hf", str(model_dir), str(tmp_path / "stock")]) == 0
    config = json.loads((tmp_path / "stock" / "config.json").read_text())
    assert config["model_type"] == "llava" and config["text_config"]["model_type"] == "llama"
    assert config["image_token_index"] == model.config.image_token_id and "auto_map" not in config
    assert not list((tmp_path / "stock").glob("*.py"))  # no remote code at all, and nothing that names any
    for name in ("tokenizer_config.json", "processor_config.json"):
        assert "auto_map" not in json.loads((tmp_path / "stock" / name).read_text()), name
    # what transformers 4.x reads (tests/export/test_transformers_releases.py loads it there)
    assert config["text_config"]["rope_theta"] == config["text_config"]["rope_parameters"]["rope_theta"]
    tokenizer_config = json.loads((tmp_path / "stock" / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert "image_processor" not in json.loads((tmp_path / "stock" / "processor_config.json").read_text())
    image_processor = json.loads((tmp_path / "stock" / "preprocessor_config.json").read_text())
    assert image_processor["image_processor_type"] == "LlavaImageProcessor" and image_processor["do_pad"] is True
    prefixes = {".".join(key.split(".")[:2]) for key in load_file(tmp_path / "stock" / "model.safetensors")}
    # the Hub's LLaVA layout, which transformers 4.x and vLLM read too
    assert prefixes == {"language_model.model", "language_model.lm_head", "vision_tower.vision_model",
                        "multi_modal_projector.linear_1", "multi_modal_projector.linear_2"}

    stock = run_folder(run_without_llava_hf, tmp_path / "stock", image, tmp_path, stock=True)
    assert stock["classes"] == ["transformers.models.llava.modeling_llava.LlavaForConditionalGeneration",
                                "transformers.models.llava.processing_llava.LlavaProcessor",
                                "transformers.tokenization_utils_tokenizers.TokenizersBackend"]
    # LlavaImageProcessor(do_pad=True) pads with the mean colour as ours does
    pixel_difference, logit_difference = assert_runs_like_ours(stock, our_outputs(model, processor, inputs))
    print(f"{model.config.text_config.model_type}: stock export vs ours: max abs pixel difference "
          f"{pixel_difference:.2e}, max abs logit difference {logit_difference:.2e}")
    generation = json.loads((tmp_path / "stock" / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [processor.tokenizer.eos_token_id,
                                          processor.tokenizer.convert_tokens_to_ids("<|im_end|>")]


class RemoteCodeLLMConfig(PreTrainedConfig):
    """A text model transformers does not implement (it would come with trust_remote_code)."""

    model_type = "my_remote_llm"


def test_what_stock_llava_cannot_express_is_refused_with_the_reason():
    llama = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=2)
    clip = CLIPVisionConfig(image_size=28, patch_size=14, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=2)
    assert stock_llava_config(LlavaInternLM2Config(text_config=llama, vision_config=clip, image_token_id=99))
    remote = RemoteCodeLLMConfig(hidden_size=32, vocab_size=100)
    with pytest.raises(UserInputError, match="the language model is a 'my_remote_llm' model, which transformers "
                                             "does not implement"):
        stock_llava_config(LlavaInternLM2Config(text_config=remote, vision_config=clip, image_token_id=99))
    siglip = SiglipVisionConfig(image_size=28, patch_size=14, hidden_size=32, intermediate_size=64,
                                num_hidden_layers=1, num_attention_heads=2)
    # SigLIP has no CLS: our `default` keeps every patch, which is stock's `full`; CLIP's `default` stays `default`
    assert stock_llava_config(LlavaInternLM2Config(text_config=llama, vision_config=siglip, image_token_id=99)
                              ).vision_feature_select_strategy == "full"
    assert stock_llava_config(LlavaInternLM2Config(text_config=llama, vision_config=clip, image_token_id=99)
                              ).vision_feature_select_strategy == "default"
    with pytest.raises(UserInputError, match="projector_downsample='pixel_shuffle' merges each 2x2 block .* stock "
                                             "LLaVA's projector has no such step"):
        stock_llava_config(LlavaInternLM2Config(text_config=llama, vision_config=siglip, image_token_id=99,
                                                projector_downsample="pixel_shuffle"))
    with pytest.raises(UserInputError, match="projector_type='linear': stock LLaVA's projector is always "
                                             "Linear-activation-Linear"):
        stock_llava_config(LlavaInternLM2Config(text_config=llama, vision_config=clip, image_token_id=99,
                                                projector_type="linear"))
    registers = Dinov2WithRegistersConfig(image_size=28, patch_size=14, hidden_size=32, num_hidden_layers=1,
                                          num_attention_heads=2, num_register_tokens=4)
    with pytest.raises(UserInputError, match=r"puts 5 tokens ahead of its patches .* stock LLaVA's 'default' drops "
                                             "only the first"):
        stock_llava_config(LlavaInternLM2Config(text_config=llama, vision_config=registers, image_token_id=99,
                                                num_additional_image_tokens=5))
    assert stock_llava_config(LlavaInternLM2Config(text_config=llama, vision_config=registers, image_token_id=99,
                                                   num_additional_image_tokens=5,
                                                   vision_feature_select_strategy="full"))
