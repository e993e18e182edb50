"""Build or load the model for a stage, and decide what trains.

Stage 1 (`pretrain`) trains the projector; stage 2 (`finetune`) starts from a stage-1 output and trains the
LLM fully or with (Q)LoRA, and optionally the ViT with LoRA. All LoRA goes into ONE PEFT adapter over the
whole model: `rank_pattern`/`alpha_pattern` give the LLM and the ViT their own r/alpha and the projector is a
`modules_to_save`, so `merge_and_unload()` merges everything at once and the adapter folder loads with
`PeftModel.from_pretrained` / transformers' adapter loading.
"""

import logging
import os
import re

import torch
from accelerate import PartialState
from torch import nn

from ..dtypes import resolve_dtype
from ..models.quantization import bnb_config, check_bits
from .arguments import NEW_MODEL_CONFIG_FLAGS, LlavaTrainingArguments, ModelArguments

PROJECTOR = "multi_modal_projector"

logger = logging.getLogger("llava_hf.train")


def check_options(model_args: ModelArguments, training_args: LlavaTrainingArguments) -> None:
    """Reject option combinations that cannot work, before anything is loaded."""
    if model_args.bits is not None:
        if training_args.tune_llm != "lora":
            raise ValueError(
                f"--bits {model_args.bits} quantizes the LLM, which then trains only through LoRA: use --tune_llm lora "
                "(QLoRA). HF Trainer does not train a quantized model without an adapter, so stage 1 keeps the LLM in bf16."
            )
        check_bits(model_args.bits)
    if model_args.model_name_or_path and model_args.llm_name_or_path:
        raise ValueError("give either --model_name_or_path or --llm_name_or_path/--vision_tower_name_or_path, not both")
    if model_args.projector_path and model_args.model_name_or_path:
        raise ValueError("--projector_path is only used when building from --llm_name_or_path")
    given = [f"--{name}" for name in new_model_config(model_args)]
    if given and model_args.model_name_or_path:
        raise ValueError(f"{' '.join(given)} shape a new model (--llm_name_or_path + --vision_tower_name_or_path); "
                         f"--model_name_or_path {model_args.model_name_or_path} keeps the settings it was built with")
    if model_args.llm_name_or_path and not model_args.vision_tower_name_or_path:
        raise ValueError("--llm_name_or_path needs --vision_tower_name_or_path")
    if not (model_args.model_name_or_path or model_args.llm_name_or_path):
        raise ValueError("no model: give --model_name_or_path, or --llm_name_or_path and --vision_tower_name_or_path")
    from .speed import check_speed_options

    check_speed_options(training_args)


def mixed_precision_dtype(training_args: LlavaTrainingArguments) -> torch.dtype:
    """What `--torch_dtype auto` loads the model in for training: the `--bf16` / `--fp16` dtype, else float32."""
    return torch.bfloat16 if training_args.bf16 else torch.float16 if training_args.fp16 else torch.float32


def new_model_config(model_args: ModelArguments) -> dict:
    """The config fields the flags set for a new model (`NEW_MODEL_CONFIG_FLAGS` that are given); one feature layer
    is an int, as in the config."""
    fields = {name: getattr(model_args, name) for name in NEW_MODEL_CONFIG_FLAGS
              if getattr(model_args, name) is not None}
    layers = fields.get("vision_feature_layer")
    if isinstance(layers, (list, tuple)):
        fields["vision_feature_layer"] = layers[0] if len(layers) == 1 else list(layers)
    return fields


def load_processor(model_args: ModelArguments):
    """The stage's processor, from files only (no weights): the data is validated and tokenized with it before the
    model loads."""
    if model_args.model_name_or_path:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(model_args.model_name_or_path)
    from ..models.llava_internlm2.builder import build_llava_processor

    return build_llava_processor(model_args.llm_name_or_path, model_args.vision_tower_name_or_path,
                                 **new_model_config(model_args))


def load_model(model_args: ModelArguments, training_args: LlavaTrainingArguments, processor):
    """The stage's starting model: a llava_internlm2 folder, or a new one assembled from an LLM + a vision encoder
    around `processor` (from `load_processor`). Returns the model and the processor that goes with it."""
    from ..models.llava_internlm2 import LlavaInternLM2ForConditionalGeneration
    from ..models.llava_internlm2.builder import build_llava_from_pretrained

    dtype = resolve_dtype(model_args.torch_dtype, auto=mixed_precision_dtype(training_args))
    kwargs = {"dtype": dtype}
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    quant = bnb_config(model_args.bits, dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
    if model_args.model_name_or_path:
        model = LlavaInternLM2ForConditionalGeneration.from_pretrained(model_args.model_name_or_path, **kwargs)
    else:
        model, processor = build_llava_from_pretrained(
            model_args.llm_name_or_path, model_args.vision_tower_name_or_path, model_args.projector_path,
            processor=processor, **kwargs, **new_model_config(model_args)
        )
    model.config.use_cache = False
    return model, processor


ADAPTER_BASE_DIR = "base_model"


def uses_adapter(training_args: LlavaTrainingArguments) -> bool:
    return "lora" in (training_args.tune_llm, training_args.tune_vision_tower)


def write_adapter_base(model, processor, output_dir: str, keep_existing: bool) -> str:
    """A LoRA run on a model assembled from an LLM and a vision encoder trains an adapter over a base that exists
    nowhere on disk (the backbones with a fresh projector and the image token added). Written here as a stage-1
    folder holds it (the config naming the backbones' sources, the projector, the processor), so the adapter records
    a base that `llava-hf merge`, `chat` and `export-hf` can rebuild; returns its path. Written whole (a staging
    sibling renamed into place); a resumed run keeps the one its checkpoints were trained over."""
    folder = os.path.abspath(os.path.join(output_dir, ADAPTER_BASE_DIR))
    state = PartialState()
    if state.is_main_process and not (keep_existing and os.path.isfile(os.path.join(folder, "config.json"))):
        import shutil
        import tempfile

        os.makedirs(output_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{ADAPTER_BASE_DIR}.partial-", dir=os.path.dirname(folder))
        projector = {name: tensor for name, tensor in model.state_dict().items() if name.startswith(f"{PROJECTOR}.")}
        model.save_pretrained(staging, state_dict=projector)
        processor.save_pretrained(staging)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    state.wait_for_everyone()
    return folder


def linear_layers(module: nn.Module, exclude: set[int]) -> dict[str, nn.Module]:
    """Every linear layer (incl. bitsandbytes' Linear4bit/8bitLt) by name, except the excluded modules."""
    return {name: child for name, child in module.named_modules()
            if id(child) not in exclude
            and (isinstance(child, nn.Linear) or type(child).__name__ in ("Linear4bit", "Linear8bitLt"))}


def leaf_names(layers: dict[str, nn.Module]) -> list[str]:
    """`wqkv` for `model.layers.0.attention.wqkv`: what LoRA's target pattern matches."""
    return sorted({name.rsplit(".", 1)[-1] for name in layers})


def warn_if_rank_too_large(layers: dict[str, nn.Module], rank: int, flag: str, part: str) -> None:
    """One warning line when a LoRA rank does not fit the layers it wraps. A rank-r adapter on an in x out layer
    holds r * (in + out) weights; from r >= in * out / (in + out) on (d / 2 for a square d x d layer) that is as
    many as the layer itself: not low-rank any more, and no smaller than training the layer in full. Judged on
    the narrowest wrapped layer (the default r=512 is XTuner's 7B value, for 4096-wide layers)."""
    def fitting_rank(layer):  # the largest rank whose adapter stays smaller than the layer
        return -(-layer.in_features * layer.out_features // (layer.in_features + layer.out_features)) - 1

    if not layers:
        return
    name, layer = min(layers.items(), key=lambda item: fitting_rank(item[1]))
    limit = fitting_rank(layer)
    if rank <= limit or not PartialState().is_main_process:
        return
    example = 1 << max((limit // 2).bit_length() - 1, 0)  # a power of two well below the limit
    full = "--tune_llm full" if part == "LLM" else "--tune_vision_tower full"
    logger.warning(
        "%s %d is too large for the %s: a rank-%d LoRA of its %d x %d layer %s holds %s weights, the layer itself %s; "
        "pass %s %d or less (e.g. %d), or %s", flag, rank, part, rank, layer.in_features, layer.out_features, name,
        f"{rank * (layer.in_features + layer.out_features):,}", f"{layer.in_features * layer.out_features:,}", flag,
        limit, example, full,
    )


def lora_config(model, training_args: LlavaTrainingArguments):
    """One LoraConfig over the whole model, or None when nothing uses LoRA.

    LLM targets: every linear layer except the LM head (`output`/`lm_head`). XTuner's auto-discovery also
    wraps InternLM2's `output` (its exclusion list only names `lm_head`), adding a 92544-wide LoRA of ~50M
    parameters to the vocabulary projection; we deliberately leave the head out, as XTuner meant to.
    ViT targets: every linear layer of the vision tower. The projector is trained in full (modules_to_save),
    and so is the LLM when `--tune_llm full` is combined with ViT LoRA.
    """
    from peft import LoraConfig

    llm_lora = training_args.tune_llm == "lora"
    vit_lora = training_args.tune_vision_tower == "lora"
    if not (llm_lora or vit_lora):
        return None
    patterns, rank_pattern, alpha_pattern = [], {}, {}
    if llm_lora:
        head = {id(model.language_model.get_output_embeddings())}
        layers = linear_layers(model.language_model, head)
        warn_if_rank_too_large(layers, training_args.lora_r, "--lora_r", "LLM")
        leaves = leaf_names(layers)
        patterns.append(rf"language_model\..*\.({'|'.join(map(re.escape, leaves))})")
        rank_pattern[r"language_model\..*"] = training_args.lora_r
        alpha_pattern[r"language_model\..*"] = training_args.lora_alpha
    if vit_lora:
        layers = linear_layers(model.vision_tower, set())
        warn_if_rank_too_large(layers, training_args.vision_lora_r, "--vision_lora_r", "ViT")
        leaves = leaf_names(layers)
        patterns.append(rf"vision_tower\..*\.({'|'.join(map(re.escape, leaves))})")
        rank_pattern[r"vision_tower\..*"] = training_args.vision_lora_r
        alpha_pattern[r"vision_tower\..*"] = training_args.vision_lora_alpha
    modules_to_save = [PROJECTOR]
    if training_args.tune_llm == "full":
        modules_to_save.append("language_model")
    if training_args.tune_vision_tower == "full":
        modules_to_save.append("vision_tower")
    return LoraConfig(
        r=training_args.lora_r if llm_lora else training_args.vision_lora_r,
        lora_alpha=training_args.lora_alpha if llm_lora else training_args.vision_lora_alpha,
        lora_dropout=training_args.lora_dropout,
        bias="none",
        target_modules="^(" + "|".join(patterns) + ")$",
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
        modules_to_save=modules_to_save,
    )


def configure_trainable(model, training_args: LlavaTrainingArguments):
    """Freeze what the stage keeps fixed; wrap in PEFT when LoRA is asked for. Returns the model to train."""
    model.requires_grad_(False)
    getattr(model, PROJECTOR).requires_grad_(True)
    if training_args.tune_llm == "full":
        model.language_model.requires_grad_(True)
    if training_args.tune_vision_tower == "full":
        model.vision_tower.requires_grad_(True)

    config = lora_config(model, training_args)
    if config is None:
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    sharded = shards_parameters(training_args)
    # fp32 adapters (PEFT's upcast) unless sharded or asked otherwise (`--adapter_dtype bfloat16`: QLoRA on 24 GB)
    keep_dtype = sharded or training_args.adapter_dtype != "float32"
    if getattr(model, "is_quantized", False):
        if keep_dtype:
            # Sharded QLoRA: ZeRO-3 / FSDP shard the 4-bit weights in bf16 containers and need one dtype, so skip
            # PEFT's fp32 upcast of the other weights (as TRL does); only the input grads for checkpointing remain.
            # `--adapter_dtype bfloat16` skips it too: the upcast embeddings, head and ViT cost ~2 GB at 7B.
            if training_args.gradient_checkpointing:
                model.enable_input_require_grads()
        else:
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=training_args.gradient_checkpointing,
                gradient_checkpointing_kwargs=training_args.gradient_checkpointing_kwargs,
            )
    # ZeRO-3 / FSDP flatten the trainable parameters into one buffer per dtype group: the adapters must be in the
    # model's dtype (DeepSpeed and FSDP keep fp32 master weights themselves), not PEFT's default fp32 upcast.
    return get_peft_model(model, config, autocast_adapter_dtype=not keep_dtype)


def shards_parameters(training_args: LlavaTrainingArguments) -> bool:
    """Whether DeepSpeed ZeRO-3 or FSDP (from the accelerate config or the flags) shards the parameters."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    fsdp = bool(training_args.fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")
    return is_deepspeed_zero3_enabled() or fsdp


def trainable_parameter_summary(model) -> str:
    def numel(p):  # a ZeRO-3-partitioned parameter holds an empty local tensor
        return getattr(p, "ds_numel", p.numel())

    trainable = sum(numel(p) for p in model.parameters() if p.requires_grad)
    total = sum(numel(p) for p in model.parameters())
    return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%)"
