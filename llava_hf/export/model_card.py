"""The model card (README.md) of a shipped folder, and the training summary it is written from.

The YAML header is what the Hub indexes (`base_model`: LLM + vision tower, `library_name`, `pipeline_tag`,
`datasets`, `license`); the body says what the model is, how it was trained (each stage named as LLaVA names it,
with steps, batch size, learning rate and LoRA settings from the run's `trainer_state.json` / `adapter_config.json`),
its MMBench scores when an `mmbench_result.json` is given or sits next to the model, and a usage snippet that needs
only transformers.

The transformers releases a folder needs are stated three times from one source: the card's text, the card's
metadata (`requirements`, pip requirement strings) and `requirements.txt` next to it, which pip reads
(`pip install -r requirements.txt`). `config.json`'s `transformers_version` only records the writer's release.
"""

import json
import os

from huggingface_hub import ModelCard, ModelCardData

from ..models.llava_internlm2.checkpoint_io import looks_like_hub_id, stored_tensor_names
from ..models.adapters import adapter_base, is_adapter_folder

TRAINING_SUMMARY = "training_summary.json"
MMBENCH_RESULT = "mmbench_result.json"
REQUIREMENTS_FILE = "requirements.txt"
LICENSE_PLACEHOLDER = "other"  # set the real license before publishing (the base models' licenses apply)
# LLaVA's two stages: 1 aligns the projector to a frozen LLM (pretrain), 2 trains the LLM on instructions (finetune).
STAGE_NUMBERS = {"pretrain": 1, "finetune": 2}

USAGE_REMOTE_CODE = '''```python
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

model = AutoModelForImageTextToText.from_pretrained("{repo}", trust_remote_code=True, dtype=torch.bfloat16)
processor = AutoProcessor.from_pretrained("{repo}", trust_remote_code=True)
messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": "Describe this image."}}]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
inputs = processor(images=[Image.open("photo.jpg")], text=prompt, add_special_tokens=False, return_tensors="pt")
output = model.generate(**inputs.to(model.dtype), max_new_tokens=128, do_sample=False)
print(processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```'''

USAGE_STOCK = '''```python
import torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration

model = LlavaForConditionalGeneration.from_pretrained("{repo}", dtype=torch.bfloat16)  # < 4.56: torch_dtype=
processor = AutoProcessor.from_pretrained("{repo}")
messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": "Describe this image."}}]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
inputs = processor(images=[Image.open("photo.jpg")], text=prompt, add_special_tokens=False, return_tensors="pt")
output = model.generate(**inputs.to(model.dtype), max_new_tokens=128, do_sample=False)
print(processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

The folder is a plain `LlavaForConditionalGeneration` checkpoint, so serving stacks that support LLaVA load it
as it is, e.g. `vllm serve {repo}`.'''


def training_summary(folder: str) -> list[dict]:
    """One entry per training stage that led to `folder`, oldest first: an adapter's base folder (stage 1), then
    the folder itself; a folder `llava-hf merge` wrote carries the summary of its source."""
    saved = os.path.join(folder, TRAINING_SUMMARY)
    if os.path.isfile(saved):
        with open(saved, encoding="utf-8") as file:
            return json.load(file)
    stages = []
    if is_adapter_folder(folder):
        base = adapter_base(folder)
        if os.path.isdir(base):
            stages = training_summary(base)
    stage = _trainer_state_summary(folder)
    lora = _read_json(os.path.join(folder, "adapter_config.json"))
    if lora:
        keys = ("r", "lora_alpha", "lora_dropout", "rank_pattern", "alpha_pattern", "modules_to_save")
        stage["lora"] = {key: lora[key] for key in keys if lora.get(key) not in (None, {}, [])}
    if stage:
        stages.append({"folder": os.path.basename(os.path.normpath(folder)), "stage": training_stage(folder), **stage})
    return stages


def training_stage(folder: str) -> str:
    """"pretrain" (LLaVA's stage 1) or "finetune" (stage 2) for a folder training wrote, from what it saved (the run's
    arguments are kept only in a pickle): an adapter is a LoRA/QLoRA finetune; a model folder that stores
    language-model weights trained the LLM (a full finetune); one that stores only the projector (and perhaps the
    vision tower) kept the LLM frozen (projector alignment)."""
    if is_adapter_folder(folder):
        return "finetune"
    names = stored_tensor_names(folder) or set()
    return "finetune" if any(name.startswith("language_model.") for name in names) else "pretrain"


def write_training_summary(folder: str, summary: list[dict]) -> None:
    if summary:
        with open(os.path.join(folder, TRAINING_SUMMARY), "w", encoding="utf-8") as file:
            json.dump(summary, file, indent=2)


def _trainer_state_summary(folder: str) -> dict:
    state = _read_json(os.path.join(folder, "trainer_state.json"))
    if not state:
        return {}
    history = state.get("log_history", [])
    losses = [entry["loss"] for entry in history if "loss" in entry]
    rates = [entry["learning_rate"] for entry in history if "learning_rate" in entry]
    summary = {key: state[key] for key in ("global_step", "num_train_epochs", "train_batch_size") if key in state}
    if losses:
        summary["final_loss"] = losses[-1]
    if rates:
        summary["peak_learning_rate"] = max(rates)
    return summary


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def read_mmbench_result(path: str | None, model_folder: str | None = None) -> dict | None:
    """`path`, or the `mmbench_result.json` next to the model (in its folder or its parent), or None."""
    candidates = [path] if path else [os.path.join(d, MMBENCH_RESULT) for d in
                                      (model_folder, os.path.dirname(os.path.normpath(model_folder or "")))
                                      if d]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return _read_json(candidate)
    if path:
        raise FileNotFoundError(f"--mmbench_result {path}: no such file")
    return None


def base_models(config) -> list[str]:
    """The LLM and vision tower the model was built from, where they are Hub ids (local paths mean nothing there)."""
    sources = (getattr(config, "text_model_name_or_path", None), getattr(config, "vision_model_name_or_path", None))
    return [s for s in sources if s and "/" in s and looks_like_hub_id(s)]  # `owner/name`, never a path


def folder_requirements(stock: bool) -> list[str]:
    """What loading a shipped folder needs, as pip requirements: a stock export runs wherever stock LLaVA computes
    our pixels (`transformers4_files`), our format wherever its shipped code runs (`transformers_version`)."""
    from ..models.llava_internlm2.transformers_version import MIN_TRANSFORMERS_VERSION
    from .transformers4_files import STOCK_MIN_TRANSFORMERS_VERSION

    minimum = STOCK_MIN_TRANSFORMERS_VERSION if stock else MIN_TRANSFORMERS_VERSION
    return [f"transformers>={minimum}", "torch", "pillow"]


def _projector_description(config) -> str:
    """LLaVA-1.5's "2-layer MLP projector (gelu)", or what the config chose instead (a stock LlavaConfig has no
    choice)."""
    if getattr(config, "projector_type", "mlp2x_gelu") == "mlp2x_gelu":
        projector = f"2-layer MLP projector ({config.projector_hidden_act})"
    else:
        projector = "linear projector"
    downsample = getattr(config, "projector_downsample", None)
    return f"2x2 token downsampling ({downsample}) + {projector}" if downsample else projector


def save_model_card(card: ModelCard, folder: str) -> None:
    """`README.md`, and `requirements.txt` holding the card's `requirements`."""
    card.save(os.path.join(folder, "README.md"))
    with open(os.path.join(folder, REQUIREMENTS_FILE), "w", encoding="utf-8") as file:
        file.write("".join(f"{requirement}\n" for requirement in card.data.requirements))


def build_model_card(config, repo: str | None = None, training: list[dict] | None = None, mmbench: dict | None = None,
                     datasets=(), base_model=(), license: str = LICENSE_PLACEHOLDER, stock: bool = False) -> ModelCard:
    """The card of a folder holding `config`'s model; `repo` is the name users load it by (usage snippet).
    `stock`: the folder is a plain `LlavaForConditionalGeneration` export (no remote code)."""
    requirements = folder_requirements(stock)
    data = ModelCardData(
        base_model=list(base_model) or base_models(config) or None,
        datasets=list(datasets) or None,
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        license=license,
        tags=["llava", "llava_hf", "vision-language"],
        requirements=requirements,
    )
    text, vision = config.text_config, config.vision_config
    name = repo.rsplit("/", 1)[-1] if repo else "LLaVA model"
    lines = [
        f"# {name}",
        "",
        f"A LLaVA-style vision-language model trained with llava_hf: vision tower `{vision.model_type}` "
        f"({vision.num_hidden_layers} layers, {vision.image_size}px images, patch {vision.patch_size}) -> "
        f"{_projector_description(config)} -> language model `{text.model_type}` ({text.num_hidden_layers} "
        f"layers, hidden size {text.hidden_size}, vocabulary {text.vocab_size}).",
        "",
        f"Each image becomes {config.image_seq_length} tokens (features of vision layer "
        f"{config.vision_feature_layer}, strategy `{config.vision_feature_select_strategy}`); images are padded "
        "to a square with the image processor's mean colour, as in LLaVA-1.5.",
        "",
        "## Usage",
        "",
        (USAGE_STOCK if stock else USAGE_REMOTE_CODE).format(repo=repo or "path/to/this/folder"),
        "",
    ]
    if not stock:
        lines += ["The model code (`modeling_llava_internlm2.py` and its siblings) ships with the weights, hence "
                  "`trust_remote_code=True`; `llava-hf export-hf` writes a stock `LlavaForConditionalGeneration` "
                  "folder that needs no remote code.", ""]
    lines += _requirement_lines(requirements[0], stock)
    lines += _training_lines(training or [], datasets) + _mmbench_lines(mmbench)
    lines += ["## License", "",
              f"`{license}`: set the license before publishing; the licenses of the base models apply."
              if license == LICENSE_PLACEHOLDER else f"`{license}`; the licenses of the base models apply.", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def _requirement_lines(transformers: str, stock: bool) -> list[str]:
    if stock:
        why = ("in 4.x and 5.x alike; older releases lack `LlavaImageProcessor`'s padding of images to a square with "
               "the mean colour, which this model saw in training")
    else:
        why = ("the model code checks it when it loads and names the release it needs; with an older transformers "
               "use the stock export of this model (`llava-hf export-hf`), which needs no remote code")
    return ["## Requirements", "", f"`{transformers}` ({why}), `torch` and `pillow`; also in `{REQUIREMENTS_FILE}` "
            f"and in this card's metadata (`requirements`).", ""]


def _training_lines(stages: list[dict], datasets) -> list[str]:
    if not stages and not datasets:
        return []
    lines = ["## Training", ""]
    for stage in stages:
        facts = [f"{label} {stage[key]:g}" if isinstance(stage[key], float) else f"{label} {stage[key]}"
                 for key, label in (("global_step", "steps"), ("num_train_epochs", "epochs"),
                                    ("train_batch_size", "batch size per device"),
                                    ("peak_learning_rate", "peak learning rate"), ("final_loss", "final loss"))
                 if key in stage]
        lines.append(f"- {_stage_name(stage)}`{stage.get('folder', '?')}`: " + (", ".join(facts) or "no trainer state"))
        if "lora" in stage:
            lora = ", ".join(f"{key} {value}" for key, value in stage["lora"].items())
            lines.append(f"  - LoRA: {lora}")
    if datasets:
        lines.append("- Data: " + ", ".join(f"`{d}`" for d in datasets))
    return lines + [""]


def _stage_name(stage: dict) -> str:
    """"Stage 1 (pretrain: projector alignment), " / "Stage 2 (finetune: full|LoRA/QLoRA), "; nothing for a summary
    written before stages were recorded."""
    if stage.get("stage") not in STAGE_NUMBERS:
        return ""
    what = "projector alignment" if stage["stage"] == "pretrain" else "LoRA/QLoRA" if "lora" in stage else "full"
    return f"Stage {STAGE_NUMBERS[stage['stage']]} ({stage['stage']}: {what}), "


def _mmbench_lines(result: dict | None) -> list[str]:
    if not result:
        return []
    circular, vanilla = result.get("circular", {}), result.get("vanilla", {})
    lines = ["## MMBench", "", f"`{os.path.basename(str(result.get('data_path', 'MMBench')))}`, "
             f"{result.get('n_questions', '?')} questions, CircularEval (every rotation right) and vanilla accuracy:",
             "", "| | CircularEval % | Vanilla % |", "|---|---|---|"]
    nan = float("nan")
    lines.append(f"| Overall | {circular.get('overall', nan):.1f} | {vanilla.get('overall', nan):.1f} |")
    for name, value in circular.get("l2-category", {}).items():
        lines.append(f"| {name} | {value:.1f} | {vanilla.get('l2-category', {}).get(name, nan):.1f} |")
    return lines + [""]
