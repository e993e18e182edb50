"""`packed_sdpa`: PyTorch SDPA run once per sample of a padding-free (flattened) row.

transformers gives a flattened row (one row, `position_ids` restarting at 0 per sample, no attention mask) a
block-diagonal causal mask under `sdpa`. That is correct, but SDPA then computes the whole
`total x total` score matrix and cannot use its flash kernel: for 16 samples of 1000 tokens, 16x the
attention work of the padded batch. flash-attention's varlen kernel avoids this when it is installed
(`--attn_implementation flash_attention_2`); this implementation does the same with PyTorch alone: it finds
the sample boundaries from `position_ids` and calls transformers' own `sdpa_attention_forward` with
`is_causal` on each sample, so each call gets the flash/efficient kernel and no mask is ever built.

Everything that is not one flattened row (padded batches, generation with a KV cache) takes the plain `sdpa`
path, mask included. Registered under the name `packed_sdpa` with transformers' `AttentionInterface` and
`AttentionMaskInterface` when llava_hf is imported, so any model that uses the attention interface
(InternLM2, Llama, Qwen2, ...) can use it: `model.set_attn_implementation("packed_sdpa")`.
Full-attention models only: the mask function returns no mask, so a sliding window would be lost.
"""

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface

NAME = "packed_sdpa"


def packed_sdpa_mask(batch_size: int, q_length: int, kv_length: int, attention_mask=None, **kwargs):
    """No mask for one unpadded row without a cache (the attention splits it per sample); else `sdpa`'s mask."""
    if batch_size == 1 and q_length == kv_length and attention_mask is None:
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, attention_mask=attention_mask,
                     **kwargs)


def sample_boundaries(position_ids: torch.Tensor) -> list[int]:
    """Start offsets of the samples in one flattened row, plus its length: where positions stop counting up by one
    (the rule of transformers' `find_packed_sequence_indices`)."""
    positions = position_ids.reshape(-1)
    starts = torch.nonzero(positions[1:] != positions[:-1] + 1).flatten() + 1
    return [0, *starts.tolist(), positions.numel()]


def packed_sdpa_attention_forward(module, query, key, value, attention_mask, position_ids=None, **kwargs):
    """`query` `[1, heads, total, head_dim]` of a flattened row -> `[1, total, heads, head_dim]`, causal per sample."""
    if attention_mask is not None or position_ids is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    bounds = sample_boundaries(position_ids)
    if len(bounds) == 2:
        return sdpa_attention_forward(module, query, key, value, None, **kwargs)
    outputs = [
        sdpa_attention_forward(module, query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], None,
                               **kwargs)[0]
        for start, end in zip(bounds[:-1], bounds[1:])
    ]
    return torch.cat(outputs, dim=1), None


def register() -> None:
    AttentionInterface.register(NAME, packed_sdpa_attention_forward)
    AttentionMaskInterface.register(NAME, packed_sdpa_mask)
