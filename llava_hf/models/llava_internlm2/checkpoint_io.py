"""Checkpoint plumbing for LLaVA-InternLM2, in one place.

- where a folder's tensors are (`weight_files`, `stored_tensor_names`: safetensors shards + index, or one file);
- one reader for every checkpoint file (`read_tensors`): safetensors, and `pytorch_model.bin` (XTuner's folders)
  only through `torch.load(weights_only=True)`, never as an arbitrary pickle;
- strict copying of tensors into a model (`copy_tensors_into`), also when DeepSpeed ZeRO-3 partitioned it;
- folders that leave the frozen backbones out (stage-1 checkpoints hold only the projector): the backbones are
  rebuilt from the sources the config records (`rebuild_from_sources`), and a folder that lacks weights and
  cannot be rebuilt raises instead of coming up with randomly initialised backbones (`checked_from_pretrained`).

Like the modeling file, this one imports only torch, safetensors and transformers, so `save_pretrained` copies it
next to the weights for `trust_remote_code=True` users without llava_hf.
"""

import contextlib
import copy
import importlib
import json
import os
import re

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoModel, GenerationConfig
from transformers.utils import GENERATION_CONFIG_NAME

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
WEIGHTS_NAME = "pytorch_model.bin"
WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
# The parts a checkpoint may leave out, and the config field that records where each comes from.
BACKBONE_SOURCES = {"language_model": "text_model_name_or_path", "vision_tower": "vision_model_name_or_path"}
# `from_pretrained` keyword arguments that only concern downloading; meaningless for a local folder.
_HUB_KWARGS = ("_from_auto", "trust_remote_code", "adapter_kwargs", "revision", "token", "cache_dir",
               "local_files_only", "force_download", "proxies", "subfolder", "code_revision", "_commit_hash")


def _find_checkpoint(folder: str) -> tuple[dict | None, list[str]]:
    """(its index's `weight_map`, or None for a single file; the checkpoint files) of a local folder, safetensors
    preferred; (None, []) when it holds no checkpoint."""
    for index_name, single_name in ((SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME), (WEIGHTS_INDEX_NAME, WEIGHTS_NAME)):
        index = os.path.join(folder, index_name)
        if os.path.isfile(index):
            with open(index, encoding="utf-8") as file:
                weight_map = json.load(file)["weight_map"]
            return weight_map, [os.path.join(folder, shard) for shard in sorted(set(weight_map.values()))]
        if os.path.isfile(os.path.join(folder, single_name)):
            return None, [os.path.join(folder, single_name)]
    return None, []


def weight_files(folder: str) -> list[str]:
    """A local folder's checkpoint files (safetensors preferred): the shards its index lists, or the single file;
    empty when it has none."""
    return _find_checkpoint(folder)[1]


def stored_tensor_names(folder: str) -> set[str] | None:
    """Names of the tensors a local folder stores (from the index or the safetensors header, no data read but a
    single `.bin`'s); None when the folder holds no checkpoint."""
    weight_map, files = _find_checkpoint(folder)
    if weight_map is not None:
        return set(weight_map)
    if not files:
        return None
    names = set()
    for path in files:
        if path.endswith(".safetensors"):
            with safe_open(path, framework="pt") as file:
                names.update(file.keys())
        else:
            names.update(read_tensors(path))
    return names


def read_tensors(path: str) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint file, or of a folder's checkpoint (see `weight_files`), on the CPU."""
    files = weight_files(path) if os.path.isdir(path) else [path] if os.path.isfile(path) else []
    if not files:
        what = "holds no checkpoint" if os.path.isdir(path) else "does not exist"
        raise FileNotFoundError(
            f"{path} {what} (expected {SAFE_WEIGHTS_NAME}, {SAFE_WEIGHTS_INDEX_NAME} + shards, or {WEIGHTS_NAME})"
        )
    tensors = {}
    for file in files:
        if file.endswith(".safetensors"):
            tensors.update(load_file(file))
        else:  # a pickle: tensors and plain containers only
            tensors.update(torch.load(file, map_location="cpu", weights_only=True))
    return tensors


def full_shape(tensor: torch.Tensor) -> torch.Size:
    """A parameter's real shape, also when DeepSpeed ZeRO-3 partitioned it at construction (the local tensor is
    then empty and the shape is in `ds_shape`)."""
    return getattr(tensor, "ds_shape", tensor.shape)


@contextlib.contextmanager
def gathered_for_update(tensors):
    """Whole ZeRO-3-partitioned tensors for the block; what rank 0 writes is partitioned back on exit. Every rank
    must enter it in the same order. Without ZeRO-3 it does nothing."""
    partitioned = [t for t in tensors if hasattr(t, "ds_id")]
    if not partitioned:
        yield
        return
    # Not a plain `import`: remote-code loading would then demand deepspeed from every user of a saved folder.
    deepspeed = importlib.import_module("deepspeed")
    with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=0):
        yield


def copy_tensors_into(module: torch.nn.Module, tensors: dict, source: str, require_all_under: str | None = None):
    """Copy each tensor into `module`'s parameter or buffer of the same name. Every name and shape is checked
    first, so a stray name or a wrong shape raises (naming the tensor and `source`) with nothing copied. With
    `require_all_under`, every state-dict entry whose name starts with it must be among `tensors`."""
    state = module.state_dict(keep_vars=True)
    for name, tensor in tensors.items():
        if name not in state:
            raise ValueError(f"{source}: tensor `{name}` matches no parameter of {type(module).__name__}")
        if tensor.shape != full_shape(state[name]):
            raise ValueError(
                f"{source}: tensor `{name}` has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(full_shape(state[name]))}"
            )
    if require_all_under is not None:
        missing = sorted(name for name in state if name.startswith(require_all_under) and name not in tensors)
        if missing:
            raise ValueError(f"{source}: missing tensors {missing}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            with gathered_for_update([state[name]]):
                state[name].copy_(tensor)


def looks_like_hub_id(name: str) -> bool:
    """`owner/name` (or a bare `name`) that is not a path: left to `from_pretrained` and the Hub cache."""
    return re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is not None and not name.startswith(".")


def is_hub_id(name) -> bool:
    """Whether `name`, not a local folder, is left to the Hub: `owner/name` in the shape `looks_like_hub_id` accepts,
    unless `owner` exists here (`work_dirs/finetun` is a mistyped local path, not a Hub repository)."""
    name = os.fspath(name)
    return "/" in name and looks_like_hub_id(name) and not os.path.exists(name.split("/", 1)[0])


def resolve_recorded_path(folder: str, field: str, value: str | None) -> str:
    """Where a path recorded in `folder` (a config or adapter field) points: an absolute path, a path relative to
    `folder`, or a Hub id. A local path that does not exist is an error naming the field and the path."""
    if not value:
        raise ValueError(f"{folder}: {field} is not set")
    if os.path.isabs(value):
        if not os.path.exists(value):
            raise FileNotFoundError(f"{folder}: {field} = {value} does not exist")
        return value
    relative = os.path.join(folder, value)
    if os.path.exists(relative):
        return relative
    if looks_like_hub_id(value):
        return value
    raise FileNotFoundError(f"{folder}: {field} = {value!r} does not exist (relative paths are read from {folder})")


def missing_backbones(name_or_path) -> list[str]:
    """The backbones (`language_model`, `vision_tower`) a local folder's weights leave out; [] for a complete
    folder, and for anything that is not a local folder with weights (checked after loading instead)."""
    folder = os.fspath(name_or_path)
    names = stored_tensor_names(folder) if os.path.isdir(folder) else None
    if names is None:
        return []
    stored_parts = {name.split(".", 1)[0] for name in names}
    return [part for part in BACKBONE_SOURCES if part not in stored_parts]


def checked_from_pretrained(from_pretrained, name_or_path, *model_args, **kwargs):
    """`from_pretrained` (the transformers one) that refuses to return a model with weights the checkpoint did
    not hold: transformers would initialise them randomly (a stage-1 folder from the Hub would come up with
    random backbones). A local folder's model records its absolute path (adapters saved on top name it)."""
    output_loading_info = kwargs.pop("output_loading_info", False)
    model, loading_info = from_pretrained(name_or_path, *model_args, output_loading_info=True, **kwargs)
    missing = sorted(loading_info["missing_keys"])
    local = os.path.isdir(os.fspath(name_or_path))
    if missing:
        parts = sorted({key.split(".", 1)[0] for key in missing})
        hint = ("the folder is incomplete (an interrupted copy or save?)" if local else
                "backbones left out of a checkpoint are rebuilt from config.text_model_name_or_path / "
                "vision_model_name_or_path only for a local folder: download it first, or publish a self-contained "
                "folder (`llava-hf merge` / `llava-hf publish`)")
        raise ValueError(f"{name_or_path}: the checkpoint has no weights for {parts} ({len(missing)} tensors, e.g. "
                         f"`{missing[0]}`); {hint}")
    if local:
        model.name_or_path = model.config.name_or_path = os.path.abspath(os.fspath(name_or_path))
    return (model, loading_info) if output_loading_info else model


def rebuild_from_sources(cls, folder, missing, causal_lm_class, config=None, dtype=None, torch_dtype=None,
                         attn_implementation=None, device_map=None, quantization_config=None, **kwargs):
    """Load a local checkpoint that leaves out the `missing` backbones: each is loaded from the source its config
    records (absolute, relative to `folder`, or a Hub id), the other parts are built empty, and the folder's
    tensors are copied on top (strictly). `causal_lm_class(text_config)` is the class that loads the LLM."""
    for name in _HUB_KWARGS:
        kwargs.pop(name, None)
    if kwargs:
        raise TypeError(f"{folder}: {sorted(kwargs)} not supported when rebuilding a checkpoint without backbones")
    config = config if config is not None else cls.config_class.from_pretrained(folder)
    dtype = dtype if dtype is not None else torch_dtype
    load_kwargs = {"dtype": dtype} if dtype is not None else {}
    if attn_implementation is not None:
        load_kwargs["attn_implementation"] = attn_implementation
    device = single_device(device_map, folder)
    if device is not None:
        load_kwargs["device_map"] = {"": device}

    sources = {}
    for part in missing:
        field = BACKBONE_SOURCES[part]
        try:
            sources[part] = resolve_recorded_path(folder, f"config.{field}", getattr(config, field))
        except ValueError:
            raise ValueError(
                f"{folder}: the weights have no `{part}.*` tensors and config.{field} is not set, so the {part} "
                "cannot be rebuilt; save the full model or record where the backbone comes from"
            ) from None
    language_model = vision_tower = None
    if "language_model" in sources:
        lm_kwargs = dict(load_kwargs, **({"quantization_config": quantization_config} if quantization_config else {}))
        language_model = _load_source(causal_lm_class(config.text_config), sources["language_model"],
                                      folder, "config.text_model_name_or_path", lm_kwargs)
    if "vision_tower" in sources:
        try:
            vision_tower = vision_encoder_from_pretrained(sources["vision_tower"], config.vision_config, **load_kwargs)
        except OSError as error:
            raise OSError(f"{folder}: config.vision_model_name_or_path = {sources['vision_tower']}: cannot be loaded "
                          f"({_first_line(error)})") from None
    # A part the folder stores is built empty, in the asked dtype (or the loaded backbone's), then filled.
    if not isinstance(dtype, torch.dtype):
        dtype = next(part.dtype for part in (language_model, vision_tower) if part is not None)
    model = cls.from_backbones(config, language_model=language_model, vision_tower=vision_tower, dtype=dtype)
    copy_tensors_into(model, read_tensors(folder), folder)
    if device is not None and quantization_config is None:
        model.to(device)  # a part built from the config above starts on the CPU
    # As `from_pretrained` does: the folder's generation settings (the chat's stop tokens), and PEFT records the folder
    # as the adapter's base model.
    if os.path.isfile(os.path.join(folder, GENERATION_CONFIG_NAME)):
        model.generation_config = GenerationConfig.from_pretrained(folder)
    model.name_or_path = model.config.name_or_path = os.path.abspath(folder)
    return model.eval()


def _load_source(model_class, source, folder, field, kwargs):
    try:
        return model_class.from_pretrained(source, **kwargs)
    except OSError as error:
        raise OSError(f"{folder}: {field} = {source}: cannot be loaded ({_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _drop_load_report(record) -> bool:
    return "LOAD REPORT" not in record.getMessage()


def vision_encoder_from_pretrained(source, vision_config, **kwargs):
    """The vision encoder `vision_config` describes (its Auto class: `CLIPVisionModel`, `SiglipVisionModel`, ...) with
    `source`'s weights. A two-tower folder (`openai/clip-*`, `google/siglip-*`) also holds a text tower, and SigLIP's
    an unused pooling head: their tensors are left out without transformers' page-long load report, but an encoder
    tensor the folder lacks is an error (transformers would initialise it randomly). `kwargs` go to
    `from_pretrained` (dtype, attn_implementation, device_map)."""
    from transformers.utils import logging as hf_logging

    report_logger = hf_logging.get_logger("transformers.modeling_utils")  # where the load report goes
    report_logger.addFilter(_drop_load_report)
    try:
        model, loading_info = AutoModel.from_pretrained(source, config=copy.deepcopy(vision_config),
                                                        output_loading_info=True, **kwargs)
    finally:
        report_logger.removeFilter(_drop_load_report)
    missing = sorted(loading_info["missing_keys"])
    if missing:
        raise ValueError(f"{source}: no weights for {len(missing)} tensors of {type(model).__name__} (e.g. "
                         f"`{missing[0]}`): not a {vision_config.model_type} checkpoint, or an incomplete one")
    return model


def single_device(device_map, folder):
    """The one device a model assembled in memory goes to (rebuilt from sources, or from XTuner's parts): its
    backbones are not split across devices."""
    if device_map is None:
        return None
    if isinstance(device_map, dict):
        if set(device_map) != {""}:
            raise TypeError(f"{folder}: a per-module device_map is not supported when rebuilding from sources")
        device_map = device_map[""]
    if isinstance(device_map, int):
        return torch.device("cuda", device_map)
    if device_map in ("auto", "balanced", "balanced_low_0", "sequential"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device_map
