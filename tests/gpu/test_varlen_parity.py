"""On a CUDA GPU: the padding-free path (one varlen attention call per layer) trains like padded rows, for InternLM2
and Llama text models with GQA, in bf16; and the optional fused kernels keep the numbers. Skipped without CUDA, so
CI never runs it; `bash tests/gpu/issue21.sh` runs it with the benchmark.

Run alone: `python -m pytest -q tests/gpu/test_varlen_parity.py`.
"""

import pytest
import torch
from transformers import CLIPVisionConfig, LlamaConfig

from llava_hf.data.collator import LlavaDataCollator
from llava_hf.models import packed_attention
from llava_hf.models.internlm2 import InternLM2Config
from llava_hf.models.llava_internlm2 import LlavaInternLM2Config, LlavaInternLM2ForConditionalGeneration

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

IMAGE_TOKEN_ID = 1999
VISION = CLIPVisionConfig(image_size=56, patch_size=14, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                          num_attention_heads=2)  # 16 image tokens
TEXT = dict(vocab_size=2000, hidden_size=512, intermediate_size=1024, num_hidden_layers=3, num_attention_heads=8,
            num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=0, tie_word_embeddings=False)


def make_model(text_model: str, attention: str):
    torch.manual_seed(0)
    text = InternLM2Config(**TEXT) if text_model == "internlm2" else LlamaConfig(**TEXT)
    config = LlavaInternLM2Config(text_config=text, vision_config=VISION, image_token_id=IMAGE_TOKEN_ID)
    with torch.device("cuda"):
        model = LlavaInternLM2ForConditionalGeneration(config).to(torch.bfloat16)
    model.language_model.set_attn_implementation(attention)
    model.config.use_cache = False
    model.enable_supervised_loss(64)
    return model.train()


def make_items(n=6, seed=0):
    """Samples of very different lengths (7 to ~700 tokens), images in most, replies supervised."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        length = int(torch.randint(6, 700, (1,), generator=generator))
        ids = torch.randint(1, 1900, (length,), generator=generator).tolist()
        image = i % 3 != 2
        if image:
            ids = ids[:1] + [IMAGE_TOKEN_ID] * 16 + ids[1:]
        labels = [-100] * (len(ids) // 2) + ids[len(ids) // 2:]
        item = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
        if image:
            item["pixel_values"] = torch.randn(3, 56, 56, generator=generator)
        items.append(item)
    return items


def loss_and_grads(model, batch):
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}
    batch["pixel_values"] = batch["pixel_values"].to(torch.bfloat16)
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    return loss.float().item(), {n: p.grad.float().flatten() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_training(loss, grads, reference_loss, reference_grads):
    assert abs(loss - reference_loss) <= 0.02 * abs(reference_loss), (loss, reference_loss)  # bf16 rounding
    assert grads.keys() == reference_grads.keys()
    flat = torch.cat([grads[n] for n in sorted(grads)])
    reference = torch.cat([reference_grads[n] for n in sorted(grads)])
    assert torch.nn.functional.cosine_similarity(flat, reference, dim=0) > 0.999
    for name in sorted(grads):  # and parameter by parameter, where a gradient is not ~zero
        if reference_grads[name].norm() > 1e-3 * reference.norm():
            cosine = torch.nn.functional.cosine_similarity(grads[name], reference_grads[name], dim=0)
            assert cosine > 0.99, (name, float(cosine))


@pytest.mark.parametrize("text_model", ["internlm2", "llama"])
def test_varlen_path_trains_like_padded_rows(text_model):
    reason = packed_attention.varlen_unsupported_reason(torch.device("cuda"), torch.bfloat16, 64)
    if reason:
        pytest.skip(reason)
    items = make_items()
    reference = loss_and_grads(make_model(text_model, "sdpa"), LlavaDataCollator(0)(items))
    packed = loss_and_grads(make_model(text_model, packed_attention.PACKED_VARLEN),
                            LlavaDataCollator(0, padding_free=True)(items))
    assert_same_training(*packed, *reference)


def test_varlen_attn_takes_gqa_as_this_torch_spells_it():
    """torch 2.10/2.11 have no `enable_gqa`: `varlen_attention` repeats the key/value heads there. Whether the bundled
    kernel would take fewer key/value heads as they are is recorded here (skip = it refuses them)."""
    api = packed_attention._varlen_api()
    if api is None:
        pytest.skip(f"torch {torch.__version__} has no varlen_attn")
    varlen_attn, params = api
    torch.manual_seed(0)
    q = torch.randn(300, 8, 64, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(300, 2, 64, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    bounds = {"cu_seq_lens_q": torch.tensor([0, 100, 300], dtype=torch.int32, device="cuda"), "max_length_q": 200}
    bounds.update(cu_seq_lens_k=bounds["cu_seq_lens_q"], max_length_k=200)
    ours = packed_attention.varlen_attention(q, k, v, bounds, scale=0.125)
    expected = torch.cat([torch.nn.functional.scaled_dot_product_attention(
        *(t[s:e].transpose(0, 1) for t in (q, k.repeat_interleave(4, 1), v.repeat_interleave(4, 1))), is_causal=True,
        scale=0.125).transpose(0, 1) for s, e in ((0, 100), (100, 300))])
    torch.testing.assert_close(ours, expected, atol=2e-2, rtol=2e-2)
    if "enable_gqa" in params:
        return
    causal = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}
    try:
        raw = varlen_attn(q, k, v, bounds["cu_seq_lens_q"], bounds["cu_seq_lens_k"], 200, 200, **causal)
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"torch {torch.__version__}: varlen_attn refuses GQA key/value heads ({error}); keep repeating them")
    torch.testing.assert_close(raw, expected, atol=2e-2, rtol=2e-2)
    print(f"torch {torch.__version__}: varlen_attn takes GQA key/value heads as they are")


def test_flash_attention_2_reads_the_same_boundaries():
    from transformers.utils import is_flash_attn_2_available

    if not is_flash_attn_2_available():
        pytest.skip("flash-attn is not installed")
    items = make_items()
    reference = loss_and_grads(make_model("internlm2", "sdpa"), LlavaDataCollator(0)(items))
    packed = loss_and_grads(make_model("internlm2", "flash_attention_2"), LlavaDataCollator(0, padding_free=True)(items))
    assert_same_training(*packed, *reference)


def test_liger_kernels_keep_the_numbers():
    pytest.importorskip("liger_kernel")
    from llava_hf.models.fused_kernels import apply_liger_kernel

    items = make_items()
    batch = LlavaDataCollator(0, padding_free=True)(items)
    reference = loss_and_grads(make_model("internlm2", packed_attention.PACKED_VARLEN), batch)
    model = make_model("internlm2", packed_attention.PACKED_VARLEN)
    from llava_hf.models.internlm2 import modeling_internlm2

    rotary = modeling_internlm2.apply_rotary_pos_emb
    try:
        apply_liger_kernel(model)
        assert_same_training(*loss_and_grads(model, batch), *reference)
    finally:
        modeling_internlm2.apply_rotary_pos_emb = rotary


def test_regional_compile_keeps_the_numbers():
    """Three batches of other lengths through the compiled layers (dynamic shapes); the recompile count is printed."""
    from llava_hf.models.fused_kernels import compile_decoder_layers

    model = make_model("internlm2", packed_attention.PACKED_VARLEN)
    compile_decoder_layers(model)
    eager = make_model("internlm2", packed_attention.PACKED_VARLEN)
    torch._dynamo.utils.counters.clear()
    for seed in range(3):
        batch = LlavaDataCollator(0, padding_free=True)(make_items(seed=seed))
        assert_same_training(*loss_and_grads(model, batch), *loss_and_grads(eager, batch))
    print(f"regional compile, dynamo counters after 3 batches: {dict(torch._dynamo.utils.counters['stats'])}")
