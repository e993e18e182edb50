"""Two CPU processes (gloo) through `torch.distributed.run`: same loss curve as one process at the same global
batch, and no hang when one rank's micro-batch is text-only while the other's has images (the classic LLaVA
DDP hang), with and without ViT LoRA (whose last layer never gets a gradient: features come from layer -2)."""

import json
import os
import socket
import subprocess
import sys

import pytest

from llava_hf.train import parse_args, train
from tests.arithmetic import compare_env
from tests.train.conftest import common_args, losses, write_data


WORKER = os.path.join(os.path.dirname(__file__), "ddp_worker.py")


@pytest.fixture(scope="module")
def mixed_data(tmp_path_factory):
    # 6 image + 6 longer text-only samples, global batch 4: the modality sampler's final merged mega-batch is
    # [text, text, image, image], i.e. rank 0 text-only and rank 1 with images in the same step.
    return write_data(tmp_path_factory.mktemp("mixed"), n_image=6, n_text=6, text_words=6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(output_dir, argv):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), WORKER, *argv]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=compare_env())
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.load(open(os.path.join(output_dir, f"modality_rank{r}.json"))) for r in (0, 1)]
    mixed_steps = [i for i, (a, b) in enumerate(zip(*ranks)) if a != b]
    return losses(output_dir), mixed_steps


@pytest.mark.distributed
@pytest.mark.slow
def test_two_processes_match_one_and_survive_a_mixed_step(micro_base, mixed_data, tmp_path, same_arithmetic):
    # plain SGD: Adam's first step is ~lr * sign(grad), which turns all-reduce rounding noise into big updates
    args = dict(stage="finetune", llm_name_or_path=f"{micro_base}/llm", vision_tower_name_or_path=f"{micro_base}/clip",
                tune_llm="full", max_steps=3, save_strategy="no", optim="sgd", learning_rate=0.5)
    two, mixed_steps = launch(tmp_path / "ddp", common_args(tmp_path / "ddp", mixed_data, **args,
                                                            per_device_train_batch_size=2))
    assert mixed_steps, "the data was built so that some step mixes a text-only rank with an image rank"
    one = losses(train(*parse_args(common_args(tmp_path / "single", mixed_data, **args,
                                               per_device_train_batch_size=4))))
    assert sorted(two) == sorted(one) == [1, 2, 3]
    for step in one:
        assert abs(two[step] - one[step]) < 1e-4, (step, two[step], one[step])


@pytest.mark.distributed
@pytest.mark.slow
def test_mixed_step_with_vit_lora_does_not_hang(micro_base, mixed_data, tmp_path):
    args = dict(stage="finetune", llm_name_or_path=f"{micro_base}/llm", vision_tower_name_or_path=f"{micro_base}/clip",
                tune_llm="lora", lora_r=4, lora_alpha=8, tune_vision_tower="lora", vision_lora_r=2,
                vision_lora_alpha=4, max_steps=3, per_device_train_batch_size=2)
    two, mixed_steps = launch(tmp_path, common_args(tmp_path, mixed_data, **args))
    assert mixed_steps and sorted(two) == [1, 2, 3]
