"""Tiny SigLIP- and CLIP-224-based LLaVAs, built from saved two-tower folders (the layout of `google/siglip-*` and
`openai/clip-*`) through `examples/train.py`'s flags only: stage 1, then LoRA stage 2 (LLM + ViT), `llava-hf merge`
and `export-hf`. The stock export and the merged remote-code folder give our logits (< 1e-4) and our 20-token greedy
output in a Python where llava_hf cannot be imported. A 2x2-downsampling projector trains, merges and loads with
remote code there, and `export-hf` refuses it with the reason."""

import json

import pytest

from llava_hf.cli.main import main as cli
from llava_hf.inference import load_model_and_processor
from llava_hf.testing import build_tiny_llava
from tests.export.shipping_helpers import assert_runs_like_ours, chat_inputs, our_outputs, run_folders, train_argv

pytestmark = pytest.mark.slow

SMALL = dict(text_hidden_size=64, vision_hidden_size=32, vision_layers=3)
ENCODERS = {
    # SigLIP: no CLS (every patch is a feature), a feature-layer list, its own resize and mean colour
    "siglip": (dict(vision_model_type="siglip", image_size=28, patch_size=14),
               ["--vision_feature_layer", "-2", "-1"], 4),
    # CLIP at 224 (ViT-B/32's layout: 7x7 patches + CLS), one feature layer
    "clip224": (dict(vision_model_type="clip", image_size=224, patch_size=32), [], 49),
}


def parts_folder(tmp_path_factory, tiny_tokenizer_dir, name, **encoder):
    """`parts/llm` and the two-tower `parts/siglip` or `parts/clip`, as downloaded from the Hub."""
    root = tmp_path_factory.mktemp(name)
    build_tiny_llava(save_dir=str(root / "parts"), tokenizer_dir=tiny_tokenizer_dir, seed=7, **SMALL, **encoder)
    return root, root / "parts" / encoder["vision_model_type"]


def synthetic_data(root):
    from llava_hf.demo.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(str(root / "data"), n_pretrain=8, n_finetune=8)


@pytest.fixture(scope="module", params=list(ENCODERS))
def trained(request, tmp_path_factory, tiny_tokenizer_dir):
    """(name, LoRA output folder) after stage 1 with the encoder's flags and a LoRA stage 2 (LLM + ViT)."""
    from llava_hf.train import parse_args, train

    encoder, flags, _ = ENCODERS[request.param]
    root, vision_dir = parts_folder(tmp_path_factory, tiny_tokenizer_dir, request.param, **encoder)
    data = synthetic_data(root)
    train(*parse_args(train_argv(root / "stage1", data["pretrain_json"], data["image_folder"], stage="pretrain",
                                 llm_name_or_path=root / "parts" / "llm", vision_tower_name_or_path=vision_dir)
                      + flags))
    train(*parse_args(train_argv(root / "lora", data["finetune_json"], data["image_folder"], stage="finetune",
                                 model_name_or_path=root / "stage1", tune_llm="lora", lora_r=4, lora_alpha=8,
                                 tune_vision_tower="lora", vision_lora_r=2, vision_lora_alpha=4)))
    return request.param, root / "lora"


def test_stock_export_and_merged_folder_give_our_logits_and_generation_without_llava_hf(trained, image, tmp_path,
                                                                                        run_without_llava_hf):
    name, lora = trained
    _, _, image_tokens = ENCODERS[name]
    model, processor = load_model_and_processor(str(lora), torch_dtype="float32")
    assert model.config.image_seq_length == image_tokens
    ours = our_outputs(model, processor, chat_inputs(processor, image))
    assert cli(["merge", str(lora), str(tmp_path / "merged")]) == 0
    assert cli(["export-hf", str(lora), str(tmp_path / "stock")]) == 0
    config = json.loads((tmp_path / "stock" / "config.json").read_text())
    stock_processor = json.loads((tmp_path / "stock" / "processor_config.json").read_text())
    siglip = name == "siglip"
    assert config["vision_config"]["model_type"] == ("siglip_vision_model" if siglip else "clip_vision_model")
    # stock's `default` drops token 0 of any encoder: SigLIP (no CLS) is exported as `full`, which keeps every patch
    assert config["vision_feature_select_strategy"] == ("full" if siglip else "default")
    assert config["vision_feature_layer"] == ([-2, -1] if siglip else -2)
    assert stock_processor["num_additional_image_tokens"] == (0 if siglip else 1)

    folders = {"stock": (tmp_path / "stock", "stock"), "remote": (tmp_path / "merged", "remote")}
    outputs = run_folders(run_without_llava_hf, folders, image, tmp_path)
    for kind, output in outputs.items():
        pixel_difference, logit_difference = assert_runs_like_ours(output, ours)
        print(f"{name} {kind} folder vs ours: max abs pixel difference {pixel_difference:.2e}, max abs logit "
              f"difference {logit_difference:.2e}")


def test_downsampling_projector_ships_with_remote_code_and_export_hf_refuses_it(tmp_path_factory, tiny_tokenizer_dir,
                                                                               image, tmp_path, run_without_llava_hf,
                                                                               capsys):
    from llava_hf.train import parse_args, train

    # 3x3 patches: the last row and column of 2x2 blocks are padded
    root, vision_dir = parts_folder(tmp_path_factory, tiny_tokenizer_dir, "pixel_shuffle", vision_model_type="siglip",
                                    image_size=42, patch_size=14)
    data = synthetic_data(root)
    train(*parse_args(train_argv(root / "stage1", data["pretrain_json"], data["image_folder"], stage="pretrain",
                                 llm_name_or_path=root / "parts" / "llm", vision_tower_name_or_path=vision_dir,
                                 projector_downsample="pixel_shuffle")))
    model, processor = load_model_and_processor(str(root / "stage1"), torch_dtype="float32")
    assert (model.config.image_seq_length, model.multi_modal_projector.linear_1.in_features) == (4, 4 * 32)
    ours = our_outputs(model, processor, chat_inputs(processor, image))
    assert cli(["merge", str(root / "stage1"), str(tmp_path / "merged")]) == 0
    outputs = run_folders(run_without_llava_hf, {"remote": (tmp_path / "merged", "remote")}, image, tmp_path)
    assert_runs_like_ours(outputs["remote"], ours)

    capsys.readouterr()
    assert cli(["export-hf", str(root / "stage1"), str(tmp_path / "stock")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "projector_downsample='pixel_shuffle' merges each 2x2 block" in error
    assert not (tmp_path / "stock").exists()
