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


def train_stage1(root, vision_dir, data, *flags):
    from llava_hf.train import parse_args, train

    train(*parse_args(train_argv(root / "stage1", data["pretrain_json"], data["image_folder"], stage="pretrain",
                                 llm_name_or_path=root / "parts" / "llm", vision_tower_name_or_path=vision_dir)
                      + list(flags)))


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, tiny_tokenizer_dir, image, run_without_llava_hf):
    """For each encoder: stage 1 with its flags, LoRA stage 2 (LLM + ViT), `merge` and `export-hf` of the LoRA output;
    and a stage 1 with `--projector_downsample pixel_shuffle` on SigLIP with 3x3 patches (the last row and column of
    2x2 blocks padded), merged. Every folder runs in one Python without llava_hf. Returns {name: (our outputs, what
    each folder gave, the output folder)}."""
    from llava_hf.train import parse_args, train

    out = tmp_path_factory.mktemp("shipped")
    results, folders = {}, {}
    for name, (encoder, flags, _) in ENCODERS.items():
        root, vision_dir = parts_folder(tmp_path_factory, tiny_tokenizer_dir, name, **encoder)
        data = synthetic_data(root)
        train_stage1(root, vision_dir, data, *flags)
        train(*parse_args(train_argv(root / "lora", data["finetune_json"], data["image_folder"], stage="finetune",
                                     model_name_or_path=root / "stage1", tune_llm="lora", lora_r=4, lora_alpha=8,
                                     tune_vision_tower="lora", vision_lora_r=2, vision_lora_alpha=4)))
        results[name] = root / "lora"
        assert cli(["merge", str(root / "lora"), str(out / f"{name}_merged")]) == 0
        assert cli(["export-hf", str(root / "lora"), str(out / f"{name}_stock")]) == 0
        folders[f"{name}_stock"] = (out / f"{name}_stock", "stock")
        folders[f"{name}_remote"] = (out / f"{name}_merged", "remote")
    root, vision_dir = parts_folder(tmp_path_factory, tiny_tokenizer_dir, "pixel_shuffle", vision_model_type="siglip",
                                    image_size=42, patch_size=14)
    train_stage1(root, vision_dir, synthetic_data(root), "--projector_downsample", "pixel_shuffle")
    results["pixel_shuffle"] = root / "stage1"
    assert cli(["merge", str(root / "stage1"), str(out / "pixel_shuffle_merged")]) == 0
    folders["pixel_shuffle_remote"] = (out / "pixel_shuffle_merged", "remote")

    outputs = run_folders(run_without_llava_hf, folders, image, out)
    shipped = {}
    for name, source in results.items():
        model, processor = load_model_and_processor(str(source), torch_dtype="float32")
        ours = our_outputs(model, processor, chat_inputs(processor, image))
        shipped[name] = (model, ours, {kind: outputs[f"{name}_{kind}"] for kind in ("stock", "remote")
                                       if f"{name}_{kind}" in outputs}, source)
    return out, shipped


@pytest.mark.parametrize("name", list(ENCODERS))
def test_stock_export_and_merged_folder_give_our_logits_and_generation_without_llava_hf(name, shipped):
    out, shipped = shipped
    model, ours, outputs, _ = shipped[name]
    assert model.config.image_seq_length == ENCODERS[name][2]
    config = json.loads((out / f"{name}_stock" / "config.json").read_text())
    stock_processor = json.loads((out / f"{name}_stock" / "processor_config.json").read_text())
    siglip = name == "siglip"
    assert config["vision_config"]["model_type"] == ("siglip_vision_model" if siglip else "clip_vision_model")
    # stock's `default` drops token 0 of any encoder: SigLIP (no CLS) is exported as `full`, which keeps every patch
    assert config["vision_feature_select_strategy"] == ("full" if siglip else "default")
    assert config["vision_feature_layer"] == ([-2, -1] if siglip else -2)
    assert stock_processor["num_additional_image_tokens"] == (0 if siglip else 1)
    for kind, output in outputs.items():
        pixel_difference, logit_difference = assert_runs_like_ours(output, ours)
        print(f"{name} {kind} folder vs ours: max abs pixel difference {pixel_difference:.2e}, max abs logit "
              f"difference {logit_difference:.2e}")
    assert set(outputs) == {"stock", "remote"}


def test_downsampling_projector_ships_with_remote_code_and_export_hf_refuses_it(shipped, tmp_path, capsys):
    _, shipped = shipped
    model, ours, outputs, stage1 = shipped["pixel_shuffle"]
    assert (model.config.image_seq_length, model.multi_modal_projector.linear_1.in_features) == (4, 4 * 32)
    assert_runs_like_ours(outputs["remote"], ours)
    capsys.readouterr()
    assert cli(["export-hf", str(stage1), str(tmp_path / "stock")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "projector_downsample='pixel_shuffle' merges each 2x2 block" in error
    assert not (tmp_path / "stock").exists()
