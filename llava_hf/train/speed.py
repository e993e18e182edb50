"""The speed settings `configure_speed` (`train/run.py`) applies before training, each decided once and logged in
one line that says what was chosen and why:

- rows: padding-free rows with an attention that reads the collator's sample boundaries (`--padding_free auto`:
  flash-attn where installed, else torch's `varlen_attn` where it serves, the per-sample reference on a CPU), padded
  rows where no such kernel serves;
- activation checkpointing (`--gradient_checkpointing auto`): as few decoder layers as the longest micro-batch needs
  to fit the card, from a model of the activation memory per layer (`activation_bytes_per_token`);
- optional fused kernels (`--use_liger_kernel`) and regional compile (`--compile_decoder_layers`), see
  `models/fused_kernels.py`.
"""

import logging
import math
from dataclasses import dataclass

import torch

from ..errors import UserInputError

logger = logging.getLogger("llava_hf.train")

GIB = 2**30


@dataclass(frozen=True)
class RowChoice:
    padding_free: bool
    attention: str | None  # the text model's attention implementation to train with; None keeps the loaded one
    reason: str


def flash_attention_implementation(device: torch.device) -> str | None:
    """transformers' `flash_attention_3` (Hopper) or `flash_attention_2` where the flash-attn package is installed."""
    from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

    if device.type != "cuda":
        return None
    if is_flash_attn_3_available() and torch.cuda.get_device_capability(device)[0] == 9:
        return "flash_attention_3"
    return "flash_attention_2" if is_flash_attn_2_available() else None


def choose_rows(requested, named_attention: str | None, device: torch.device, dtype: torch.dtype,
                text_config) -> RowChoice:
    """Padded or padding-free rows, and the attention that reads the boundaries of the latter.

    `requested` is `--padding_free` (True, False or "auto"); `named_attention` is `--attn_implementation` (None when
    not given). "auto" packs only where the attention reads the sample boundaries (no mask, one kernel call per layer
    on a GPU); True packs whatever the kernel (an error on an accelerator where none reads them)."""
    from ..models.internlm2.modeling_internlm2 import reads_row_boundaries
    from ..models.packed_attention import PACKED_SDPA, PACKED_VARLEN, varlen_unsupported_reason

    if requested is False:
        return RowChoice(False, None, "--padding_free false")
    if named_attention is not None:
        if reads_row_boundaries(named_attention):
            return RowChoice(True, None, f"--attn_implementation {named_attention} reads the sample boundaries")
        if requested is True:
            return RowChoice(True, None, f"--padding_free true with --attn_implementation {named_attention}: "
                                         "transformers masks the row (a dense block-diagonal mask for sdpa/eager)")
        return RowChoice(False, None, f"--attn_implementation {named_attention} does not read sample boundaries (a "
                                      "packed row would need a mask over all its tokens)")
    layer_types = set(getattr(text_config, "layer_types", None) or ["full_attention"])
    if layer_types != {"full_attention"}:
        reason = (f"the text model has {sorted(layer_types)} layers; the packed attentions support full attention "
                  "only (give --attn_implementation flash_attention_2 or flex_attention to pack anyway)")
        if requested is True:
            raise UserInputError(f"--padding_free true: {reason}")
        return RowChoice(False, None, reason)
    if device.type == "cpu":
        return RowChoice(True, PACKED_SDPA, "CPU: SDPA per sample of the row (the reference path)")
    flash = flash_attention_implementation(device)
    if flash is not None and dtype in (torch.float16, torch.bfloat16):
        return RowChoice(True, flash, f"flash-attn is installed: {flash} reads the sample boundaries")
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // text_config.num_attention_heads
    unsupported = varlen_unsupported_reason(device, dtype, head_dim)
    if unsupported is None:
        return RowChoice(True, PACKED_VARLEN, f"torch {torch.__version__} varlen_attn, one call per layer")
    if requested is True:
        raise UserInputError(f"--padding_free true: no varlen attention kernel serves here ({unsupported}); install "
                             "flash-attn, or use --padding_free auto (padded rows) or false")
    return RowChoice(False, None, f"no varlen attention kernel serves here: {unsupported}")


# ---------------------------------------------------------------------------------------------- checkpointing


def activation_bytes_per_token(config, dtype_bytes: int, trainable: bool) -> int:
    """Bytes one decoder layer of a Llama-shaped model (RMSNorm, SwiGLU, rotary, GQA) keeps for backward per token.

    Counted from what autograd saves: each RMSNorm its fp32 input and statistics (~12 x hidden bytes for the two),
    a flash/varlen attention its q, k, v, output (and a small logsumexp), SwiGLU the gate and up projections and the
    activation's output; a layer whose weights train (full or LoRA) also keeps each linear layer's input. An
    estimate from the shapes (not yet checked against measured GPU peaks), to decide how many layers to recompute."""
    hidden, inter = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    q_width, kv_width = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    kept = 12 * hidden + dtype_bytes * (2 * q_width + 2 * kv_width + 3 * inter)
    if trainable:
        kept += dtype_bytes * (2 * hidden + q_width + inter)
    return kept


@dataclass(frozen=True)
class CheckpointChoice:
    enabled: bool
    every_n_layers: int
    checkpointed: int  # decoder layers of the LLM that recompute
    reason: str


def decoder_layer_indices(model) -> list[int]:
    """Where the LLM's decoder layers sit among all `GradientCheckpointingLayer`s in module order: the index
    transformers' `every_n_layers` counts with (the ViT's layers come first)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    decoder = {id(layer) for layer in model.language_model.get_decoder().layers}
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    return [index for index, layer in enumerate(layers) if id(layer) in decoder]


def every_n_for(indices: list[int], needed: int) -> tuple[int, int]:
    """The largest `every_n_layers` that checkpoints at least `needed` of the decoder layers at `indices`, and how many
    it checkpoints."""
    for n in range(len(indices), 0, -1):
        count = sum(index % n == 0 for index in indices)
        if count >= needed:
            return n, count
    return 1, len(indices)


def choose_checkpointing(model, training_args, longest_tokens: int | None, images: int, device: torch.device,
                         memory: tuple[int, int] | None = None) -> CheckpointChoice:
    """`--gradient_checkpointing auto` on this device; True / False pass through (with `--checkpoint_every_n_layers`).

    On a GPU: free memory (`torch.cuda.mem_get_info`) minus the weights still to move there, gradients and optimizer
    states of the trainable weights (3x their bytes: AdamW's two states in their dtype), the loss chunk's logits and a
    margin (8 % of the card + 1 GiB); what is left holds the activations of `longest_tokens` tokens, per layer
    `activation_bytes_per_token` each, or only the layer input (hidden x dtype) for a checkpointed layer. On a CPU:
    none (host memory is rarely what limits a CPU run, and recomputing costs a third more time). `memory`: (free,
    total) bytes, default `torch.cuda.mem_get_info(device)`."""
    requested = training_args.gradient_checkpointing
    if requested != "auto":
        every_n = training_args.checkpoint_every_n_layers if requested else 1
        return CheckpointChoice(bool(requested), every_n, 0, f"--gradient_checkpointing {str(requested).lower()}")
    text = model.config.text_config
    layers = text.num_hidden_layers
    if device.type != "cuda":
        return CheckpointChoice(False, 1, 0, f"{device.type}: no checkpointing on a CPU (the documented rule)")
    if not longest_tokens:
        return CheckpointChoice(True, 1, layers, "the longest micro-batch is unknown: every layer")
    params = list(model.parameters())
    on_device = {p.device.type for p in params} == {"cuda"}
    dtype_bytes = torch.finfo(model.language_model.dtype).bits // 8
    to_move = 0 if on_device else sum(p.numel() * p.element_size() for p in params)
    trainable_bytes = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    llm_trains = any(p.requires_grad for p in model.language_model.get_decoder().layers.parameters())
    per_token = activation_bytes_per_token(text, dtype_bytes, llm_trains)
    chunk = training_args.loss_chunk_size or longest_tokens
    loss_bytes = min(chunk, longest_tokens) * text.vocab_size * (4 + dtype_bytes) * 2
    vision = model.config.vision_config
    vit_bytes = 0
    if any(p.requires_grad for p in model.vision_tower.parameters()):
        vit_tokens = images * model.config.num_encoder_tokens()
        vit_bytes = vit_tokens * vision.num_hidden_layers * activation_bytes_per_token(
            _as_llama_shape(vision), dtype_bytes, True)
    free, total = memory or torch.cuda.mem_get_info(device)
    margin = 0.08 * total + GIB
    budget = free - to_move - 3 * trainable_bytes - loss_bytes - vit_bytes - margin
    full = per_token * longest_tokens  # one layer that keeps its activations
    kept_input = text.hidden_size * dtype_bytes * longest_tokens  # one checkpointed layer
    summary = (f"longest micro-batch {longest_tokens} tokens, ~{full / GIB:.2f} GiB of activations per layer, "
               f"{budget / GIB:.1f} GiB left for them of {free / GIB:.1f} GiB free")
    if layers * full <= budget:
        return CheckpointChoice(False, 1, 0, f"auto: none ({summary})")
    # (layers - c) * full + c * kept_input + full (the layer being recomputed) <= budget
    needed = min(layers, math.ceil((layers * full + full - budget) / (full - kept_input)))
    every_n, count = every_n_for(decoder_layer_indices(model), needed)
    return CheckpointChoice(True, every_n, count, f"auto: {count} of {layers} decoder layers (every_n_layers "
                                                  f"{every_n}; {summary})")


def _as_llama_shape(vision_config):
    """A ViT config (CLIP, SigLIP) read as the Llama-shaped layer `activation_bytes_per_token` counts (same widths,
    MHA)."""
    from types import SimpleNamespace

    intermediate_size = getattr(vision_config, "intermediate_size", None)  # DINOv2 states an mlp_ratio instead
    if intermediate_size is None:
        intermediate_size = int(vision_config.hidden_size * getattr(vision_config, "mlp_ratio", 4))
    return SimpleNamespace(hidden_size=vision_config.hidden_size, intermediate_size=intermediate_size,
                           num_attention_heads=vision_config.num_attention_heads,
                           num_key_value_heads=vision_config.num_attention_heads, head_dim=None)


def apply_checkpointing(training_args, choice: CheckpointChoice) -> None:
    """Write the choice where HF Trainer reads it (`gradient_checkpointing` and, in transformers 5.2x, its new name
    `activation_checkpointing`, with `every_n_layers` in their kwargs)."""
    for flag, kwargs in (("gradient_checkpointing", "gradient_checkpointing_kwargs"),
                         ("activation_checkpointing", "activation_checkpointing_kwargs")):
        if hasattr(training_args, flag):
            setattr(training_args, flag, choice.enabled)
            if choice.enabled:
                setattr(training_args, kwargs, {**(getattr(training_args, kwargs) or {}),
                                                "every_n_layers": choice.every_n_layers})


def longest_micro_batch(lengths, batch_size: int, max_tokens: int | None, padding_free: bool,
                        image_counts=None) -> tuple[int, int]:
    """(tokens, images) of the largest micro-batch the sampler can form from samples of these `modality_lengths`
    (negative: text-only): with a token budget, the budget (or the longest sample); else the `batch_size` longest
    samples, summed in a padding-free row, or `batch_size` x the longest when padded. Images: those of the samples
    with the most (`image_counts`, each sample's number; default one per image sample) that fit the batch."""
    sizes = sorted((abs(n) for n in lengths), reverse=True)
    if not sizes:
        return 0, 0
    if image_counts is None:
        image_counts = [int(n > 0) for n in lengths]
    most_images = sorted(image_counts, reverse=True)
    if max_tokens:
        return max(max_tokens, sizes[0]), sum(most_images[: max_tokens // max(sizes[-1], 1)])
    top = sizes[:batch_size]
    return (sum(top) if padding_free else len(top) * top[0]), sum(most_images[:batch_size])


def check_speed_options(training_args) -> None:
    """Options that cannot work on this machine, refused before anything loads."""
    if training_args.use_liger_kernel:
        from ..models.fused_kernels import LIGER_INSTALL

        if not torch.cuda.is_available() or training_args.use_cpu:
            raise UserInputError("--use_liger_kernel: liger-kernel's Triton kernels need a CUDA GPU, and this run has "
                                 "none (leave the flag off on a CPU)")
        try:
            import liger_kernel  # noqa: F401
        except ImportError:
            raise UserInputError(f"--use_liger_kernel needs liger-kernel: {LIGER_INSTALL}") from None
        from .model_setup import shards_parameters

        if shards_parameters(training_args):
            raise UserInputError("--use_liger_kernel: its fused cross-entropy reads the LM head's weight outside the "
                                 "head's forward, where DeepSpeed ZeRO-3 / FSDP keep it sharded; use ZeRO-2 or DDP")


def configure(model, attn_implementation: str | None, training_args, dataset=None) -> str:
    """Apply the speed settings to `model` (a LlavaInternLM2ForConditionalGeneration, PEFT already applied) and
    `training_args` (`auto` resolved), logging each choice and why. Returns the attention implementation as loaded."""
    loaded = model.config.text_config._attn_implementation
    rows = choose_rows(training_args.padding_free, attn_implementation, training_args.device,
                       model.language_model.dtype, model.config.text_config)
    training_args.padding_free = rows.padding_free
    if rows.attention is not None:
        model.language_model.set_attn_implementation(rows.attention)
    logger.info("rows: %s, attention %s (%s)", "padding-free" if rows.padding_free else "padded",
                model.config.text_config._attn_implementation, rows.reason)
    model.enable_supervised_loss(training_args.loss_chunk_size or None)
    lengths = getattr(dataset, "modality_lengths", None)
    tokens, images = (None, 0) if lengths is None else longest_micro_batch(
        lengths, training_args.per_device_train_batch_size, training_args.max_tokens_per_batch, rows.padding_free,
        getattr(dataset, "image_counts", None))
    checkpointing = choose_checkpointing(model, training_args, tokens, images, training_args.device)
    if not checkpointing.enabled and any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules()):
        # PEFT's k-bit preparation switched it on for every layer (5.2x renamed the method)
        (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()
    if training_args.gradient_checkpointing == "auto":
        logger.info("gradient checkpointing %s", checkpointing.reason)
    apply_checkpointing(training_args, checkpointing)
    if training_args.use_liger_kernel or training_args.compile_decoder_layers:
        from ..models.fused_kernels import apply_liger_kernel, compile_decoder_layers

        if training_args.use_liger_kernel:
            logger.info("liger-kernel: %s", apply_liger_kernel(model))
        if training_args.compile_decoder_layers:
            logger.info("regional compile: %s", compile_decoder_layers(model))
    return loaded
