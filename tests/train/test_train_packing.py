"""The fast defaults in the real training path: padding-free rows + packed_sdpa + the supervised-only loss train
exactly like padded batches with the stock loss, and token-budget batching resumes exactly."""

import json
import os

import pytest
import torch

from llava_hf.train import parse_args, train
from tests.train.conftest import common_args, losses, starting_model, write_data


@pytest.fixture(scope="module")
def mixed_data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("mixed_packing"), n_image=10, n_text=6, text_words=5)


def base_args(micro_base, **overrides):
    return {"stage": "finetune", "llm_name_or_path": f"{micro_base}/llm", "vision_tower_name_or_path": f"{micro_base}/clip",
            "tune_llm": "full", "max_steps": 4, "optim": "sgd", "learning_rate": 0.5, **overrides}


def test_padding_free_defaults_train_like_padded_batches_with_the_stock_loss(micro_base, mixed_data, tmp_path):
    # plain SGD: Adam's first step is ~lr * sign(grad), which would turn float noise into different updates
    fast = train(*parse_args(common_args(tmp_path / "fast", mixed_data, **base_args(micro_base))))
    stock = train(*parse_args(common_args(tmp_path / "stock", mixed_data, **base_args(
        micro_base, padding_free="false", loss_chunk_size=0, attn_implementation="sdpa"))))
    fast_losses, stock_losses = losses(fast), losses(stock)
    assert sorted(fast_losses) == sorted(stock_losses) == [1, 2, 3, 4]
    for step, loss in stock_losses.items():
        assert abs(fast_losses[step] - loss) < 1e-5, (step, fast_losses[step], loss)
    # packed_sdpa was a training setting: neither the saved config nor the returned model keeps it
    with open(tmp_path / "fast" / "config.json") as f:
        assert "packed_sdpa" not in f.read()
    assert fast.model.config.text_config._attn_implementation == "sdpa"


def test_token_budget_batching_resumes_with_the_same_losses(micro_base, mixed_data, tmp_path):
    args = base_args(micro_base, max_steps=6, per_device_train_batch_size=2, max_tokens_per_batch=80,
                     save_strategy="steps", save_steps=3)
    straight = train(*parse_args(common_args(tmp_path / "a", mixed_data, **args)))
    resumed = losses(train(*parse_args(common_args(tmp_path / "b", mixed_data, **args)
                                       + ["--resume_from_checkpoint", str(tmp_path / "a" / "checkpoint-3")])))
    assert sorted(resumed)[-3:] == [4, 5, 6]
    for step in (4, 5, 6):
        assert abs(resumed[step] - losses(straight)[step]) < 1e-6, step
    # micro-batches really were cut by tokens: more than 2 samples where they are short
    batch_sizes = [len(b) for b in straight.get_train_dataloader().batch_sampler]
    assert max(batch_sizes) > 2 and min(batch_sizes) >= 1


def test_speed_options_are_checked(micro_base, mixed_data, tmp_path):
    for flag, value in (("max_tokens_per_batch", 0), ("loss_chunk_size", -1), ("checkpoint_every_n_layers", 0)):
        with pytest.raises(ValueError, match=f"--{flag}"):
            parse_args(common_args(tmp_path, mixed_data, **{flag: value}))
    _, _, training_args = parse_args(common_args(tmp_path, mixed_data, gradient_checkpointing="true",
                                                 checkpoint_every_n_layers=2))
    assert training_args.gradient_checkpointing_kwargs["every_n_layers"] == 2
    assert json.loads(json.dumps(training_args.to_dict()))["checkpoint_every_n_layers"] == 2
    assert os.path.isfile(mixed_data[0])


@pytest.mark.distributed
@pytest.mark.slow
def test_token_budget_batches_shard_over_two_processes(micro_base, mixed_data, tmp_path):
    from tests.train.test_distributed import launch

    args = base_args(micro_base, max_steps=3, per_device_train_batch_size=2, max_tokens_per_batch=80)
    two, _ = launch(tmp_path, common_args(tmp_path, mixed_data, **args))
    assert sorted(two) == [1, 2, 3]


@pytest.mark.parametrize("adapter_dtype, expected", [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_adapter_dtype(micro_base, mixed_data, tmp_path, adapter_dtype, expected):
    from llava_hf.train.model_setup import configure_trainable

    model_args, _, training_args = parse_args(common_args(tmp_path, mixed_data, **base_args(
        micro_base, torch_dtype="bfloat16", tune_llm="lora", lora_r=4, tune_vision_tower="lora", vision_lora_r=2,
        adapter_dtype=adapter_dtype)))
    model = starting_model(model_args, training_args)
    model = configure_trainable(model, training_args)
    lora = {p.dtype for n, p in model.named_parameters() if "lora_" in n}
    assert lora == {expected}
