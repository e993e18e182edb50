"""Fixtures for the training tests: a micro model (4 image tokens) saved as LLM + CLIP folders, and data."""

import json
import os

import pytest
from PIL import Image

from llava_hf.testing import build_tiny_llava
from llava_hf.train.model_setup import load_model, load_processor
from tests.arithmetic import compare_threads

MICRO = dict(image_size=28, patch_size=14, text_hidden_size=32, text_layers=1, vision_hidden_size=32, vision_layers=2)


@pytest.fixture(scope="session")
def micro_base(tmp_path_factory):
    """`base/llm` + `base/clip`: what `--llm_name_or_path` / `--vision_tower_name_or_path` point at."""
    base = tmp_path_factory.mktemp("micro_base")
    build_tiny_llava(save_dir=str(base), **MICRO)
    return base


def write_data(folder, n_image: int, n_text: int, text_words: int = 3):
    """LLaVA JSON with `n_image` captioned images and `n_text` text-only samples (longer, by `text_words`)."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    colors = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220)}
    samples = []
    for i in range(n_image):
        name = list(colors)[i % 3]
        Image.new("RGB", (40 + i, 30), colors[name]).save(images / f"{i}.png")
        samples.append({"id": f"img{i}", "image": f"{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat color?"}, {"from": "gpt", "value": name}]})
    for i in range(n_text):
        samples.append({"id": f"txt{i}", "conversations": [
            {"from": "human", "value": "Say " + " ".join(["the word"] * text_words)},
            {"from": "gpt", "value": "the word " * text_words}]})
    path = folder / "data.json"
    path.write_text(json.dumps(samples))
    return str(path), str(images)


@pytest.fixture
def same_arithmetic():
    """For a test that compares this process's training with a worker's: both sum in the same order."""
    with compare_threads():
        yield


@pytest.fixture(scope="session")
def image_data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("image_data"), n_image=16, n_text=0)


def common_args(output_dir, data, **overrides):
    """Flags shared by the tests: fp32, no dropout, log every step, nothing reported."""
    data_path, image_folder = data
    args = {
        "data_path": data_path, "image_folder": image_folder, "output_dir": str(output_dir),
        "per_device_train_batch_size": 4, "learning_rate": 1e-2, "logging_steps": 1, "report_to": "none",
        "save_strategy": "no", "torch_dtype": "float32", "lora_dropout": 0.0, "seed": 0, "disable_tqdm": True,
        "dataloader_num_workers": 0, "max_length": 64, "use_cpu": True,
    }
    args.update(overrides)
    argv = []
    for key, value in args.items():
        if value is None:
            continue
        argv.append(f"--{key}")
        argv.extend(value if isinstance(value, list) else [str(value)])
    return argv


def losses(trainer_or_state_dir):
    """Per-step training losses from a Trainer or an output folder's trainer_state.json."""
    if isinstance(trainer_or_state_dir, (str, os.PathLike)):
        with open(os.path.join(trainer_or_state_dir, "trainer_state.json")) as f:
            history = json.load(f)["log_history"]
    else:
        history = trainer_or_state_dir.state.log_history
    return {h["step"]: h["loss"] for h in history if "loss" in h}


def starting_model(model_args, training_args):
    """The model a run with these arguments starts from, as `prepare` loads it (processor first, then weights)."""
    return load_model(model_args, training_args, load_processor(model_args))[0]
