"""Recipes and flags: every shipped recipe parses, flags override recipes, the XTuner numbers are the XTuner ones;
no abbreviations, one-line usage errors and a --help with our flags first."""

import glob
import os
from dataclasses import fields

import pytest

from llava_hf.demo import paths
from llava_hf.demo.prepare import demo_recipe
from llava_hf.errors import UserInputError
from llava_hf.train.arguments import ARG_CLASSES, HELP_GROUPS, is_demo, load_recipe, parse_args
from llava_hf.train.run import main

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


def usage_error(argv, capsys) -> tuple[int, list[str]]:
    """(exit status, stderr lines) of `examples/train.py ARGV` when it stops on a usage error."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return stop.value.code, capsys.readouterr().err.splitlines()


def test_a_flag_prefix_is_not_taken_for_the_flag(capsys):
    # argparse's abbreviations took --learning_rat for --learning_rate: the run went on with another configuration
    assert usage_error(["--stage", "pretrain", "--learning_rat", "1"], capsys) == (
        2, ["train.py: error: unrecognized arguments: --learning_rat 1"])


def test_an_invalid_choice_is_one_line_with_the_choices(capsys):
    assert usage_error(["--stage", "finetun"], capsys) == (
        2, ["train.py: error: argument --stage: invalid choice: 'finetun' (choose from 'pretrain', 'finetune')"])
    status, err = usage_error(["--learning_rate", "abc"], capsys)
    assert status == 2 and len(err) == 1 and "invalid float value: 'abc'" in err[0]


def test_config_is_read_first_in_both_spellings(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rate: 3.0e-4\nstage: finetune\n")
    for argv in (["--config", str(recipe)], [f"--config={recipe}"]):
        _, _, t = parse_args([*argv, "--stage", "pretrain"])
        assert (t.learning_rate, t.stage) == (3e-4, "pretrain")  # the recipe's value, and the flag over the recipe
    with pytest.raises(UserInputError, match=r"--config .*missing.yaml: no such file"):
        parse_args(["--config", str(tmp_path / "missing.yaml")])


def test_help_shows_our_flags_grouped_then_config_then_hf_and_names_every_flag(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    help_text = capsys.readouterr().out
    assert stop.value.code == 0
    headings = [line[:-1] for line in help_text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings[1:] == [*HELP_GROUPS, "recipe", "Hugging Face TrainingArguments"], headings
    position = {flag: help_text.index(f"  --{flag} ") for flag in ("stage", "data_path", "lora_r", "padding_free",
                                                                   "config", "learning_rate")}
    assert sorted(position, key=position.get) == ["stage", "data_path", "lora_r", "padding_free", "config",
                                                  "learning_rate"]
    words = set(help_text.replace(",", " ").replace(".", " ").split())
    every_flag = {f"--{f.name}" for cls in ARG_CLASSES for f in fields(cls) if f.init}
    assert every_flag <= words, sorted(every_flag - words)  # every one at least named, HF's rarer ones at the end
    assert len(help_text.splitlines()) < 300


def test_every_hf_flag_is_still_accepted_under_both_spellings():
    _, _, t = parse_args(["--adam_beta1", "0.8", "--ddp-timeout", "60", "--padding_free", "false", "--lora-r", "8"])
    assert (t.adam_beta1, t.ddp_timeout, t.padding_free, t.lora_r) == (0.8, 60, False, 8)


def test_only_rank_0_prints_usage_errors(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # as a multi-process launch sets it for the second process
    assert usage_error(["--stage", "finetun"], capsys) == (2, [])


def test_siglip_recipes_change_only_the_encoder_and_the_text_budget():
    m, d, t = parse_args(["--config", os.path.join(RECIPES, "llava_siglip_so400m_internlm2_chat_7b_pretrain.yaml"),
                          "--use_cpu", "true"])
    assert (m.llm_name_or_path, m.vision_tower_name_or_path) == ("internlm/internlm2-chat-7b",
                                                                 "google/siglip-so400m-patch14-384")
    assert d.max_length == 2048 - 27 * 27 and (t.learning_rate, t.per_device_train_batch_size) == (1e-3, 32)
    m, d, t = parse_args(["--config", os.path.join(RECIPES, "llava_siglip_so400m_qwen2_5_7b_instruct_finetune.yaml"),
                          "--use_cpu", "true"])
    assert (m.model_name_or_path, m.vision_tower_name_or_path, d.prompt_template) == (
        "./work_dirs/llava_siglip_so400m_qwen2_5_7b_instruct/pretrain", None, "qwen_chat")
    assert (t.tune_llm, t.tune_vision_tower, d.max_length) == ("full", "frozen", 1319)


def test_encoder_and_projector_flags_shape_a_new_model_only():
    from llava_hf.train.model_setup import check_options, new_model_config

    new = ["--llm_name_or_path", "llm", "--vision_tower_name_or_path", "siglip", "--data_path", "d.json",
           "--output_dir", "/tmp/x", "--use_cpu", "true"]
    m, _, t = parse_args([*new, "--vision_feature_layer", "-2", "-1", "--vision_feature_select_strategy", "full",
                          "--projector_type", "linear", "--projector_downsample", "avg_pool"])
    check_options(m, t)
    assert new_model_config(m) == {"vision_feature_layer": [-2, -1], "vision_feature_select_strategy": "full",
                                   "projector_type": "linear", "projector_downsample": "avg_pool"}
    m, _, _ = parse_args([*new, "--vision_feature_layer", "-1"])
    assert new_model_config(m) == {"vision_feature_layer": -1}  # one layer: an int, as the config stores it
    m, _, t = parse_args(["--model_name_or_path", "stage1", "--data_path", "d.json", "--output_dir", "/tmp/x",
                          "--use_cpu", "true", "--projector_type", "linear", "--vision_feature_layer", "-1"])
    with pytest.raises(ValueError, match="--vision_feature_layer --projector_type shape a new model .* "
                                         "--model_name_or_path stage1 keeps the settings it was built with"):
        check_options(m, t)


def test_an_unknown_projector_is_one_line_with_the_choices(capsys):
    status, err = usage_error(["--projector_type", "mlp3x_gelu"], capsys)
    assert status == 2 and len(err) == 1 and "(choose from 'mlp2x_gelu', 'linear')" in err[0]
