"""One loader for everything that runs a trained model (chat, the web demo, MMBench).

It accepts every folder our tools write, so users never merge adapters just to try a checkpoint:

* a full model folder (`config.json` with `model_type: llava_internlm2`, stage-1 outputs included);
* a training output holding a PEFT adapter whose `base_model_name_or_path` is such a folder;
* XTuner's triple: an LLM folder, a vision-encoder folder (CLIP, or another encoder with one CLS token, which
  XTuner's `[:, 1:]` drops), and a `--llava` folder with `projector/` and optional `llm_adapter/`,
  `visual_encoder_adapter/` (and `visual_encoder/`, which then replaces the encoder folder).

Every user mistake becomes a `UserInputError` with one line naming the folder, raised before weights load.
"""

import json
import os

import torch

from ..models.adapters import ADAPTER_CONFIG
from ..models.llava_internlm2.checkpoint_io import is_hub_id, read_tensors, single_device
from ..models.quantization import bnb_config
from ..dtypes import resolve_dtype
from ..errors import UserInputError, first_line

LLAVA_MODEL_TYPE = "llava_internlm2"
# XTuner's ProjectorModel is `nn.Sequential(Linear, GELU, Linear)`; ours names the two linears.
XTUNER_PROJECTOR_KEYS = {"model.0.": "linear_1.", "model.2.": "linear_2."}


def load_model_and_processor(model_name_or_path, *, visual_encoder=None, llava=None, torch_dtype=None, bits=None,
                             device_map=None):
    """(model in eval mode, processor) for any folder our tools produce; see the module docstring.

    `torch_dtype`: a `torch.dtype` or a name in `llava_hf.dtypes.DTYPE_CHOICES`; `bits`: None, 4 (NF4) or 8.
    """
    dtype = resolve_dtype(torch_dtype)
    quantization_config = quantization_config_for(bits, dtype)
    if quantization_config is not None and device_map is None:
        device_map = "auto"
    options = {"dtype": dtype, "device_map": device_map, "quantization_config": quantization_config}
    if visual_encoder is not None or llava is not None:
        if quantization_config is not None:
            raise UserInputError("--bits is not supported with the XTuner-style LLM + --visual_encoder + --llava "
                                 "triple; export it to one model folder first")
        model, processor = load_xtuner_triple(model_name_or_path, visual_encoder, llava, dtype, device_map)
    elif os.path.isfile(os.path.join(str(model_name_or_path), ADAPTER_CONFIG)):
        model, processor = load_adapter_output(model_name_or_path, options)
    else:
        model, processor = load_model_folder(model_name_or_path, options)
    return model.eval(), processor


def quantization_config_for(bits, dtype=None):
    """bitsandbytes settings for `bits` (see `llava_hf.models.quantization`), as a one-line user error."""
    try:
        return bnb_config(bits, dtype)
    except ValueError as error:
        raise UserInputError(str(error)) from None


def read_config_json(folder) -> dict | None:
    """A local folder's config.json (None when it has none); unreadable JSON is a one-line error naming the file."""
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        return None
    try:
        with open(config_path, encoding="utf-8") as file:
            config = json.load(file)
    except (OSError, ValueError) as error:
        raise UserInputError(f"cannot read {config_path}: {error}") from None
    if not isinstance(config, dict):
        raise UserInputError(f"{config_path} is not a JSON object")
    return config


def read_model_type(folder) -> str | None:
    """`model_type` from a local folder's config.json (None when it has none); hub ids are not checked here."""
    return (read_config_json(folder) or {}).get("model_type")


def check_model_path(name, part: str | None = None, hub: bool = True) -> None:
    """`UserInputError` "NAME: no such folder" unless `name` is a local folder or (with `hub`) a Hub id, so a mistyped
    path fails at once instead of waiting on Hub requests. `part` (e.g. "the LLM") says which folder it is."""
    name = os.fspath(name)
    if not os.path.isdir(name) and not (hub and is_hub_id(name)):
        what = "a file, not a folder" if os.path.isfile(name) else "no such folder"
        raise UserInputError(f"{name}: {what}" + (f" ({part})" if part else ""))


def hub_error(name, error: BaseException, filename: str | None = None) -> UserInputError | None:
    """One line naming `name` for the `huggingface_hub.errors` error that `error` is or was raised from
    (transformers re-raises them as OSError); None when no Hub error is involved."""
    from huggingface_hub import errors

    while error is not None and not isinstance(error, (errors.HfHubHTTPError, errors.EntryNotFoundError,
                                                       errors.OfflineModeIsEnabled, errors.HFValidationError)):
        error = error.__cause__ or error.__context__
    if error is None:
        return None
    local = "no such folder here, and"
    if isinstance(error, errors.GatedRepoError):
        message = (f"a gated Hub repository: accept its conditions on https://huggingface.co/{name} and log in "
                   "(`hf auth login` or HF_TOKEN)")
    elif isinstance(error, errors.RepositoryNotFoundError):
        message = f"{local} no such model repository on the Hub (or a private one: log in with `hf auth login`)"
    elif isinstance(error, errors.RevisionNotFoundError):
        message = "the Hub repository has no such revision"
    elif isinstance(error, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)):
        message = (f"{local} not in the Hub cache, and the Hub cannot be reached (offline, or HF_HUB_OFFLINE=1): "
                   "check the path, or download the model first")
    elif isinstance(error, errors.EntryNotFoundError):
        message = f"the Hub repository has no {filename or 'such file'} ({first_line(error)})"
    elif isinstance(error, errors.HFValidationError):
        message = f"{local} not a valid Hub repository id"
    else:
        message = f"the Hub request failed ({first_line(error)})"
    return UserInputError(f"{name}: {message}")


def hub_model_type(repo_id: str) -> str | None:
    """`model_type` of a Hub repository's config.json, fetched alone (and cached) before any weight is."""
    from huggingface_hub import hf_hub_download

    try:
        config_path = hf_hub_download(repo_id, "config.json")
    except Exception as error:
        one_line = hub_error(repo_id, error, "config.json")
        if one_line is None:
            raise
        raise one_line from None
    return read_model_type(os.path.dirname(config_path))


def check_llava_folder(folder):
    """A LLaVA model folder or Hub repository (its config.json says so), checked before any weight loads."""
    check_model_path(folder)
    model_type = read_model_type(folder) if os.path.isdir(folder) else hub_model_type(folder)
    if model_type != LLAVA_MODEL_TYPE:
        found = f"its config.json has model_type {model_type!r}" if model_type else "it has no config.json"
        hint = " (an LLM: add --visual_encoder CLIP --llava DIR for an XTuner-style model)" if model_type else ""
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
        one_line = hub_error(folder, error)
        if one_line is None:
            raise
        raise one_line from None


def load_adapter_output(folder, options):
    """A training output with one PEFT adapter (LLM LoRA, ViT LoRA, projector): applied on the fly, not merged."""
    from peft import PeftModel
    from transformers import AutoProcessor

    from ..models.adapters import adapter_base, check_adapter_fits

    folder = str(folder)
    model, base_processor = load_model_folder(adapter_base(folder), options)
    check_adapter_fits(model, folder)
    # PEFT injects the LoRA layers (and the trained projector copy) into `model` in place; callers keep
    # the LLaVA class, its `generate` and its config, with the adapter active.
    PeftModel.from_pretrained(model, folder)
    return model, AutoProcessor.from_pretrained(folder) if has_processor(folder) else base_processor


def has_processor(folder) -> bool:
    return any(os.path.isfile(os.path.join(folder, name))
               for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"))


def load_xtuner_triple(llm, visual_encoder, llava, dtype, device_map):
    """XTuner's `xtuner chat LLM --visual_encoder CLIP --llava DIR` layout, rebuilt as our model class with the
    adapters attached (not merged)."""
    model, processor, _ = build_from_xtuner(check_xtuner_layout(llm, visual_encoder, llava, llm_option="MODEL"),
                                            dtype)
    if device_map is not None:
        model = model.to(single_device(device_map, llava))
    return model, processor


def check_xtuner_layout(llm, visual_encoder, llava, llm_option="--llm") -> dict:
    """The parts of an XTuner `pth_to_hf` output (+ the LLM and CLIP it was trained on), checked before any weight
    is loaded: folders, the kind of model each backbone folder holds, projector widths against the LLM/CLIP configs,
    adapters against the bare LLM/CLIP. `llm_option` names the LLM in messages (`MODEL` for chat).

    A fully trained LLM or ViT is bundled (`llm/` or the folder root, `visual_encoder/`) and replaces
    `--llm` / `--visual_encoder`. Returns {"llm", "visual_encoder", "projector": its weights under our names,
    "adapters": {attribute: (folder, weights)}}: what was read to check it is kept for the build.
    """
    from ..models.adapters import bare_backbone_from_config, check_adapter_fits, read_adapter_weights, skeleton

    if llava is None:
        raise UserInputError("the XTuner-style triple needs --llava DIR")
    check_model_path(llava, "--llava", hub=False)
    given = {"llm": llm, "visual_encoder": visual_encoder}
    llm = _bundled_or_given(llava, ["llm", "."], llm, "LLM", llm_option)
    visual_encoder = _bundled_or_given(llava, ["visual_encoder"], visual_encoder, "vision encoder", "--visual_encoder")
    vision_label = (f"--visual_encoder {visual_encoder}" if visual_encoder == given["visual_encoder"]
                    else visual_encoder)
    check_backbone_kinds(f"{llm_option} {llm}" if llm == given["llm"] else llm, vision_label, llm, visual_encoder)
    check_xtuner_feature_selection(vision_label, visual_encoder)
    projector = os.path.join(llava, "projector")
    if not os.path.isdir(projector):
        raise UserInputError(f"{llava} has no projector/ folder (expected XTuner's pth_to_hf output)")
    projector_weights = check_xtuner_projector(projector, llm, visual_encoder)
    adapters = {}
    for name, attribute, base in (("llm_adapter", "language_model", llm),
                                  ("visual_encoder_adapter", "vision_tower", visual_encoder)):
        folder = os.path.join(llava, name)
        if os.path.isdir(folder):
            weights = read_adapter_weights(folder)
            check_adapter_fits(skeleton(lambda: bare_backbone_from_config(attribute, base)), folder, weights)
            adapters[attribute] = (folder, weights)
    return {"llm": llm, "visual_encoder": visual_encoder, "projector": projector_weights, "adapters": adapters}


def check_xtuner_feature_selection(label, visual_encoder) -> None:
    """XTuner's LLaVA takes `hidden_states[layer][:, 1:]` of any encoder: the features ours selects only when token 0
    is the encoder's one CLS (CLIP). Another encoder (SigLIP has no CLS) is refused: its projector was trained on
    features this model would not give it."""
    from ..models.vision_encoders import run_on_meta_device, vision_config_from_pretrained

    vision_config = vision_config_from_pretrained(visual_encoder)
    additional = run_on_meta_device(vision_config, visual_encoder).additional_tokens
    if additional != 1:
        raise UserInputError(
            f"{label} ({vision_config.model_type}) puts {additional} tokens ahead of its patches: XTuner's LLaVA drops "
            "token 0 of the encoder's output, which is a CLS only for encoders with exactly one (CLIP), so its "
            "projector's features cannot be reproduced here"
        )


def backbone_kind(folder) -> tuple[str | None, str]:
    """("language" for a causal LM, "vision" for a vision encoder (CLIP, SigLIP, ...), or None; what its config.json
    says), from the config's `architectures` (or `model_type` when it lists none) alone."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from ..models.vision_encoders import is_vision_encoder_config

    config = read_config_json(folder)
    if config is None:
        return None, "it has no config.json"
    model_type, architectures = config.get("model_type"), config.get("architectures") or []
    found = f"its config.json has model_type {model_type!r}" + (f", architectures {architectures}"
                                                                 if architectures else "")
    if is_vision_encoder_config(config):
        return "vision", found
    if architectures:  # what the folder was saved as: BERT's model_type has a causal-LM class, BertModel is none
        causal_lm = any(str(name).endswith(("ForCausalLM", "LMHeadModel")) for name in architectures)
    else:
        causal_lm = model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    if causal_lm:
        return "language", found
    return None, found


def check_backbone_kinds(llm_label, vision_label, llm, visual_encoder) -> None:
    """The LLM folder holds a causal LM and the vision folder a vision encoder, or a `UserInputError` with one line per
    wrong folder (one line naming the swap when they are the other way round): a swap would otherwise surface as a
    projector of the wrong shape."""
    (llm_kind, llm_found), (vision_kind, vision_found) = backbone_kind(llm), backbone_kind(visual_encoder)
    if llm_kind == "vision" and vision_kind == "language":
        raise UserInputError(f"{llm_label} is a vision encoder and {vision_label} is a language model: swapped?")
    problems = []
    if llm_kind != "language":
        problems.append(f"{llm_label} is not a language model ({llm_found}); give the LLM XTuner trained on")
    if vision_kind != "vision":
        problems.append(f"{vision_label} is not a vision encoder ({vision_found}); give the vision encoder XTuner "
                        "trained on")
    if problems:
        raise UserInputError("\n".join(problems))


def _bundled_or_given(llava, subfolders, given, part, option):
    """A part bundled in XTuner's folder (full weights: it was trained), or the folder given on the command line."""
    for sub in subfolders:
        bundled = os.path.normpath(os.path.join(llava, sub))
        if os.path.isfile(os.path.join(bundled, "config.json")):
            if given is not None and os.path.realpath(given) != os.path.realpath(bundled):
                raise UserInputError(f"{bundled} holds the trained {part}, which replaces {given}; leave {given} out")
            return bundled
    if given is None:
        raise UserInputError(f"{llava} has no {subfolders[0]}/ (a trained {part}); pass {option} FOLDER with the "
                             f"{part} XTuner trained on")
    check_model_path(given, f"the {part}", hub=False)
    return given


def build_from_xtuner(parts: dict, dtype):
    """(model, processor, {attribute: PeftModel}) from `check_xtuner_layout`'s parts: XTuner trained each adapter
    on the bare LLM / ViT, so each is attached there; PEFT injects the LoRA layers into the module in place, so
    the LLaVA model keeps its own class and `generate`, and `merge_and_unload()` on a PeftModel merges in place."""
    from llava_hf.models.llava_internlm2.builder import build_llava_from_pretrained

    model, processor = build_llava_from_pretrained(parts["llm"], parts["visual_encoder"], dtype=dtype)
    model.multi_modal_projector.load_state_dict(parts["projector"])
    peft_models = {attribute: attach_xtuner_adapter(getattr(model, attribute), folder, weights)
                   for attribute, (folder, weights) in parts["adapters"].items()}
    return model, processor, peft_models


def attach_xtuner_adapter(module, folder, weights):
    """`PeftModel.from_pretrained(module, folder)` with the adapter's `weights` as read from `folder`, tolerating the
    one vocabulary row our builder adds.

    XTuner's LLM LoRA also covers InternLM2's `output` head, trained without the `<image>` row; that row gets
    a zero LoRA update (the model never has to predict `<image>`). Returns the PeftModel.
    """
    from peft import PeftConfig, PeftModel, set_peft_model_state_dict

    from ..models.adapters import PEFT_PREFIX

    peft_model = PeftModel(module, PeftConfig.from_pretrained(folder))  # injects LoRA layers into `module`
    weights = dict(weights)  # padded rows replace tensors in this copy only
    for key, tensor in weights.items():
        if key.endswith(".lora_B.weight"):
            layer = peft_model.base_model.model.get_submodule(key[len(PEFT_PREFIX):-len(".lora_B.weight")])
            missing_rows = layer.out_features - tensor.shape[0]
            if missing_rows > 0:
                weights[key] = torch.cat([tensor, tensor.new_zeros(missing_rows, *tensor.shape[1:])])
    result = set_peft_model_state_dict(peft_model, weights)
    if result.unexpected_keys:
        raise UserInputError(f"{folder}: adapter weights for modules the model lacks: {result.unexpected_keys[:3]}")
    return peft_model.eval()


def read_xtuner_projector(folder) -> dict:
    """XTuner `ProjectorModel` weights (`model.0.*`, `model.2.*`) renamed to our projector's `linear_1/2`."""
    try:
        state_dict = read_tensors(folder)
    except FileNotFoundError as error:
        raise UserInputError(str(error)) from None
    renamed = {}
    for key, tensor in state_dict.items():
        prefix = next((p for p in XTUNER_PROJECTOR_KEYS if key.startswith(p)), None)
        if prefix is None:
            raise UserInputError(f"{folder}: unexpected projector weight {key!r} (expected model.0.* and model.2.*)")
        renamed[XTUNER_PROJECTOR_KEYS[prefix] + key[len(prefix):]] = tensor
    return renamed


def check_xtuner_projector(folder, llm, visual_encoder) -> dict:
    """The projector's weights under our names, once every tensor has the shape the LLM and encoder configs need
    (XTuner names in the error)."""
    from transformers import AutoConfig

    from llava_hf.models.llava_internlm2 import LlavaInternLM2MultiModalProjector
    from llava_hf.models.llava_internlm2.builder import llava_config

    from ..models.adapters import skeleton
    from ..models.vision_encoders import vision_config_from_pretrained

    config = llava_config(AutoConfig.from_pretrained(llm), vision_config_from_pretrained(visual_encoder),
                          visual_encoder)
    expected = skeleton(lambda: LlavaInternLM2MultiModalProjector(config)).state_dict()
    ours_to_xtuner = {ours: xtuner for xtuner, ours in XTUNER_PROJECTOR_KEYS.items()}
    tensors = read_xtuner_projector(folder)
    for name in sorted(set(expected) | set(tensors)):
        xtuner_name = next(x + name[len(o):] for o, x in ours_to_xtuner.items() if name.startswith(o))
        if name not in tensors:
            raise UserInputError(f"{folder}: projector tensor {xtuner_name!r} is missing")
        if name not in expected or tensors[name].shape != expected[name].shape:
            want = tuple(expected[name].shape) if name in expected else "no such parameter"
            raise UserInputError(
                f"{folder}: projector tensor {xtuner_name!r} has shape {tuple(tensors[name].shape)}, but the LLM "
                f"({llm}) and vision encoder ({visual_encoder}) need {want}: a projector trained for another LLM or "
                "encoder"
            )
    return tensors
