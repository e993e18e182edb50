"""Optional fused kernels for training, applied to our modules explicitly (both off by default until measured on a
GPU; `benchmarks/throughput.py --ours use_liger_kernel=true` / `compile_decoder_layers=true` measure them).

- liger-kernel (an optional extra, pure-Python Triton: CUDA only): its RMSNorm, SwiGLU (`silu(w1 x) * w3 x` in one
  kernel), rotary embedding and fused linear cross-entropy (the LM head and the loss without materialising logits).
  transformers' `--use_liger_kernel` patches models by `model_type`, and knows neither `internlm2` nor our LLaVA class,
  so it silently does nothing for them: `apply_liger_kernel` patches our modules instead (a Llama-family text model
  gets liger's own patch for its `model_type`).
- Regional compile: `torch.compile` of each decoder layer with dynamic shapes (the token count changes every batch),
  the repeated block compiled once instead of the whole model.
"""

import types

LIGER_INSTALL = "pip install 'llava_hf[liger]' (liger-kernel: it needs CUDA and Triton)"


def _import_liger():
    try:
        from liger_kernel.ops.swiglu import LigerSiLUMulFunction
        from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss
        from liger_kernel.transformers.rms_norm import LigerRMSNorm
        from liger_kernel.transformers.rope import liger_rotary_pos_emb
    except ImportError as error:
        raise ImportError(f"--use_liger_kernel needs liger-kernel: {LIGER_INSTALL} ({error})") from None
    return types.SimpleNamespace(RMSNorm=LigerRMSNorm, silu_mul=LigerSiLUMulFunction.apply,
                                 rotary=liger_rotary_pos_emb, FusedLinearCrossEntropy=LigerFusedLinearCrossEntropyLoss)


def _swiglu_forward(liger):
    def forward(self, x):
        return self.w2(liger.silu_mul(self.w1(x), self.w3(x)))

    return forward


def apply_liger_kernel(model) -> str:
    """Patch `model` (a LlavaInternLM2ForConditionalGeneration, before or after PEFT wraps its linear layers) with
    liger-kernel's fused kernels; returns what was patched, for the log."""
    from .internlm2 import modeling_internlm2

    liger = _import_liger()
    language_model = model.language_model
    patched = []
    if isinstance(language_model, modeling_internlm2.InternLM2ForCausalLM):
        norms = 0
        for parent in list(language_model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, modeling_internlm2.InternLM2RMSNorm):
                    fused = liger.RMSNorm(child.weight.shape[0], eps=child.variance_epsilon, casting_mode="llama")
                    fused.weight = child.weight  # the same Parameter: optimizer, PEFT and checkpoints see no change
                    setattr(parent, name, fused)
                    norms += 1
        mlps = [m for m in language_model.modules() if isinstance(m, modeling_internlm2.InternLM2MLP)]
        if language_model.config.hidden_act in ("silu", "swish"):
            for mlp in mlps:
                mlp.forward = types.MethodType(_swiglu_forward(liger), mlp)
        modeling_internlm2.apply_rotary_pos_emb = liger.rotary  # module-level, as liger patches transformers' models
        patched.append(f"InternLM2: {norms} RMSNorm, {len(mlps)} SwiGLU, rotary")
    else:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=language_model, cross_entropy=False, fused_linear_cross_entropy=False)
        patched.append(f"{language_model.config.model_type}: liger's own patch (RMSNorm, SwiGLU, rotary)")
    model.supervised_loss_function = liger.FusedLinearCrossEntropy(reduction="sum")
    patched.append("fused linear cross-entropy in the supervised loss")
    return "; ".join(patched)


def compile_decoder_layers(model, **compile_options) -> str:
    """`torch.compile` each decoder layer of the LLM in place (`nn.Module.compile`: state-dict keys unchanged), with
    dynamic shapes so a new token count does not recompile; returns what was compiled, for the log."""
    options = {"dynamic": True, **compile_options}
    layers = model.language_model.get_decoder().layers
    for layer in layers:
        layer.compile(**options)
    return f"{len(layers)} decoder layers, torch.compile({', '.join(f'{k}={v!r}' for k, v in options.items())})"
