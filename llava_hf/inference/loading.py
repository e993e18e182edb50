"""One loader for everything that runs a trained model (chat, the web demo, MMBench).

It accepts every folder our tools write, so users never merge adapters just to try a checkpoint:

* a full model folder (`config.json` with `model_type: llava_internlm2`, stage-1 outputs included);
* a training output holding a PEFT adapter whose `base_model_name_or_path` is such a folder;
* XTuner's triple: an LLM folder, a CLIP folder, and a `--llava` folder with `projector/` and optional
  `llm_adapter/`, `visual_encoder_adapter/` (and `visual_encoder/`, which then replaces the CLIP folder).

Every user mistake becomes a `UserInputError` with one line naming the folder, raised before weights load.
"""

import json
import os
import re

import torch

from ..models.quantization import bnb_config
from .errors import UserInputError

LLAVA_MODEL_TYPE = "llava_internlm2"
ADAPTER_CONFIG = "adapter_config.json"
DTYPES = {
    "auto": "auto",
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
}
# XTuner's ProjectorModel is `nn.Sequential(Linear, GELU, Linear)`; ours names the two linears.
XTUNER_PROJECTOR_KEYS = {"model.0.": "linear_1.", "model.2.": "linear_2."}


def load_model_and_processor(model_name_or_path, *, visual_encoder=None, llava=None, torch_dtype=None, bits=None,
                             device_map=None):
    """(model in eval mode, processor) for any folder our tools produce; see the module docstring.

    `torch_dtype` is a `torch.dtype` or one of `DTYPES`' names; `bits` is None, 4 (NF4, double quant) or 8.
    """
    dtype = resolve_dtype(torch_dtype)
    quantization_config = quantization_config_for(bits, dtype)
    if quantization_config is not None and device_map is None:
        device_map = "auto"
    options = {"dtype": dtype, "device_map": device_map, "quantization_config": quantization_config}
    if visual_encoder is not None or llava is not None:
        if quantization_config is not None:
            raise UserInputError("--bits is not supported with the XTuner-style LLM + --visual-encoder + --llava "
                                 "triple; export it to one model folder first")
        model, processor = load_xtuner_triple(model_name_or_path, visual_encoder, llava, dtype, device_map)
    elif os.path.isfile(os.path.join(str(model_name_or_path), ADAPTER_CONFIG)):
        model, processor = load_adapter_output(model_name_or_path, options)
    else:
        model, processor = load_model_folder(model_name_or_path, options)
    return model.eval(), processor


def resolve_dtype(torch_dtype):
    if torch_dtype is None or isinstance(torch_dtype, torch.dtype):
        return torch_dtype
    if torch_dtype not in DTYPES:
        raise UserInputError(f"unknown torch dtype {torch_dtype!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[torch_dtype]


def quantization_config_for(bits, dtype=None):
    """bitsandbytes settings for `bits` (see `llava_hf.models.quantization`), as a one-line user error."""
    try:
        return bnb_config(bits, dtype)
    except ValueError as error:
        raise UserInputError(str(error)) from None


def read_model_type(folder) -> str | None:
    """`model_type` from a local folder's config.json (None when it has none); hub ids are not checked here."""
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        return None
    try:
        with open(config_path, encoding="utf-8") as file:
            return json.load(file).get("model_type")
    except (OSError, ValueError) as error:
        raise UserInputError(f"cannot read {config_path}: {error}") from None


def looks_like_hub_id(name: str) -> bool:
    """`owner/name` that is not a local path: left to the Auto classes (nothing else downloads)."""
    return re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not name.startswith(".") and not os.path.exists(name)


def check_llava_folder(folder):
    if not os.path.isdir(folder):
        if not looks_like_hub_id(folder):
            raise UserInputError(f"model folder not found: {folder}")
        return
    model_type = read_model_type(folder)
    if model_type != LLAVA_MODEL_TYPE:
        found = f"its config.json has model_type {model_type!r}" if model_type else "it has no config.json"
        hint = " (an LLM: add --visual-encoder CLIP --llava DIR for an XTuner-style model)" if model_type else ""
        raise UserInputError(f"{folder} is not a LLaVA model folder: {found}{hint}")


def load_model_folder(folder, options):
    """A full `llava_internlm2` folder (merged, or stage-1 projector-only) through the Auto classes."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = str(folder)
    check_llava_folder(folder)
    try:
        model = AutoModelForImageTextToText.from_pretrained(folder, **options)
        return model, AutoProcessor.from_pretrained(folder)
    except OSError as error:
        if os.path.isdir(folder):
            raise
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserInputError(f"{folder}: not a local folder, and not loadable from the Hub ({reason})") from None


def load_adapter_output(folder, options):
    """A training output with one PEFT adapter (LLM LoRA, ViT LoRA, projector): applied on the fly, not merged."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoProcessor

    folder = str(folder)
    base = PeftConfig.from_pretrained(folder).base_model_name_or_path
    if not base:
        raise UserInputError(f"{os.path.join(folder, ADAPTER_CONFIG)} names no base_model_name_or_path")
    if not os.path.isdir(base) and os.path.isdir(os.path.join(folder, base)):
        base = os.path.join(folder, base)  # a path relative to the adapter folder
    model, base_processor = load_model_folder(base, options)
    # PEFT injects the LoRA layers (and the trained projector copy) into `model` in place; callers keep
    # the LLaVA class, its `generate` and its config, with the adapter active.
    PeftModel.from_pretrained(model, folder)
    has_processor = any(os.path.isfile(os.path.join(folder, name))
                        for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"))
    return model, AutoProcessor.from_pretrained(folder) if has_processor else base_processor


def load_xtuner_triple(llm, visual_encoder, llava, dtype, device_map):
    """XTuner's `xtuner chat LLM --visual-encoder CLIP --llava DIR` layout, rebuilt as our model class."""
    from llava_hf.models.llava_internlm2.builder import build_llava_from_pretrained

    if llava is None or not os.path.isdir(llava):
        raise UserInputError(f"--llava folder not found: {llava}" if llava else "the XTuner-style triple needs --llava DIR")
    bundled_encoder = os.path.join(llava, "visual_encoder")
    if os.path.isdir(bundled_encoder):
        if visual_encoder is not None:
            raise UserInputError(f"{llava} has its own visual_encoder/; drop --visual-encoder")
        visual_encoder = bundled_encoder
    if visual_encoder is None:
        raise UserInputError(f"{llava} has no visual_encoder/; pass --visual-encoder CLIP_FOLDER")
    for name, folder in (("LLM", llm), ("--visual-encoder", visual_encoder)):
        if not os.path.isdir(folder):
            raise UserInputError(f"{name} folder not found: {folder}")
    projector = os.path.join(llava, "projector")
    if not os.path.isdir(projector):
        raise UserInputError(f"{llava} has no projector/ folder (expected XTuner's pth_to_hf output)")

    model, processor = build_llava_from_pretrained(llm, visual_encoder, dtype=dtype)
    model.multi_modal_projector.load_state_dict(read_xtuner_projector(projector))
    # XTuner trained each adapter on the bare LLM / ViT: attach them there. PEFT injects the LoRA layers into
    # the module in place, so the LLaVA model keeps its own class and `generate`.
    for adapter, module in (("llm_adapter", model.language_model), ("visual_encoder_adapter", model.vision_tower)):
        if os.path.isdir(os.path.join(llava, adapter)):
            attach_xtuner_adapter(module, os.path.join(llava, adapter))
    if device_map is not None:
        model = model.to(single_device(device_map))
    return model, processor


def attach_xtuner_adapter(module, folder):
    """`PeftModel.from_pretrained(module, folder)`, tolerating the one vocabulary row our builder adds.

    XTuner's LLM LoRA also covers InternLM2's `output` head, trained without the `<image>` row; that row gets
    a zero LoRA update (the model never has to predict `<image>`).
    """
    from peft import PeftConfig, PeftModel, set_peft_model_state_dict
    from peft.utils import load_peft_weights

    peft_model = PeftModel(module, PeftConfig.from_pretrained(folder))  # injects LoRA layers into `module`
    weights = load_peft_weights(folder, device="cpu")
    for key, tensor in weights.items():
        if key.endswith(".lora_B.weight"):
            layer = peft_model.base_model.model.get_submodule(key[len("base_model.model."):-len(".lora_B.weight")])
            missing_rows = layer.out_features - tensor.shape[0]
            if missing_rows > 0:
                weights[key] = torch.cat([tensor, tensor.new_zeros(missing_rows, *tensor.shape[1:])])
    result = set_peft_model_state_dict(peft_model, weights)
    if result.unexpected_keys:
        raise UserInputError(f"{folder}: adapter weights for modules the model lacks: {result.unexpected_keys[:3]}")
    peft_model.eval()


def single_device(device_map) -> str | torch.device:
    """Where a model built in memory goes for `device_map` (`"auto"`: the GPU when there is one)."""
    if isinstance(device_map, dict) and len(set(device_map.values())) == 1:
        device_map = next(iter(device_map.values()))
    if isinstance(device_map, int):
        return torch.device("cuda", device_map)
    if device_map == "auto" or isinstance(device_map, dict):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device_map


def read_xtuner_projector(folder) -> dict:
    """XTuner `ProjectorModel` weights (`model.0.*`, `model.2.*`) renamed to our projector's `linear_1/2`."""
    safetensors_path = os.path.join(folder, "model.safetensors")
    bin_path = os.path.join(folder, "pytorch_model.bin")
    if os.path.isfile(safetensors_path):
        from safetensors.torch import load_file

        state_dict = load_file(safetensors_path)
    elif os.path.isfile(bin_path):
        state_dict = torch.load(bin_path, map_location="cpu", weights_only=True)
    else:
        raise UserInputError(f"{folder} holds neither model.safetensors nor pytorch_model.bin")
    renamed = {}
    for key, tensor in state_dict.items():
        prefix = next((p for p in XTUNER_PROJECTOR_KEYS if key.startswith(p)), None)
        if prefix is None:
            raise UserInputError(f"{folder}: unexpected projector weight {key!r} (expected model.0.* and model.2.*)")
        renamed[XTUNER_PROJECTOR_KEYS[prefix] + key[len(prefix):]] = tensor
    return renamed
