"""The speed decisions of `configure_speed` (`train/speed.py`): rows and attention for `--padding_free auto/true/false`
on each kind of machine, `--gradient_checkpointing auto` from the activation-memory model, the tri-state flags, and
the wiring of the optional fused kernels (liger-kernel itself needs CUDA + Triton: `tests/gpu/` runs it)."""

import logging
import sys
import types

import pytest
import torch

from llava_hf.data.collator import LlavaDataCollator
from llava_hf.errors import UserInputError
from llava_hf.models import packed_attention
from llava_hf.models.internlm2 import InternLM2Config
from llava_hf.train import speed
from llava_hf.train.arguments import true_false_or_auto
from llava_hf.testing.step_trace import training_arguments
from llava_hf.train.model_setup import configure_trainable
from llava_hf.train.run import configure_speed
from tests.models.test_packed_forward import loss_and_grads, make_items, make_model

TEXT = InternLM2Config(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8)
CUDA = torch.device("cuda", 0)


@pytest.mark.parametrize("value, expected", [
    ("auto", "auto"), ("AUTO", "auto"), ("true", True), ("False", False), ("yes", True), ("0", False), (True, True),
    (None, None),
])
def test_true_false_or_auto(value, expected):
    assert true_false_or_auto("padding_free", value) == expected


def test_true_false_or_auto_names_the_flag():
    with pytest.raises(ValueError, match="--padding_free must be true, false or auto, got 'sometimes'"):
        true_false_or_auto("padding_free", "sometimes")


def test_flags_parse_from_the_command_line_and_recipes(tmp_path):
    from llava_hf.train.arguments import parse_args

    def parsed(*argv, recipe=None):
        return parse_args(["--output_dir", str(tmp_path), *argv], default_recipe=recipe)[2]

    args = parsed()
    assert args.padding_free == "auto" and not args.gradient_checkpointing  # auto packs; checkpointing stays opt-in
    args = parsed("--padding_free", "--gradient_checkpointing", "auto")  # a bare flag means true, as HF's bools
    assert args.padding_free is True and args.gradient_checkpointing == "auto"
    assert parsed("--padding_free", "False").padding_free is False
    assert parsed(recipe={"padding_free": False, "gradient_checkpointing": True}).padding_free is False  # YAML bools
    with pytest.raises(ValueError, match="--gradient_checkpointing must be true, false or auto"):
        parsed("--gradient_checkpointing", "sometimes")


@pytest.fixture
def gpu(monkeypatch):
    """A CUDA device as `choose_rows` sees it: no flash-attn, and `varlen_attn` serving unless a test says why not."""
    monkeypatch.setattr(speed, "flash_attention_implementation", lambda device: None)
    reason = {"why": None}
    monkeypatch.setattr(packed_attention, "varlen_unsupported_reason", lambda *args, **kwargs: reason["why"])
    return reason


def test_auto_packs_with_the_varlen_kernel_where_it_serves(gpu):
    choice = speed.choose_rows("auto", None, CUDA, torch.bfloat16, TEXT)
    assert (choice.padding_free, choice.attention) == (True, packed_attention.PACKED_VARLEN)
    assert "varlen_attn" in choice.reason


def test_auto_pads_where_no_varlen_kernel_serves_and_true_refuses(gpu):
    gpu["why"] = "Tesla T4 is sm75; varlen_attn's FlashAttention-2 needs sm80+"
    choice = speed.choose_rows("auto", None, CUDA, torch.float16, TEXT)
    assert (choice.padding_free, choice.attention) == (False, None) and "sm75" in choice.reason
    with pytest.raises(UserInputError, match="--padding_free true: no varlen attention kernel serves here .*sm75"):
        speed.choose_rows(True, None, CUDA, torch.float16, TEXT)
    assert speed.choose_rows(False, None, CUDA, torch.bfloat16, TEXT).padding_free is False


def test_flash_attn_comes_first(gpu, monkeypatch):
    monkeypatch.setattr(speed, "flash_attention_implementation", lambda device: "flash_attention_2")
    assert speed.choose_rows("auto", None, CUDA, torch.bfloat16, TEXT).attention == "flash_attention_2"
    # not in float32: the kernel needs half precision, and neither does varlen_attn serve then
    gpu["why"] = "the model computes in torch.float32; varlen_attn needs float16 or bfloat16"
    assert speed.choose_rows("auto", None, CUDA, torch.float32, TEXT).padding_free is False


def test_cpu_packs_with_the_reference_and_named_attentions_decide(gpu):
    cpu = torch.device("cpu")
    choice = speed.choose_rows("auto", None, cpu, torch.float32, TEXT)
    assert (choice.padding_free, choice.attention) == (True, packed_attention.PACKED_SDPA)
    # an attention that reads the boundaries packs; one that would need a mask over the whole row does not, unless
    # forced
    assert speed.choose_rows("auto", "flash_attention_2", CUDA, torch.bfloat16, TEXT).padding_free is True
    assert speed.choose_rows("auto", "sdpa", cpu, torch.float32, TEXT).padding_free is False
    assert speed.choose_rows(True, "sdpa", cpu, torch.float32, TEXT).padding_free is True
    sliding = InternLM2Config(layer_types=["sliding_attention", "full_attention"], num_hidden_layers=2)
    assert speed.choose_rows("auto", None, cpu, torch.float32, sliding).padding_free is False
    with pytest.raises(UserInputError, match="full attention only"):
        speed.choose_rows(True, None, cpu, torch.float32, sliding)


def test_varlen_unsupported_reasons(monkeypatch):
    assert "CUDA only" in packed_attention.varlen_unsupported_reason(torch.device("cpu"), torch.bfloat16, 128)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(torch.version, "hip", None)
    if packed_attention._varlen_api() is None:
        pytest.skip("this torch has no varlen_attn")
    assert "sm75" in packed_attention.varlen_unsupported_reason(CUDA, torch.bfloat16, 128)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert packed_attention.varlen_unsupported_reason(CUDA, torch.bfloat16, 128) is None
    assert "float16 or bfloat16" in packed_attention.varlen_unsupported_reason(CUDA, torch.float32, 128)
    assert "head_dim 320" in packed_attention.varlen_unsupported_reason(CUDA, torch.bfloat16, 320)


def test_configure_speed_logs_the_rows_and_why(caplog):
    model = make_model("sdpa")
    args = training_arguments("pretrain")
    with caplog.at_level(logging.INFO, logger="llava_hf.train"):
        loaded = configure_speed(model, types.SimpleNamespace(attn_implementation=None), args)
    assert loaded == "sdpa" and args.padding_free is True
    assert model.config.text_config._attn_implementation == packed_attention.PACKED_SDPA
    rows = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rows:")]
    assert rows == ["rows: padding-free, attention packed_sdpa (CPU: SDPA per sample of the row (the reference path))"]


# ----------------------------------------------------------------------------------------- checkpointing


def memory_model(gigabytes_free: float, total: float = 80):
    return int(gigabytes_free * speed.GIB), int(total * speed.GIB)


def test_activation_model_counts_what_backward_keeps():
    frozen = speed.activation_bytes_per_token(TEXT, 2, trainable=False)
    trained = speed.activation_bytes_per_token(TEXT, 2, trainable=True)
    # InternLM2-7B: ~155 KB per token and layer with a frozen LLM (stage 1), ~200 KB when it trains
    assert 140e3 < frozen < 170e3 and 190e3 < trained < 220e3


@pytest.mark.parametrize("free_gib, expect", [(500, "none"), (61, "half"), (12, "all")])
def test_auto_checkpoints_as_many_layers_as_memory_needs(free_gib, expect):
    from llava_hf.models.llava_internlm2 import LlavaInternLM2Config, LlavaInternLM2ForConditionalGeneration
    from tests.models.test_packed_forward import TEXT as TINY
    from tests.models.test_packed_forward import VISION

    config = LlavaInternLM2Config(text_config=InternLM2Config(**{**TINY, "num_hidden_layers": 8}),
                                  vision_config=VISION, image_token_id=95)
    model = LlavaInternLM2ForConditionalGeneration(config)
    model.requires_grad_(False)  # stage 1: the LLM is frozen
    args = training_arguments("pretrain", gradient_checkpointing="auto")
    # a batch whose activations take 10 GiB per layer; 80 GiB card, 7.4 GiB margin
    tokens = int(10 * speed.GIB / speed.activation_bytes_per_token(config.text_config, 4, trainable=False))
    choice = speed.choose_checkpointing(model, args, tokens, images=0, device=CUDA, memory=memory_model(free_gib))
    assert f"longest micro-batch {tokens} tokens, ~10.00 GiB of activations per layer" in choice.reason
    if expect == "none":
        assert not choice.enabled and "auto: none" in choice.reason
    elif expect == "all":
        assert choice.enabled and (choice.every_n_layers, choice.checkpointed) == (1, 8)
    else:  # ~53.6 GiB left: 8 layers + the one being recomputed need 4 of them checkpointed (decoder indices 2..9)
        assert choice.enabled and (choice.every_n_layers, choice.checkpointed) == (2, 4), choice
        assert "auto: 4 of 8 decoder layers (every_n_layers 2;" in choice.reason


def test_auto_checkpointing_on_a_cpu_is_none_and_explicit_values_pass_through():
    model = make_model()
    args = training_arguments("pretrain", gradient_checkpointing="auto")
    assert not speed.choose_checkpointing(model, args, 1000, 0, torch.device("cpu")).enabled
    args = training_arguments("pretrain", gradient_checkpointing=True, checkpoint_every_n_layers=3)
    choice = speed.choose_checkpointing(model, args, 1000, 0, torch.device("cpu"))
    assert choice.enabled and choice.every_n_layers == 3
    speed.apply_checkpointing(args, speed.CheckpointChoice(False, 1, 0, ""))
    assert args.gradient_checkpointing is False


def test_every_n_counts_the_vit_layers_first():
    model = make_model()  # 2 ViT layers, then 2 decoder layers
    indices = speed.decoder_layer_indices(model)
    assert indices == [2, 3]
    assert speed.every_n_for(indices, 1) == (2, 1)  # every 2nd: combined index 2 checkpoints, 3 does not
    assert speed.every_n_for(indices, 2) == (1, 2)
    assert speed.longest_micro_batch([100, -300, 50, 200], 2, None, True) == (500, 2)
    assert speed.longest_micro_batch([100, -300, 50, 200], 2, None, False) == (600, 2)
    assert speed.longest_micro_batch([100, -300, 50, 200], 2, 1000, True) == (1000, 3)


# ----------------------------------------------------------------------------------------------- frozen parts


@pytest.mark.parametrize("tune_vision_tower", ["frozen", "lora", "full"])
def test_a_frozen_vit_keeps_no_activations_and_a_trained_one_gets_gradients(tune_vision_tower):
    model = make_model().train()
    outputs = []
    model.vision_tower.register_forward_hook(lambda module, args, output: outputs.append(output.hidden_states[-2]))
    args = training_arguments("finetune-lora", lora_r=4, lora_alpha=8, lora_dropout=0.0,
                              tune_vision_tower=tune_vision_tower, vision_lora_r=2, vision_lora_alpha=4)
    peft_model = configure_trainable(model, args)
    batch = LlavaDataCollator(0, padding_free=True)(make_items())
    loss_and_grads(peft_model, batch)
    vit_grads = [p.grad for n, p in model.vision_tower.named_parameters() if p.grad is not None]
    if tune_vision_tower == "frozen":
        assert outputs[0].grad_fn is None and not outputs[0].requires_grad  # ran under no_grad: nothing kept
        assert vit_grads == []
    else:
        assert outputs[0].requires_grad
        assert vit_grads and any(torch.count_nonzero(g) for g in vit_grads)  # (LoRA A: zero while B is zero)


# ----------------------------------------------------------------------------------------------- fused kernels


@pytest.fixture
def fake_liger(monkeypatch):
    """liger-kernel's four pieces as plain PyTorch (the real ones are Triton, CUDA only): the wiring can be checked
    on a CPU, and each must give the unpatched model's numbers."""
    from torch import nn

    class RMSNorm(nn.Module):
        def __init__(self, hidden_size, eps=1e-6, casting_mode="llama"):
            super().__init__()
            self.weight, self.variance_epsilon = nn.Parameter(torch.ones(hidden_size)), eps

        def forward(self, x):
            variance = x.float().pow(2).mean(-1, keepdim=True)
            return self.weight * (x.float() * torch.rsqrt(variance + self.variance_epsilon)).to(x.dtype)

    class SiLUMul(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return nn.functional.silu(a) * b

        @staticmethod
        def backward(ctx, grad):
            a, b = ctx.saved_tensors
            sig = torch.sigmoid(a)
            return grad * b * sig * (1 + a * (1 - sig)), grad * nn.functional.silu(a)

    def rotary(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):
        from llava_hf.models.internlm2.modeling_internlm2 import rotate_half

        cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin

    class FusedLinearCrossEntropy(nn.Module):
        def __init__(self, reduction="mean", ignore_index=-100):
            super().__init__()
            self.reduction, self.ignore_index = reduction, ignore_index

        def forward(self, weight, hidden, target, bias=None):
            return nn.functional.cross_entropy((hidden @ weight.T).float(), target, reduction=self.reduction)

    modules = {
        "liger_kernel": types.ModuleType("liger_kernel"),
        "liger_kernel.ops.swiglu": types.SimpleNamespace(LigerSiLUMulFunction=SiLUMul),
        "liger_kernel.transformers.fused_linear_cross_entropy": types.SimpleNamespace(
            LigerFusedLinearCrossEntropyLoss=FusedLinearCrossEntropy),
        "liger_kernel.transformers.rms_norm": types.SimpleNamespace(LigerRMSNorm=RMSNorm),
        "liger_kernel.transformers.rope": types.SimpleNamespace(liger_rotary_pos_emb=rotary),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    from llava_hf.models.internlm2 import modeling_internlm2

    # the rotary patch is module-level, as liger's own are: undone after the test
    monkeypatch.setattr(modeling_internlm2, "apply_rotary_pos_emb", modeling_internlm2.apply_rotary_pos_emb)
    return RMSNorm


def test_liger_kernels_patch_our_modules_and_keep_the_numbers(fake_liger):
    from llava_hf.models.fused_kernels import apply_liger_kernel

    batch = LlavaDataCollator(0, padding_free=True)(make_items())
    model = make_model("packed_sdpa").train()
    model.enable_supervised_loss(4)
    loss, grads = loss_and_grads(model, batch)
    report = apply_liger_kernel(model)
    assert "5 RMSNorm, 2 SwiGLU, rotary" in report and "fused linear cross-entropy" in report
    norms = [m for m in model.language_model.modules() if isinstance(m, fake_liger)]
    assert len(norms) == 5 and norms[0].weight is model.language_model.model.layers[0].attention_norm.weight
    fused_loss, fused_grads = loss_and_grads(model, batch)
    torch.testing.assert_close(fused_loss, loss, atol=1e-5, rtol=0)
    for name, grad in grads.items():
        torch.testing.assert_close(fused_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_liger_is_refused_before_loading_without_cuda_or_the_package(monkeypatch):
    args = training_arguments("pretrain", use_liger_kernel=True)
    with pytest.raises(UserInputError, match="--use_liger_kernel: liger-kernel's Triton kernels need a CUDA GPU"):
        speed.check_speed_options(args)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "liger_kernel", None)  # not installed
    args.use_cpu = False
    with pytest.raises(UserInputError, match=r"needs liger-kernel: pip install .llava_hf\[liger\]."):
        speed.check_speed_options(args)


def test_regional_compile_compiles_each_decoder_layer_in_place():
    from llava_hf.models.fused_kernels import compile_decoder_layers

    model = make_model("packed_sdpa").train()
    keys = set(model.state_dict())
    report = compile_decoder_layers(model, backend="eager")
    assert report.startswith("2 decoder layers") and "dynamic=True" in report
    assert set(model.state_dict()) == keys  # checkpoints load as before
    assert all(layer._compiled_call_impl is not None for layer in model.language_model.model.layers)


def test_the_activation_model_counts_every_image_of_multi_image_samples():
    lengths, image_counts = [100, -300, 50, 200], [3, 0, 1, 2]
    assert speed.longest_micro_batch(lengths, 2, None, True, image_counts) == (500, 5)
    assert speed.longest_micro_batch(lengths, 2, 1000, True, image_counts) == (1000, 6)
