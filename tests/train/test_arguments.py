"""Recipes and flags: every shipped recipe parses, flags override recipes, the XTuner numbers are the XTuner ones."""

import glob
import os

import pytest

from llava_hf.demo import paths
from llava_hf.demo.prepare import demo_recipe
from llava_hf.train.arguments import is_demo, load_recipe, parse_args

RECIPES = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "recipes")


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(RECIPES, "*.yaml"))), ids=os.path.basename)
def test_every_recipe_parses(path):
    model_args, data_args, training_args = parse_args(["--config", path, "--use_cpu", "true"])  # recipes say bf16: GPU or CPU bf16
    assert training_args.stage in ("pretrain", "finetune")
    assert data_args.data_path and training_args.output_dir
    assert bool(model_args.model_name_or_path) != bool(model_args.llm_name_or_path)


def test_qlora_recipe_reproduces_xtuner():
    m, d, t = parse_args(["--config", os.path.join(RECIPES, "llava_internlm2_chat_7b_qlora_finetune.yaml"), "--use_cpu", "true"])
    assert (m.bits, t.tune_llm, t.lora_r, t.lora_alpha, t.lora_dropout) == (4, "lora", 512, 256, 0.05)
    assert (t.tune_vision_tower, t.vision_lora_r, t.vision_lora_alpha) == ("lora", 64, 16)
    assert (t.learning_rate, t.per_device_train_batch_size * 8, t.num_train_epochs) == (2e-4, 128, 1)
    assert (d.max_length, d.pad_image_to_square, d.prompt_template) == (1472, True, "internlm2_chat")
    m, d, t = parse_args(["--config", os.path.join(RECIPES, "llava_internlm2_chat_20b_qlora_finetune.yaml"), "--use_cpu", "true"])
    assert t.per_device_train_batch_size * t.gradient_accumulation_steps * 8 == 128 and m.bits == 4


def test_flags_override_the_recipe():
    path = os.path.join(RECIPES, "llava_internlm2_chat_7b_pretrain.yaml")
    _, _, t = parse_args(["--config", path, "--learning_rate", "3e-4", "--output_dir", "/tmp/x", "--use_cpu", "true"])
    assert t.learning_rate == 3e-4 and t.output_dir == "/tmp/x"
    assert t.lr_scheduler_type == "cosine"  # still from the recipe


def test_unknown_recipe_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 1.0e-3\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown argument\(s\) \['learning_rat'\]"):
        load_recipe(str(bad))


def test_no_data_and_no_model_is_the_demo():
    m, d, _ = parse_args(["--stage", "pretrain"])
    assert is_demo(m, d)
    m, d, _ = parse_args(["--stage", "pretrain", "--data_path", "x.json"])
    assert not is_demo(m, d)


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_demo_recipe_comes_from_the_package_with_paths_from_demo_paths(stage, tmp_path, monkeypatch):
    """From any working directory: the recipe is package data, the paths are `llava_hf.demo.paths` (relative to
    where the user runs), and flags still win."""
    monkeypatch.chdir(tmp_path)
    m, d, t = parse_args(["--stage", stage, "--logging_steps", "3"], default_recipe=demo_recipe(stage))
    assert d.data_path == [getattr(paths, f"DEMO_{stage.upper()}_JSON")] and d.image_folder == [paths.DEMO_IMAGES]
    assert t.output_dir == (paths.DEMO_PRETRAIN if stage == "pretrain" else paths.DEMO_FINETUNE)
    if stage == "pretrain":
        assert (m.llm_name_or_path, m.model_name_or_path) == (os.path.join(paths.DEMO_BASE, "llm"), None)
    else:
        assert (m.llm_name_or_path, m.model_name_or_path) == (None, paths.DEMO_PRETRAIN)
        assert t.eval_chat_image == paths.DEMO_CHAT_IMAGE
    assert t.stage == stage and t.tune_llm == "full" and t.logging_steps == 3
