"""Attention for padding-free rows: the samples of a micro-batch concatenated into one row, whose sample boundaries
the collator computed once per batch from the lengths it knows (`cu_seq_lens_q/k`: int32 offsets `[n + 1]`;
`max_length_q/k`: Python ints; the kwargs transformers' flash-attention path reads).

Two implementations, registered with transformers' `AttentionInterface` when llava_hf is imported:

- `packed_varlen`: PyTorch's own `torch.nn.attention.varlen.varlen_attn` (torch >= 2.10; its bundled
  FlashAttention-2 on CUDA sm80+, float16/bfloat16, head_dim <= 256): one kernel call per layer for the whole row,
  no mask, no host sync. The GPU path when flash-attn is not installed (with it, transformers' own
  `flash_attention_2/3` read the same kwargs).
- `packed_sdpa`: SDPA once per sample, the CPU reference (tests, the demo). On a GPU such a loop launches thousands
  of tiny kernels per step, so it refuses accelerator tensors.

transformers' `sdpa` on such a row builds a dense `total x total` block-diagonal mask instead (O(total^2) work).
Anything that is not one padding-free row (padded batches, generation with a KV cache) takes the plain `sdpa` path,
mask included: the mask function is `sdpa`'s except for one unpadded row without a cache. Full-attention models only
(a sliding window would be lost). `configure_speed` (`train/run.py`) picks one; `model.set_attn_implementation(name)`
does it by hand.
"""

import functools
import inspect
import math

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface

PACKED_SDPA = "packed_sdpa"
PACKED_VARLEN = "packed_varlen"
BOUNDARY_KWARGS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
MAX_VARLEN_HEAD_DIM = 256  # FlashAttention-2's limit


def packed_mask(batch_size: int, q_length: int, kv_length: int, attention_mask=None, **kwargs):
    """No mask for one unpadded row without a cache (the attention reads the sample boundaries); else `sdpa`'s mask."""
    if batch_size == 1 and q_length == kv_length and attention_mask is None:
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, attention_mask=attention_mask,
                     **kwargs)


def boundaries_from_position_ids(position_ids: torch.Tensor) -> dict:
    """The boundary kwargs of one padding-free row found from its `position_ids` (a sample starts where positions stop
    counting up by one: transformers' `find_packed_sequence_indices` rule). Reads the tensor on the host, so on a GPU
    it is a device sync: only for callers that pass a row without the collator's boundaries."""
    positions = position_ids.reshape(-1)
    starts = torch.nonzero(positions[1:] != positions[:-1] + 1).flatten() + 1
    offsets = [0, *starts.tolist(), positions.numel()]
    cu_seq_lens = torch.tensor(offsets, dtype=torch.int32, device=position_ids.device)
    longest = max(end - start for start, end in zip(offsets[:-1], offsets[1:]))
    return {"cu_seq_lens_q": cu_seq_lens, "cu_seq_lens_k": cu_seq_lens, "max_length_q": longest, "max_length_k": longest}


def _row_boundaries(query, key, attention_mask, position_ids, kwargs) -> dict | None:
    """The sample boundaries of this call's padding-free row, or None when it is not one (padded batch, KV cache)."""
    if attention_mask is not None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return None
    if kwargs.get("cu_seq_lens_q") is not None:
        q = (kwargs["cu_seq_lens_q"], kwargs["max_length_q"])
        k = (kwargs.get("cu_seq_lens_k"), kwargs.get("max_length_k"))
        k = q if k[0] is None else k
        return {"cu_seq_lens_q": q[0], "cu_seq_lens_k": k[0], "max_length_q": q[1], "max_length_k": k[1]}
    if position_ids is None:
        return None
    return boundaries_from_position_ids(position_ids)


def _without_boundaries(kwargs: dict) -> dict:
    return {key: value for key, value in kwargs.items() if key not in BOUNDARY_KWARGS}


def packed_sdpa_attention_forward(module, query, key, value, attention_mask, position_ids=None, **kwargs):
    """`query` `[1, heads, total, head_dim]` of a padding-free row -> `[1, total, heads, head_dim]`, SDPA causal per
    sample (the CPU reference of `packed_varlen`)."""
    bounds = _row_boundaries(query, key, attention_mask, position_ids, kwargs)
    kwargs = _without_boundaries(kwargs)
    if bounds is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if query.device.type != "cpu":
        raise ValueError(f"packed_sdpa runs one SDPA call per sample, a CPU reference; on {query.device.type} use "
                         f"{PACKED_VARLEN} or flash_attention_2 (see `varlen_unsupported_reason`) or padded rows")
    offsets = bounds["cu_seq_lens_q"].tolist()  # a host tensor: no device sync on a CPU
    outputs = [
        sdpa_attention_forward(module, query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], None,
                               **kwargs)[0]
        for start, end in zip(offsets[:-1], offsets[1:])
    ]
    return torch.cat(outputs, dim=1), None


@functools.cache
def _varlen_api():
    """(`varlen_attn`, its keyword parameters) of the installed torch, or None before 2.10.

    The signature moved: 2.10 has `is_causal`; 2.11 replaced it with `window_size` ((-1, 0) is causal) and added
    `scale`; 2.12 added `enable_gqa` (required when there are fewer key/value heads than query heads)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


def varlen_attention(query, key, value, bounds: dict, scale: float | None = None, causal: bool = True):
    """`varlen_attn` on `[total, heads, head_dim]` tensors with whatever keywords the installed torch spells."""
    api = _varlen_api()
    if api is None:
        raise RuntimeError(f"torch {torch.__version__} has no torch.nn.attention.varlen (it needs torch >= 2.10)")
    varlen_attn, params = api
    options = {}
    if "window_size" in params:
        options["window_size"] = (-1, 0) if causal else (-1, -1)
    else:
        options["is_causal"] = causal
    if "scale" in params:
        options["scale"] = scale
    elif scale is not None and not math.isclose(scale, query.shape[-1] ** -0.5):
        raise ValueError(f"torch {torch.__version__}'s varlen_attn has no `scale`; this model scales by {scale}")
    if key.shape[1] != query.shape[1]:
        if "enable_gqa" in params:
            options["enable_gqa"] = True
        else:  # 2.10 / 2.11: no GQA flag; query head i uses key/value head i // group, as repeat_kv orders them
            group = query.shape[1] // key.shape[1]
            key, value = (t.repeat_interleave(group, dim=1) for t in (key, value))
    return varlen_attn(query, key, value, bounds["cu_seq_lens_q"], bounds["cu_seq_lens_k"], bounds["max_length_q"],
                       bounds["max_length_k"], **options)


def packed_varlen_attention_forward(module, query, key, value, attention_mask, position_ids=None, dropout=0.0,
                                    scaling=None, **kwargs):
    """`query` `[1, heads, total, head_dim]` of a padding-free row -> `[1, total, heads, head_dim]`: one `varlen_attn`
    call for all samples, causal within each."""
    bounds = _row_boundaries(query, key, attention_mask, position_ids, kwargs)
    kwargs = _without_boundaries(kwargs)
    if bounds is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if dropout:
        raise ValueError(f"{PACKED_VARLEN} has no attention dropout (got {dropout}); set attention_dropout to 0")
    # [1, heads, total, head_dim] -> [total, heads, head_dim]: a view (the kernel needs only the last dim contiguous)
    query, key, value = (t[0].transpose(0, 1) for t in (query, key, value))
    out = varlen_attention(query, key, value, bounds, scale=scaling, causal=getattr(module, "is_causal", True))
    return out.unsqueeze(0), None


# Read by `InternLM2Model`: these functions take the boundaries from the kwargs, so the model builds no mask (and
# transformers' mask utilities do not look for sample starts in `position_ids`, a host sync).
packed_sdpa_attention_forward.reads_row_boundaries = True
packed_varlen_attention_forward.reads_row_boundaries = True


def varlen_unsupported_reason(device: torch.device, dtype: torch.dtype, head_dim: int,
                              scaling: float | None = None) -> str | None:
    """Why `packed_varlen` cannot serve a model on `device` computing in `dtype`, or None when it can."""
    device = torch.device(device)
    if _varlen_api() is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen (torch >= 2.10)"
    if device.type != "cuda":
        return f"varlen_attn runs on CUDA only, not {device.type}"
    if torch.version.hip:
        return "varlen_attn is not verified on ROCm"
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        return f"{torch.cuda.get_device_name(device)} is sm{major}{minor}; varlen_attn's FlashAttention-2 needs sm80+"
    if dtype not in (torch.float16, torch.bfloat16):
        return f"the model computes in {dtype}; varlen_attn needs float16 or bfloat16"
    if head_dim > MAX_VARLEN_HEAD_DIM or head_dim % 8:
        return f"head_dim {head_dim}: varlen_attn needs a multiple of 8 up to {MAX_VARLEN_HEAD_DIM}"
    if scaling is not None and "scale" not in _varlen_api()[1] and not math.isclose(scaling, head_dim**-0.5):
        return f"torch {torch.__version__}'s varlen_attn has no `scale` and the model scales by {scaling}"
    return None


def register() -> None:
    for name, function in ((PACKED_SDPA, packed_sdpa_attention_forward),
                           (PACKED_VARLEN, packed_varlen_attention_forward)):
        AttentionInterface.register(name, function)
        AttentionMaskInterface.register(name, packed_mask)
