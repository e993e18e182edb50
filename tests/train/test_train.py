"""Stage 1 and stage 2 through HF Trainer on a micro model: what trains, what is saved, resume, reload."""

import json
import logging
import os
import socket
import time

import huggingface_hub
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoModel

from llava_hf.data.errors import DataError
from llava_hf.errors import UserInputError
from llava_hf.inference.loading import load_model_and_processor as load_for_inference
from llava_hf.train import parse_args, train
from llava_hf.train.model_setup import linear_layers, lora_config
from llava_hf.train.run import main
from tests.train.conftest import common_args, losses, starting_model, write_data


def run(argv):
    return train(*parse_args(argv))


@pytest.fixture(scope="module")
def stage1(micro_base, image_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1")
    trainer = run(common_args(
        out, image_data, stage="pretrain", llm_name_or_path=f"{micro_base}/llm",
        vision_tower_name_or_path=f"{micro_base}/clip", max_steps=8,
    ))
    return out, trainer


def test_pretrain_trains_only_the_projector_and_loss_drops(stage1):
    out, trainer = stage1
    model = trainer.model.eval()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("multi_modal_projector.") for n in trainable)
    untrained = starting_model(*parse_args(common_args(out, ("x", "y"), **{
        "llm_name_or_path": model.config.text_model_name_or_path,
        "vision_tower_name_or_path": model.config.vision_model_name_or_path}))[::2])
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    with torch.no_grad():
        before, after = untrained.eval()(**batch).loss.item(), model(**batch).loss.item()
    # a frozen random LLM leaves the projector little to fix, but it must fix some
    assert after < before - 0.03, (before, after)


def test_stage1_checkpoint_holds_the_projector_and_reloads(stage1, micro_base):
    out, trainer = stage1
    with safe_open(os.path.join(out, "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    projector = {n for n, _ in trainer.model.named_parameters() if n.startswith("multi_modal_projector.")}
    assert keys == projector
    projector_bytes = sum(p.numel() * 4 for n, p in trainer.model.named_parameters() if n in projector)
    assert os.path.getsize(os.path.join(out, "model.safetensors")) < projector_bytes + 4096
    reloaded = AutoModel.from_pretrained(out).eval()
    model = trainer.model.eval()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], tensor, atol=0, rtol=0, msg=name)


def test_finetune_starts_from_the_stage1_projector(stage1, image_data, tmp_path):
    out, _ = stage1
    saved = load_file(os.path.join(out, "model.safetensors"))
    model_args, _, training_args = parse_args(common_args(tmp_path, image_data, stage="finetune", model_name_or_path=str(out)))
    model = starting_model(model_args, training_args)
    for name, tensor in saved.items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_full_finetune_checkpoint_reloads_with_identical_logits(stage1, image_data, tmp_path):
    out, _ = stage1
    trainer = run(common_args(tmp_path, image_data, stage="finetune", model_name_or_path=str(out), max_steps=3,
                              tune_llm="full"))
    model = trainer.model.eval()
    with safe_open(os.path.join(tmp_path, "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert any(k.startswith("language_model.") for k in keys) and not any(k.startswith("vision_tower.") for k in keys)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits, atol=0, rtol=0)
    # the stored LLM and the ViT rebuilt from its source come back in the asked dtype, not fp32 + bf16
    in_bf16 = AutoModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in in_bf16.parameters()} == {torch.bfloat16}


def test_lora_finetune_is_one_adapter_that_reloads_and_merges(stage1, image_data, tmp_path):
    from peft import PeftModel

    out, _ = stage1
    trainer = run(common_args(tmp_path, image_data, stage="finetune", model_name_or_path=str(out), max_steps=3,
                              tune_llm="lora", lora_r=4, lora_alpha=8, tune_vision_tower="lora",
                              vision_lora_r=2, vision_lora_alpha=4))
    peft_model = trainer.model.eval()
    config = peft_model.peft_config["default"]
    assert config.rank_pattern == {r"language_model\..*": 4, r"vision_tower\..*": 2}
    assert "multi_modal_projector" in config.modules_to_save
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("vision_tower" in n and "lora_A" in n for n in names)
    assert any("language_model" in n and "lora_A" in n for n in names)
    assert not any(n.split(".lora_")[0].endswith((".output", ".lm_head")) for n in names), "the head gets no LoRA"
    with open(os.path.join(tmp_path, "adapter_config.json")) as f:
        # the stage-1 folder (rebuilt from its sources on load) is the adapter's base, so users can reload it
        assert json.load(f)["base_model_name_or_path"] == str(out)

    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    with torch.no_grad():
        expected = peft_model(**batch).logits
        reloaded = PeftModel.from_pretrained(AutoModel.from_pretrained(out), tmp_path).eval()
        torch.testing.assert_close(reloaded(**batch).logits, expected, atol=1e-5, rtol=0)
        merged = reloaded.merge_and_unload()
        torch.testing.assert_close(merged(**batch).logits, expected, atol=1e-5, rtol=0)
        chat_model, _ = load_for_inference(str(tmp_path), torch_dtype="float32")  # what `llava-hf chat` loads
        torch.testing.assert_close(chat_model(**batch).logits, expected, atol=1e-5, rtol=0)


def test_lora_straight_from_an_llm_and_an_encoder_records_a_base_that_reloads(micro_base, image_data, tmp_path):
    # No stage-1 folder: the base (backbones + fresh projector + image token) is written next to the adapter
    trainer = run(common_args(tmp_path / "out", image_data, stage="finetune", llm_name_or_path=f"{micro_base}/llm",
                              vision_tower_name_or_path=f"{micro_base}/clip", max_steps=2, tune_llm="lora",
                              lora_r=4, lora_alpha=8))
    with open(tmp_path / "out" / "adapter_config.json") as f:
        assert json.load(f)["base_model_name_or_path"] == str(tmp_path / "out" / "base_model")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    with torch.no_grad():
        expected = trainer.model.eval()(**batch).logits
        chat_model, _ = load_for_inference(str(tmp_path / "out"), torch_dtype="float32")  # what merge and chat load
        torch.testing.assert_close(chat_model(**batch).logits, expected, atol=1e-5, rtol=0)


def test_resume_gives_the_same_losses(micro_base, image_data, tmp_path):
    args = dict(stage="pretrain", llm_name_or_path=f"{micro_base}/llm", vision_tower_name_or_path=f"{micro_base}/clip",
                max_steps=6, per_device_train_batch_size=2, save_strategy="steps", save_steps=3, tune_llm="full")
    straight = losses(run(common_args(tmp_path / "a", image_data, **args)))
    resumed = losses(run(common_args(tmp_path / "b", image_data, **args)
                         + ["--resume_from_checkpoint", str(tmp_path / "a" / "checkpoint-3")]))
    assert sorted(resumed)[-3:] == [4, 5, 6]
    for step in (4, 5, 6):
        assert abs(resumed[step] - straight[step]) < 1e-6, (step, resumed[step], straight[step])


def test_bad_options_fail_before_loading_anything(micro_base, image_data, tmp_path):
    base = dict(llm_name_or_path=f"{micro_base}/llm", vision_tower_name_or_path=f"{micro_base}/clip")
    with pytest.raises(ValueError, match="needs a CUDA GPU|bitsandbytes|--tune_llm lora"):
        run(common_args(tmp_path, image_data, stage="finetune", tune_llm="lora", bits=4, **base))
    with pytest.raises(FileNotFoundError, match="--data_path"):
        run(common_args(tmp_path, (str(tmp_path / "missing.json"), image_data[1]), **base))
    with pytest.raises(UserInputError, match="--model_name_or_path ./no/such/folder: no such folder"):
        run(common_args(tmp_path, image_data, stage="finetune", model_name_or_path="./no/such/folder"))
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        parse_args(common_args(tmp_path, image_data, tune_llm="everything"))


def test_bad_data_stops_the_run_before_any_weights_load(micro_base, tmp_path, monkeypatch):
    data_path, images = write_data(tmp_path / "data", n_image=3, n_text=0)
    os.remove(os.path.join(images, "1.png"))

    def no_weights(*args, **kwargs):
        raise AssertionError("the model was loaded before the data was validated")

    monkeypatch.setattr("llava_hf.train.run.load_model", no_weights)
    with pytest.raises(DataError, match="data validation failed before step 1"):
        run(common_args(tmp_path / "out", (data_path, images), llm_name_or_path=f"{micro_base}/llm",
                        vision_tower_name_or_path=f"{micro_base}/clip"))


@pytest.mark.parametrize("case", ["missing data file", "missing model folder", "unknown stage"])
def test_user_mistakes_end_with_one_error_line_and_exit_status_2(micro_base, image_data, tmp_path, capsys, case):
    flags, expected = {
        "missing data file": (dict(data=(str(tmp_path / "missing.json"), image_data[1]),
                                   llm_name_or_path=f"{micro_base}/llm", vision_tower_name_or_path=f"{micro_base}/clip"),
                              "train.py: error: --data_path {tmp}/missing.json: no such file"),
        "missing model folder": (dict(stage="finetune", model_name_or_path="work_dirs/no/such/folder"),
                                 "train.py: error: --model_name_or_path work_dirs/no/such/folder: no such folder"),
        "unknown stage": (dict(stage="stage3"), "error: argument --stage: invalid choice: 'stage3'"),
    }[case]
    argv = common_args(tmp_path, flags.pop("data", image_data), **flags)
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own usage error
        status = exit_.code
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert status == 2 and len(error_lines) == 1, err
    assert expected.format(tmp=tmp_path) in error_lines[0]


@pytest.fixture
def no_network(monkeypatch):
    """Fails any connection attempt (a Hub request included) and records it."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network use in a test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.mark.parametrize("path", ["work_dirs/demo/pretrainn", "pretrainn", "./stage1", "/no/such/folder"])
def test_a_missing_local_model_path_is_named_without_asking_the_hub(image_data, tmp_path, monkeypatch, capsys,
                                                                   no_network, path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work_dirs").mkdir()  # so `work_dirs/demo/...` and `work_dirs/x` are paths, whatever their shape
    start = time.monotonic()
    assert main(common_args(tmp_path / "out", image_data, stage="finetune", model_name_or_path=path)) == 2
    assert capsys.readouterr().err.splitlines() == [f"train.py: error: --model_name_or_path {path}: no such folder"]
    assert not no_network and time.monotonic() - start < 5


def test_a_hub_id_that_does_not_load_is_one_line_naming_the_flag(micro_base, image_data, tmp_path, monkeypatch,
                                                                capsys):
    monkeypatch.chdir(tmp_path)  # no local `nosuchowner/` folder: the name is a Hub id
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # not in the cache, and no Hub to ask
    assert main(common_args(tmp_path / "out", image_data, llm_name_or_path="nosuchowner/nosuchllm",
                            vision_tower_name_or_path=f"{micro_base}/clip")) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(
        "train.py: error: --llm_name_or_path nosuchowner/nosuchllm: not a local folder, and not loadable from the Hub ("), err


def test_a_lora_rank_that_does_not_fit_the_model_is_one_warning(micro_base, tmp_path, caplog):
    model_args, _, training_args = parse_args(common_args(tmp_path, ("x", "y"), llm_name_or_path=f"{micro_base}/llm",
                                                          vision_tower_name_or_path=f"{micro_base}/clip"))
    model = starting_model(model_args, training_args)
    widths = {(m.in_features, m.out_features) for m in linear_layers(model.language_model, set()).values()}
    assert (32, 32) in widths  # the micro LLM's attention output: an adapter of rank >= 16 is as big as the layer

    def warnings(**flags):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="llava_hf.train"):
            lora_config(model, parse_args(common_args(tmp_path, ("x", "y"), **flags))[2])
        return [record.getMessage() for record in caplog.records]

    assert warnings(tune_llm="lora", lora_r=16, tune_vision_tower="lora", vision_lora_r=15) == [
        "--lora_r 16 is too large for the LLM: a rank-16 LoRA of its 32 x 32 layer model.layers.0.attention.wo holds "
        "1,024 weights, the layer itself 1,024; pass --lora_r 15 or less (e.g. 4), or --tune_llm full"]
    assert warnings(tune_llm="lora", lora_r=15) == []
    assert len(warnings(tune_vision_tower="lora", vision_lora_r=512)) == 1


def test_per_part_learning_rates_become_optimizer_groups(micro_base, image_data, tmp_path):
    trainer = run(common_args(tmp_path, image_data, stage="pretrain", llm_name_or_path=f"{micro_base}/llm",
                              vision_tower_name_or_path=f"{micro_base}/clip", max_steps=1, tune_llm="full",
                              tune_vision_tower="full", learning_rate=1e-4, vision_tower_learning_rate=2e-3,
                              projector_learning_rate=5e-3))
    by_param = {id(p): group["initial_lr"] for group in trainer.optimizer.param_groups for p in group["params"]}
    for name, param in trainer.model.named_parameters():
        expected = 2e-3 if name.startswith("vision_tower.") else 5e-3 if name.startswith("multi_modal_projector.") else 1e-4
        assert by_param[id(param)] == expected, name
