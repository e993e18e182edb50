"""Fixtures for the shipping tests: real training outputs (stage 1, then LLM + ViT LoRA with a checkpoint), a fixed
image + prompt, and a runner for scripts in a Python where `import llava_hf` fails (what a Hub user has)."""

import subprocess
import sys

import pytest
from PIL import Image

from llava_hf.testing import build_tiny_llava
from tests.arithmetic import compare_env
from tests.export.shipping_helpers import HIDE_LLAVA_HF, TINY, train_argv


@pytest.fixture(scope="session")
def run_without_llava_hf(tmp_path_factory):
    """`run(script, *args, cwd=None, pythonpath=None)`: the script's stdout; it runs with PYTHONPATH cleared (or set to
    `pythonpath`, e.g. another transformers release from `transformers_envs`), `python -P`, a cwd outside the
    repository and its own HF_MODULES_CACHE, so only what a folder ships can be imported."""

    def run(script: str, *args, cwd=None, pythonpath=None) -> str:
        work = tmp_path_factory.mktemp("without_llava_hf")
        (work / "script.py").write_text(HIDE_LLAVA_HF + script)
        env = compare_env(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(work / "modules"), TRANSFORMERS_VERBOSITY="error")
        env.pop("PYTHONPATH", None)
        if pythonpath is not None:
            env["PYTHONPATH"] = str(pythonpath)
        result = subprocess.run([sys.executable, "-P", str(work / "script.py"), *map(str, args)], cwd=cwd or work,
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-4000:]
        return result.stdout

    return run


@pytest.fixture(scope="session")
def image():
    """Landscape, so padding to a square matters; a gradient, so resizing matters."""
    picture = Image.new("RGB", (40, 26))
    picture.putdata([(6 * x, 9 * y, 120) for y in range(26) for x in range(40)])
    return picture


@pytest.fixture(scope="session")
def tiny_parts(tmp_path_factory, tiny_tokenizer_dir):
    """`parts/llm` (InternLM2 + tokenizer) and `parts/clip`, and the LLaVA model built from them."""
    parts = tmp_path_factory.mktemp("parts")
    model, processor = build_tiny_llava(save_dir=str(parts), tokenizer_dir=tiny_tokenizer_dir, **TINY)
    return parts, model.eval(), processor


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_parts):
    """What training writes: `stage1/` (projector only, sources recorded), `lora/` (one adapter: LLM + ViT LoRA,
    projector in modules_to_save, base = stage1/) and its `lora/checkpoint-2/`."""
    from llava_hf.demo.synthetic import make_synthetic_dataset
    from llava_hf.train import parse_args, train

    parts = tiny_parts[0]
    root = tmp_path_factory.mktemp("trained")
    data = make_synthetic_dataset(str(root / "data"), n_pretrain=8, n_finetune=8)
    train(*parse_args(train_argv(root / "stage1", data["pretrain_json"], data["image_folder"], stage="pretrain",
                                 llm_name_or_path=parts / "llm", vision_tower_name_or_path=parts / "clip")))
    train(*parse_args(train_argv(root / "lora", data["finetune_json"], data["image_folder"], stage="finetune",
                                 model_name_or_path=root / "stage1", tune_llm="lora", lora_r=4, lora_alpha=8,
                                 tune_vision_tower="lora", vision_lora_r=2, vision_lora_alpha=4,
                                 save_strategy="steps", save_steps=2)))
    return root
