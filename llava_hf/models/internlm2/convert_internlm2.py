"""State-dict conversion between InternLM2's packed layout and transformers' Llama layout.

The two architectures compute the same function; only names and the `wqkv` packing differ. These helpers
are the ground truth for the parity tests and for exporting to stock `LlavaForConditionalGeneration`.
"""

import torch

_RENAMES = [  # (internlm2 suffix, llama suffix) inside `model.layers.N.`
    ("attention.wo.", "self_attn.o_proj."),
    ("feed_forward.w1.", "mlp.gate_proj."),
    ("feed_forward.w3.", "mlp.up_proj."),
    ("feed_forward.w2.", "mlp.down_proj."),
    ("attention_norm.", "input_layernorm."),
    ("ffn_norm.", "post_attention_layernorm."),
]


def _geometry(config) -> tuple[int, int, int]:
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    return kv_heads, heads // kv_heads, config.hidden_size // heads


def split_wqkv(wqkv: torch.Tensor, config, name: str = "wqkv") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unpack a `wqkv` weight [(H+2KV)*D, hidden] (or bias [(H+2KV)*D]) into q, k, v."""
    kv_heads, groups, head_dim = _geometry(config)
    rows = kv_heads * (groups + 2) * head_dim
    if wqkv.shape[0] != rows:
        raise ValueError(
            f"{name}: shape {tuple(wqkv.shape)} does not match the config, which needs {rows} rows "
            f"((num_attention_heads {config.num_attention_heads} + 2 * num_key_value_heads {kv_heads}) * head_dim {head_dim})"
        )
    packed = wqkv.reshape(kv_heads, groups + 2, head_dim, *wqkv.shape[1:])
    q = packed[:, :groups].reshape(kv_heads * groups * head_dim, *wqkv.shape[1:])
    k = packed[:, groups].reshape(kv_heads * head_dim, *wqkv.shape[1:])
    v = packed[:, groups + 1].reshape(kv_heads * head_dim, *wqkv.shape[1:])
    return q, k, v


def pack_wqkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, config) -> torch.Tensor:
    """Inverse of `split_wqkv`."""
    kv_heads, groups, head_dim = _geometry(config)
    rest = q.shape[1:]
    return torch.cat(
        [
            q.reshape(kv_heads, groups, head_dim, *rest),
            k.reshape(kv_heads, 1, head_dim, *rest),
            v.reshape(kv_heads, 1, head_dim, *rest),
        ],
        dim=1,
    ).reshape(-1, *rest)


def internlm2_to_llama_state_dict(state_dict: dict, config, prefix: str = "") -> dict:
    """Map an `InternLM2ForCausalLM` state dict (keys under `prefix`) to `LlamaForCausalLM` names.

    `prefix` lets the same function convert the language model inside a LLaVA state dict; keys outside it
    are returned unchanged. A head named `output.weight` becomes `lm_head.weight`.
    """
    out = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            out[key] = value
            continue
        name = key[len(prefix):]
        if name == "output.weight":
            out[prefix + "lm_head.weight"] = value
        elif name == "model.tok_embeddings.weight":
            out[prefix + "model.embed_tokens.weight"] = value
        elif ".attention.wqkv." in name:
            layer, kind = name.split(".attention.wqkv.")
            q, k, v = split_wqkv(value, config, name=key)
            for proj, tensor in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                out[f"{prefix}{layer}.self_attn.{proj}.{kind}"] = tensor
        else:
            for old, new in _RENAMES:
                name = name.replace(f".{old}", f".{new}")
            out[prefix + name] = value
    return out


def llama_to_internlm2_state_dict(state_dict: dict, config, prefix: str = "") -> dict:
    """Inverse of `internlm2_to_llama_state_dict`."""
    out, pending = {}, {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            out[key] = value
            continue
        name = key[len(prefix):]
        if name == "lm_head.weight":
            out[prefix + "output.weight"] = value
        elif name == "model.embed_tokens.weight":
            out[prefix + "model.tok_embeddings.weight"] = value
        elif any(f".self_attn.{p}_proj." in name for p in "qkv"):
            layer, rest = name.split(".self_attn.")
            proj, kind = rest.split(".", 1)
            pending.setdefault((layer, kind), {})[proj[0]] = value
        else:
            for old, new in _RENAMES:
                name = name.replace(f".{new}", f".{old}")
            out[prefix + name] = value
    for (layer, kind), parts in pending.items():
        missing = {"q", "k", "v"} - set(parts)
        if missing:
            raise ValueError(f"{prefix}{layer}.self_attn: missing {sorted(missing)} projection(s) for `{kind}`")
        out[f"{prefix}{layer}.attention.wqkv.{kind}"] = pack_wqkv(parts["q"], parts["k"], parts["v"], config)
    return out


def internlm2_config_to_llama_config(config):
    """The `LlamaConfig` that computes the same function as an `InternLM2Config`."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        head_dim=config.head_dim,
        hidden_act=config.hidden_act,
        max_position_embeddings=config.max_position_embeddings,
        rms_norm_eps=config.rms_norm_eps,
        rope_parameters=dict(config.rope_parameters),
        attention_bias=config.bias,
        mlp_bias=False,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
