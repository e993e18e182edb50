"""InternLM2 against transformers' Llama (same function, different layout) and the published folder layout."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM, LlamaForCausalLM

from llava_hf.models.internlm2 import (
    InternLM2Config,
    InternLM2ForCausalLM,
    internlm2_config_to_llama_config,
    internlm2_to_llama_state_dict,
    llama_to_internlm2_state_dict,
    split_wqkv,
)
from tests.arithmetic import compare_env

VOCAB = 120


def tiny_config(heads=8, kv_heads=2, rope_scaling=None, max_pos=64, bias=False, **kw):
    return InternLM2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_pos,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        rope_scaling=rope_scaling,
        bias=bias,
        pad_token_id=2,
        **kw,
    )


def random_model(config, seed=0):
    torch.manual_seed(seed)
    model = InternLM2ForCausalLM(config).eval()
    with torch.no_grad():  # norms start at 1; randomise them so a swapped norm would show
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.normal_(1.0 if "norm" in name else 0.0, 0.1)
    return model


def llama_twin(model, attn):
    llama_config = internlm2_config_to_llama_config(model.config)
    llama_config._attn_implementation = attn
    llama = LlamaForCausalLM(llama_config).eval()
    llama.load_state_dict(internlm2_to_llama_state_dict(model.state_dict(), model.config), strict=True)
    return llama


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize(
    "heads,kv_heads,rope_scaling,seq_len",
    [
        (8, 2, None, 24),  # GQA, 4 q heads per kv head
        (4, 4, None, 24),  # MHA
        (8, 2, {"type": "dynamic", "factor": 2.0}, 21),  # dynamic NTK, past max_position_embeddings=8
        (4, 4, {"type": "dynamic", "factor": 3.0}, 21),
        (8, 4, {"type": "linear", "factor": 2.0}, 21),
    ],
)
def test_logits_match_llama(heads, kv_heads, rope_scaling, seq_len, attn):
    max_pos = 8 if rope_scaling else 64
    config = tiny_config(heads, kv_heads, rope_scaling, max_pos=max_pos)
    config._attn_implementation = attn
    model = random_model(config)
    llama = llama_twin(model, attn)
    ids = torch.randint(0, VOCAB, (2, seq_len), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # left padding on one row
    ours = model(ids, attention_mask=mask).logits
    ref = llama(ids, attention_mask=mask).logits
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_bias_checkpoint_matches_llama_attention_bias():
    config = tiny_config(8, 2, bias=True)
    model = random_model(config)
    llama = llama_twin(model, "sdpa")
    ids = torch.randint(0, VOCAB, (1, 12))
    torch.testing.assert_close(model(ids).logits, llama(ids).logits, atol=1e-5, rtol=0)


def test_dynamic_ntk_uses_the_original_formula():
    """cos/sin past max_position_embeddings equal the original remote code's dynamic-NTK recomputation."""
    factor, max_pos, theta, seq_len = 2.0, 8, 10000.0, 17
    config = tiny_config(8, 2, {"type": "dynamic", "factor": factor}, max_pos=max_pos)
    model = random_model(config)
    dim = config.head_dim
    base = theta * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
    freqs = torch.outer(torch.arange(seq_len).float(), inv_freq)
    expected_cos = torch.cat([freqs, freqs], dim=-1).cos()
    x = torch.zeros(1, seq_len, config.hidden_size)
    cos, _ = model.model.rotary_emb(x, torch.arange(seq_len)[None])
    torch.testing.assert_close(cos[0], expected_cos, atol=1e-6, rtol=0)


def test_wqkv_split_and_repack_are_exact_inverses():
    config = tiny_config(8, 2, bias=True)
    model = random_model(config)
    sd = model.state_dict()
    back = llama_to_internlm2_state_dict(internlm2_to_llama_state_dict(sd, config), config)
    assert set(back) == set(sd)
    for key in sd:
        assert torch.equal(back[key], sd[key]), key


def test_wqkv_layout_is_grouped_per_kv_head():
    """Row block j of group g is q head g*q_per_kv+j, then that group's k, then its v (published layout)."""
    config = tiny_config(4, 2)
    d, hidden = config.head_dim, config.hidden_size
    # label every row block with its (group, slot) so the split can be checked by hand
    blocks = [torch.full((d, hidden), float(10 * g + s)) for g in range(2) for s in range(4)]
    q, k, v = split_wqkv(torch.cat(blocks), config)
    assert [q[i * d, 0].item() for i in range(4)] == [0, 1, 10, 11]
    assert [k[i * d, 0].item() for i in range(2)] == [2, 12]
    assert [v[i * d, 0].item() for i in range(2)] == [3, 13]


def published_config_dict(config):
    """config.json as `internlm/internlm2-chat-7b` publishes it (auto_map, eager, torch_dtype, rope_scaling)."""
    return {
        "architectures": ["InternLM2ForCausalLM"],
        "attn_implementation": "eager",
        "auto_map": {
            "AutoConfig": "configuration_internlm2.InternLM2Config",
            "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
            "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
        },
        "bias": config.bias,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": config.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": config.intermediate_size,
        "max_position_embeddings": config.max_position_embeddings,
        "model_type": "internlm2",
        "num_attention_heads": config.num_attention_heads,
        "num_hidden_layers": config.num_hidden_layers,
        "num_key_value_heads": config.num_key_value_heads,
        "pad_token_id": 2,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_scaling": {"type": "dynamic", "factor": 2.0},
        "rope_theta": 1000000,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.41.0",
        "use_cache": True,
        "vocab_size": config.vocab_size,
    }


def write_published_folder(folder, model, fmt):
    """Two shards + index, in safetensors or .bin, with the original key names."""
    os.makedirs(folder, exist_ok=True)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    keys = sorted(sd)
    shards = [keys[: len(keys) // 2], keys[len(keys) // 2 :]]
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"{'model' if fmt == 'safetensors' else 'pytorch_model'}-0000{i + 1}-of-00002.{'safetensors' if fmt == 'safetensors' else 'bin'}"
        tensors = {k: sd[k] for k in shard}
        save_file(tensors, os.path.join(folder, name), metadata={"format": "pt"}) if fmt == "safetensors" else torch.save(
            tensors, os.path.join(folder, name)
        )
        weight_map.update({k: name for k in shard})
    index = "model.safetensors.index.json" if fmt == "safetensors" else "pytorch_model.bin.index.json"
    with open(os.path.join(folder, index), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(published_config_dict(model.config), f)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_published_folder_loads_without_remote_code(tmp_path, fmt):
    config = tiny_config(8, 2, {"type": "dynamic", "factor": 2.0}, max_pos=8)
    config.rope_parameters["rope_theta"] = 1000000.0
    model = random_model(config)
    write_published_folder(tmp_path, model, fmt)

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)  # no trust_remote_code
    assert isinstance(loaded, InternLM2ForCausalLM)
    assert loaded.config._attn_implementation == "sdpa", "the published `eager` must not force slow attention"
    assert loaded.config.rope_parameters["rope_type"] == "dynamic"
    assert loaded.config.rope_parameters["rope_theta"] == 1000000
    ids = torch.randint(0, VOCAB, (1, 20))
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=0, rtol=0)
    assert AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").config._attn_implementation == "eager"


def test_save_pretrained_keeps_original_keys_and_rope_names(tmp_path):
    config = tiny_config(8, 2, {"type": "dynamic", "factor": 2.0}, max_pos=8)
    model = random_model(config)
    model.save_pretrained(tmp_path)
    saved = json.load(open(tmp_path / "config.json"))
    assert saved["rope_theta"] == 10000.0
    assert saved["rope_scaling"] == {"type": "dynamic", "factor": 2.0}  # exactly 2 keys, float factor
    assert "attn_implementation" not in saved
    assert saved["auto_map"]["AutoModelForCausalLM"] == "modeling_internlm2.InternLM2ForCausalLM"
    from safetensors import safe_open

    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert set(f.keys()) == set(model.state_dict())
    assert "model.layers.0.attention.wqkv.weight" in model.state_dict() and "output.weight" in model.state_dict()

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.randint(0, VOCAB, (1, 12))
    torch.testing.assert_close(reloaded(ids).logits, model(ids).logits, atol=0, rtol=0)


@pytest.mark.slow
def test_saved_folder_loads_with_trust_remote_code_without_llava_hf(tmp_path):
    """The copied modeling files are self-contained (what users without llava_hf get)."""
    model = random_model(tiny_config(8, 2))
    model.save_pretrained(tmp_path / "m")
    ids = torch.randint(0, VOCAB, (1, 7))
    torch.save({"ids": ids, "logits": model(ids).logits}, tmp_path / "ref.pt")
    script = f"""
import sys
sys.path = [p for p in sys.path if p not in ('', {os.getcwd()!r})]
sys.modules['llava_hf'] = None  # hide it even when it is installed
import torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'm')!r}, trust_remote_code=True)
assert type(m).__module__.startswith('transformers_modules'), type(m).__module__
ref = torch.load({str(tmp_path / 'ref.pt')!r})
torch.testing.assert_close(m(ref['ids']).logits, ref['logits'], atol=0, rtol=0)
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env=compare_env(HF_HOME=str(tmp_path / "hf")))
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_greedy_generate_with_cache_equals_without():
    model = random_model(tiny_config(8, 2, {"type": "dynamic", "factor": 2.0}, max_pos=8))
    ids = torch.randint(3, VOCAB, (2, 6))
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=2, eos_token_id=None)
    with_cache = model.generate(ids, use_cache=True, **kwargs)
    without = model.generate(ids, use_cache=False, **kwargs)
    assert torch.equal(with_cache, without)
    assert with_cache.shape[1] == 18


def test_gradient_checkpointing_gives_the_same_gradients():
    model = random_model(tiny_config(8, 2)).train()
    ids = torch.randint(0, VOCAB, (2, 10))
    model(ids, labels=ids).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model(ids, labels=ids).loss.backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[n], atol=1e-6, rtol=1e-5)


def test_bf16_forward_runs_and_tracks_fp32():
    model = random_model(tiny_config(8, 2))
    ids = torch.randint(0, VOCAB, (1, 10))
    ref = model(ids).logits
    out = model.to(torch.bfloat16)(ids).logits
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.1


def test_wrong_wqkv_shape_names_tensor_and_shapes(tmp_path):
    config = tiny_config(8, 2)
    model = random_model(config)
    write_published_folder(tmp_path, model, "safetensors")
    cfg = json.load(open(tmp_path / "config.json"))
    cfg["num_key_value_heads"] = 4  # the checkpoint was made with 2
    json.dump(cfg, open(tmp_path / "config.json", "w"))
    with pytest.raises(ValueError) as err:
        AutoModelForCausalLM.from_pretrained(tmp_path)
    msg = str(err.value)
    assert "model.layers.0.attention.wqkv.weight" in msg or "model.layers.1.attention.wqkv.weight" in msg
    assert "(96, 64)" in msg and "(128, 64)" in msg


def test_auto_classes_resolve_internlm2():
    config = AutoConfig.for_model("internlm2", vocab_size=VOCAB, hidden_size=64, num_attention_heads=8,
                                  num_hidden_layers=1, intermediate_size=96)
    assert isinstance(config, InternLM2Config)
    assert isinstance(AutoModelForCausalLM.from_config(config), InternLM2ForCausalLM)
