"""The built-in demo's inputs: synthetic shapes data and a tiny random InternLM2 + CLIP, made on first use, and
the stage's recipe with the demo's paths filled in.

`accelerate launch examples/train.py --stage pretrain` with no data or model arguments calls this, then trains
with `recipes/demo_pretrain.yaml`; `--stage finetune` continues from the stage-1 output.
"""

import os

from accelerate import PartialState

from ..errors import UserInputError
from . import paths

N_PRETRAIN = 3000
N_FINETUNE = 3000
N_EVAL_QUESTIONS = 100
# 56 px / patch 14 = 16 image tokens: colours and shapes stay visible and each stage (4 + 3 epochs) takes
# under 2 minutes on 2 CPU cores (112 px quadruples the vision cost without helping the tiny model).
DEMO_MODEL = dict(image_size=56, patch_size=14, text_hidden_size=128, text_layers=2, vision_hidden_size=64,
                  vision_layers=2)


def recipe_path(stage: str) -> str:
    """The demo's recipe file for `stage` (hyperparameters only; `demo_recipe` adds the paths)."""
    return os.path.join(paths.RECIPES, f"demo_{stage}.yaml")


def demo_recipe(stage: str) -> dict:
    """The stage's recipe with the demo's data, models and output folder, all from `paths`."""
    from ..train.arguments import load_recipe

    recipe = load_recipe(recipe_path(stage))
    recipe.update(image_folder=[paths.DEMO_IMAGES], output_dir=paths.DEMO_PRETRAIN if stage == "pretrain"
                  else paths.DEMO_FINETUNE)
    if stage == "pretrain":
        recipe.update(data_path=[paths.DEMO_PRETRAIN_JSON], llm_name_or_path=os.path.join(paths.DEMO_BASE, "llm"),
                      vision_tower_name_or_path=os.path.join(paths.DEMO_BASE, "clip"))
    else:
        recipe.update(data_path=[paths.DEMO_FINETUNE_JSON], model_name_or_path=paths.DEMO_PRETRAIN,
                      eval_chat_image=paths.DEMO_CHAT_IMAGE)
    return recipe


def prepare_demo(stage: str) -> None:
    """Create whatever the stage needs and is missing; only the main process writes."""
    state = PartialState()
    with state.main_process_first():
        if not state.is_main_process:
            return
        if not os.path.isfile(paths.DEMO_MMBENCH_TSV):
            from .synthetic import make_synthetic_dataset, make_synthetic_mmbench_tsv

            print(f"demo: drawing synthetic shapes into {paths.DEMO_DATA}", flush=True)
            make_synthetic_dataset(paths.DEMO_DATA, N_PRETRAIN, N_FINETUNE, seed=0)
            make_synthetic_mmbench_tsv(paths.DEMO_MMBENCH_TSV, N_EVAL_QUESTIONS, seed=1)
        if stage == "pretrain" and not os.path.isfile(os.path.join(paths.DEMO_BASE, "llm", "config.json")):
            from ..testing import build_tiny_llava

            print(f"demo: building a tiny random InternLM2 + CLIP in {paths.DEMO_BASE}", flush=True)
            build_tiny_llava(save_dir=paths.DEMO_BASE, **DEMO_MODEL)
        if stage == "finetune" and not os.path.isfile(os.path.join(paths.DEMO_PRETRAIN, "config.json")):
            raise UserInputError(
                f"demo: {paths.DEMO_PRETRAIN} is missing; run `accelerate launch examples/train.py --stage pretrain` first"
            )
