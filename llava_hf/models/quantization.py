"""bitsandbytes settings shared by training (QLoRA) and inference (`--bits`), checked before anything loads."""

import torch

# Quantize only the LLM body, like XTuner: the ViT, the projector and the LM head stay in the compute dtype.
NOT_QUANTIZED = ["vision_tower", "multi_modal_projector", "output", "lm_head"]


def check_bits(bits) -> None:
    """ValueError with one line when `bits` cannot work here (bitsandbytes needs CUDA and the package)."""
    if bits is None:
        return
    if bits not in (4, 8):
        raise ValueError(f"--bits must be 4 or 8, not {bits}")
    if not torch.cuda.is_available():
        raise ValueError(f"--bits {bits} needs a CUDA GPU (bitsandbytes); none is available on this machine")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ValueError(f"--bits {bits} needs bitsandbytes: pip install 'llava_hf[qlora]'") from None


def bnb_config(bits, compute_dtype: torch.dtype | None = None):
    """NF4 with double quantization for 4 bits (XTuner's QLoRA base), LLM.int8 for 8; None for no `bits`.

    The 4-bit weights are stored in `compute_dtype`-sized containers so DeepSpeed ZeRO-3 and FSDP can shard them.
    """
    check_bits(bits)
    if bits is None:
        return None
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=NOT_QUANTIZED)
    compute_dtype = compute_dtype if isinstance(compute_dtype, torch.dtype) else torch.float16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_storage=compute_dtype,
        llm_int8_skip_modules=NOT_QUANTIZED,
    )
