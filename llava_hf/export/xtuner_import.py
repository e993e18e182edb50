"""`llava-hf import-xtuner`: XTuner's HF-side LLaVA layout (`xtuner convert pth_to_hf` output) in our format.

XTuner keeps a trained LLaVA as parts next to the LLM and CLIP it was trained on: `projector/` (an
`nn.Sequential`, keys `model.0.*` / `model.2.*`), `llm_adapter/` and `visual_encoder_adapter/` (PEFT adapters on
the bare LLM / CLIP), or a full `llm/` (or the folder root) / `visual_encoder/` when a part was unfrozen. The
parts are checked and assembled by the inference loader (`check_xtuner_layout`, `build_from_xtuner`), then:

- by default the adapters are merged (`merge_and_unload`) and OUT is one complete model folder, as
  `llava-hf merge` writes;
- with `keep_adapters`, OUT is a training-style output: ONE PEFT adapter over our whole model (XTuner's LLM and
  ViT LoRA side by side, each with its own rank and alpha through `rank_pattern` / `alpha_pattern`) whose base is
  `OUT/base`, a stage-1-style folder holding the projector and recording the LLM and CLIP folders.

Pickled weights (`pytorch_model.bin`) are read only with `torch.load(weights_only=True)`.
"""

import os
import re

from ..errors import UserInputError
from ..dtypes import resolve_dtype
from ..inference.loading import build_from_xtuner, check_xtuner_layout
from ..models.llava_internlm2.builder import PROJECTOR_PREFIX
from ..models.adapters import PEFT_PREFIX
from .merge import DEFAULT_MAX_SHARD_SIZE, save_model_folder
from .output_folder import atomic_output_folder, check_output_folder

BASE_SUBFOLDER = "base"


def import_xtuner(out: str, llava: str, llm: str | None = None, visual_encoder: str | None = None,
                  keep_adapters: bool = False, dtype: str = "auto", max_shard_size: str = DEFAULT_MAX_SHARD_SIZE,
                  force: bool = False) -> str:
    """Write XTuner's `llava` folder (+ the `llm` and `visual_encoder` it was trained on) as our format in `out`."""
    from .model_card import build_model_card, save_model_card

    check_output_folder(out, force, inputs=[llava])
    parts = check_xtuner_layout(llm, visual_encoder, llava)  # every folder, shape and adapter, before any weight
    model, processor, peft_models = build_from_xtuner(parts, resolve_dtype(dtype))
    with atomic_output_folder(out, force, inputs=[llava]) as staging:
        if keep_adapters and peft_models:
            save_as_one_adapter(model, processor, peft_models, staging, max_shard_size)
        else:
            for peft_model in peft_models.values():
                peft_model.merge_and_unload()  # merges into the LLaVA model's backbone, in place
            save_model_folder(model.eval(), processor, staging, max_shard_size)
        save_model_card(build_model_card(model.config), staging)
    return out


def save_as_one_adapter(model, processor, peft_models: dict, folder: str, max_shard_size: str) -> None:
    """XTuner's per-backbone adapters as one PEFT adapter over `model` (in `folder`), with the unadapted model as a
    projector-only base in `folder/base` (backbones rebuilt from the recorded LLM / CLIP folders)."""
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    config = combined_lora_config(peft_models)
    weights = {}
    for attribute, peft_model in peft_models.items():
        # XTuner's names under ours; the head's <image> row is already padded (`attach_xtuner_adapter`)
        for key, tensor in get_peft_model_state_dict(peft_model, save_embedding_layers=False).items():
            weights[f"{PEFT_PREFIX}{attribute}.{key[len(PEFT_PREFIX):]}"] = tensor
        peft_model.unload()  # back to the plain backbone, in place

    base = os.path.join(folder, BASE_SUBFOLDER)
    projector = {k: v for k, v in model.state_dict().items() if k.startswith(PROJECTOR_PREFIX)}
    save_model_folder(model, processor, base, max_shard_size, state_dict=projector)
    adapted = get_peft_model(model, config)
    result = set_peft_model_state_dict(adapted, weights)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if result.unexpected_keys or missing:
        raise UserInputError(f"internal: XTuner adapters did not map onto the combined adapter "
                             f"(unexpected {result.unexpected_keys[:3]}, missing {missing[:3]})")
    adapted.peft_config["default"].base_model_name_or_path = BASE_SUBFOLDER  # relative to the adapter folder
    adapted.save_pretrained(folder, save_embedding_layers=False)  # LoRA only: the embeddings are in the base
    processor.save_pretrained(folder)


def combined_lora_config(peft_models: dict):
    """One `LoraConfig` whose targets are exactly the modules XTuner adapted, under our model's names, each part
    with its own rank and alpha."""
    from peft import LoraConfig
    from peft.tuners.lora import LoraLayer

    configs = {attribute: peft_model.peft_config["default"] for attribute, peft_model in peft_models.items()}
    patterns, rank_pattern, alpha_pattern = [], {}, {}
    for attribute, peft_model in peft_models.items():
        leaves = sorted({name.rsplit(".", 1)[-1] for name, module in peft_model.base_model.model.named_modules()
                         if isinstance(module, LoraLayer)})
        patterns.append(rf"{attribute}\.(.*\.)?({'|'.join(map(re.escape, leaves))})")
        rank_pattern[rf"{attribute}\..*"] = configs[attribute].r
        alpha_pattern[rf"{attribute}\..*"] = configs[attribute].lora_alpha
    first = next(iter(configs.values()))
    for attribute, config in configs.items():
        if config.bias != "none" or config.use_rslora or config.use_dora:
            raise UserInputError(f"--keep_adapters: the {attribute} adapter uses bias={config.bias!r}, "
                                 f"use_rslora={config.use_rslora}, use_dora={config.use_dora}; only plain LoRA is "
                                 "combined (import without --keep_adapters to merge it)")
    return LoraConfig(r=first.r, lora_alpha=first.lora_alpha, lora_dropout=first.lora_dropout, bias="none",
                      target_modules="^(" + "|".join(patterns) + ")$", rank_pattern=rank_pattern,
                      alpha_pattern=alpha_pattern)
