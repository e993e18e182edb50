"""Where the built-in demo keeps its files (relative to the working directory, like `work_dirs/` in XTuner)."""

import os

DEMO_ROOT = os.path.join("work_dirs", "demo")
DEMO_DATA = os.path.join(DEMO_ROOT, "data")  # pretrain.json, finetune.json, images/, mmbench_dev.tsv
DEMO_PRETRAIN_JSON = os.path.join(DEMO_DATA, "pretrain.json")
DEMO_FINETUNE_JSON = os.path.join(DEMO_DATA, "finetune.json")
DEMO_IMAGES = os.path.join(DEMO_DATA, "images")
DEMO_CHAT_IMAGE = os.path.join(DEMO_IMAGES, "pretrain_000000.jpg")  # the README's chat example and the chat probes
DEMO_MMBENCH_TSV = os.path.join(DEMO_DATA, "mmbench_dev.tsv")
DEMO_BASE = os.path.join(DEMO_ROOT, "base")  # tiny random LLM (base/llm) + CLIP (base/clip) the demo starts from
DEMO_PRETRAIN = os.path.join(DEMO_ROOT, "pretrain")  # stage-1 output
DEMO_FINETUNE = os.path.join(DEMO_ROOT, "finetune")  # stage-2 output
DEMO_MMBENCH_WORK_DIR = os.path.join(DEMO_ROOT, "mmbench")  # `llava-hf mmbench` outputs for the demo model
RECIPES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes")  # installed with the package
