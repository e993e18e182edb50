"""Model cards: each training stage named as LLaVA names it (stage 1 = pretrain, projector alignment; stage 2 =
finetune) for a stage-1 folder, a LoRA finetune and a full finetune; and the transformers releases a folder needs,
stated in the card's text, its metadata and requirements.txt, from the same minimum the shipped code checks."""

import importlib.metadata

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from transformers import CLIPVisionConfig

from llava_hf.export.model_card import build_model_card, save_model_card, training_summary
from llava_hf.export.transformers4_files import STOCK_MIN_TRANSFORMERS_VERSION
from llava_hf.models.internlm2 import InternLM2Config
from llava_hf.models.llava_internlm2 import LlavaInternLM2Config
from llava_hf.models.llava_internlm2.transformers_version import MIN_TRANSFORMERS_VERSION
from llava_hf.train import parse_args, train
from tests.export.shipping_helpers import train_argv


def training_lines(folder) -> list[str]:
    card = str(build_model_card(tiny_config(), training=training_summary(str(folder))))
    return [line for line in card.splitlines() if line.startswith("- ") and "steps" in line]


def tiny_config() -> LlavaInternLM2Config:
    text = InternLM2Config(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2)
    vision = CLIPVisionConfig(image_size=28, patch_size=14, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2)
    return LlavaInternLM2Config(text_config=text, vision_config=vision, image_token_id=99)


@pytest.fixture(scope="module")
def full_finetune(trained):
    """A full finetune of the stage-1 folder (what `--stage finetune` does by default)."""
    output = trained / "full"
    if not (output / "trainer_state.json").is_file():
        train(*parse_args(train_argv(output, trained / "data" / "finetune.json", trained / "data" / "images",
                                     stage="finetune", model_name_or_path=trained / "stage1", max_steps=1)))
    return output


def test_stage1_and_lora_folders_name_their_stages(trained):
    [stage1] = training_lines(trained / "stage1")
    assert stage1.startswith("- Stage 1 (pretrain: projector alignment), `stage1`: steps 2, epochs 1"), stage1
    stage1, lora = training_lines(trained / "lora")
    assert stage1.startswith("- Stage 1 (pretrain: projector alignment), `stage1`: steps 2")
    assert lora.startswith("- Stage 2 (finetune: LoRA/QLoRA), `lora`: steps 2")


def test_a_full_finetune_is_stage_2(full_finetune):
    [line] = training_lines(full_finetune)
    assert line.startswith("- Stage 2 (finetune: full), `full`: steps 1"), line


def test_a_summary_written_before_stages_were_recorded_names_none():
    card = str(build_model_card(tiny_config(), training=[{"folder": "old", "global_step": 3}]))
    assert "- `old`: steps 3" in card and "Stage" not in card


@pytest.mark.parametrize("stock, minimum", [(True, STOCK_MIN_TRANSFORMERS_VERSION), (False, MIN_TRANSFORMERS_VERSION)])
def test_cards_state_the_transformers_they_need(stock, minimum, tmp_path):
    save_model_card(build_model_card(tiny_config(), stock=stock), str(tmp_path))
    card = (tmp_path / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["requirements"] == [f"transformers>={minimum}", "torch", "pillow"]
    assert (tmp_path / "requirements.txt").read_text().splitlines() == metadata["requirements"]
    assert f"## Requirements\n\n`transformers>={minimum}` (" in card


def test_remote_code_minimum_is_the_package_minimum():
    """The shipped code checks the same minimum the package declares (pyproject.toml)."""
    [declared] = [Requirement(r) for r in importlib.metadata.requires("llava_hf") if r.startswith("transformers")]
    [lower] = [spec.version for spec in declared.specifier if spec.operator == ">="]
    assert Version(MIN_TRANSFORMERS_VERSION) == Version(lower)
