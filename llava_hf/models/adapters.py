"""PEFT adapter folders: where their base model is, and whether they fit it, checked before anything is merged or
loaded. Read by both `export/` (merge) and `inference/` (the loader), so it lives below both.

PEFT itself reports an adapter trained on another base as a `load_state_dict` size-mismatch dump (or not at
all, for modules the base lacks). Here every tensor is matched to its module first and the first misfit is one
line naming the adapter file, the tensor and the module. The check runs on a meta-device skeleton of the base
(`skeleton`), so a wrong adapter fails in seconds, before gigabytes of base weights are read.
"""

import os

import torch

from transformers.utils import ADAPTER_CONFIG_NAME as ADAPTER_CONFIG
from transformers.utils import ADAPTER_SAFE_WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME

from ..errors import UserInputError
from .llava_internlm2.checkpoint_io import resolve_recorded_path

ADAPTER_WEIGHTS = (ADAPTER_SAFE_WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME)
PEFT_PREFIX = "base_model.model."
LORA_SUFFIXES = {".lora_A.weight": "in_features", ".lora_B.weight": "out_features"}


def is_adapter_folder(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, ADAPTER_CONFIG))


def adapter_base(folder: str) -> str:
    """The adapter's `base_model_name_or_path`: absolute, relative to the adapter folder, relative to the working
    directory (PEFT's own meaning, and what adapters saved before paths were made absolute recorded), or a Hub id.
    A recorded local path that does not exist is an error naming the field and the path."""
    from peft import PeftConfig

    base = PeftConfig.from_pretrained(folder).base_model_name_or_path
    field = f"{ADAPTER_CONFIG} base_model_name_or_path"
    if not base:
        raise UserInputError(f"{folder}: {field} is not set, so the adapter's base model is unknown")
    if not os.path.isabs(base) and not os.path.exists(os.path.join(folder, base)) and os.path.isdir(base):
        return os.path.abspath(base)
    try:
        return resolve_recorded_path(folder, field, base)
    except (OSError, ValueError) as error:
        raise UserInputError(str(error)) from None


def adapter_weights_file(folder: str) -> str:
    for name in ADAPTER_WEIGHTS:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise UserInputError(f"{folder} has {ADAPTER_CONFIG} but no {' or '.join(ADAPTER_WEIGHTS)}")


def read_adapter_weights(folder: str) -> dict[str, torch.Tensor]:
    """The adapter's tensors as PEFT saved them (a `.bin` only through `weights_only=True`)."""
    from peft.utils import load_peft_weights

    adapter_weights_file(folder)
    return load_peft_weights(folder, device="cpu")


def check_adapter_fits(model: torch.nn.Module, folder: str, weights: dict | None = None) -> None:
    """Raise `UserInputError` unless every adapter tensor has a module or parameter in `model` with the shape it
    needs: LoRA A/B matrices against the wrapped layer's in/out features, the rest (`modules_to_save` copies such
    as our projector) against the parameter of the same name."""
    weights = read_adapter_weights(folder) if weights is None else weights
    source = adapter_weights_file(folder)
    state = model.state_dict()
    for key, tensor in weights.items():
        name = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
        suffix = next((s for s in LORA_SUFFIXES if name.endswith(s)), None)
        if suffix is None:
            if name not in state:
                raise UserInputError(f"{source}: tensor `{key}` has no parameter `{name}` in the base model "
                                     f"({type(model).__name__}): the adapter was trained on another base model")
            expected = tuple(state[name].shape)
            if tuple(tensor.shape) != expected:
                raise UserInputError(f"{source}: tensor `{key}` has shape {tuple(tensor.shape)}, but the base model's "
                                     f"`{name}` has {expected}: the adapter was trained on another base model")
            continue
        module_name = name[: -len(suffix)]
        try:
            module = model.get_submodule(module_name)
        except AttributeError:
            raise UserInputError(f"{source}: tensor `{key}` adapts `{module_name}`, which the base model "
                                 f"({type(model).__name__}) does not have: the adapter was trained on another base "
                                 "model") from None
        feature = LORA_SUFFIXES[suffix]
        size = getattr(module, feature, None)
        found = tensor.shape[1] if feature == "in_features" else tensor.shape[0]
        if size is not None and found != size:
            raise UserInputError(f"{source}: tensor `{key}` has shape {tuple(tensor.shape)}, but the base model's "
                                 f"`{module_name}` has {feature}={size}: the adapter was trained on another base model")


def skeleton(build):
    """A model without memory (`build()` on the meta device): module names and shapes only, for `check_adapter_fits`
    before the real weights are read."""
    with torch.device("meta"):
        return build()


def bare_backbone_from_config(attribute: str, folder: str):
    """A randomly initialised bare LLM (`language_model`) or vision encoder (`vision_tower`: CLIP, SigLIP, ...; a
    two-tower folder's vision side, whole) with `folder`'s config: what XTuner's adapters and the plain
    `llava-hf merge BASE ADAPTER OUT` form are trained on."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from .vision_encoders import vision_config_from_pretrained

    if attribute == "vision_tower":
        return AutoModel.from_config(vision_config_from_pretrained(folder, pooling_head=True))
    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
