"""One training step (forward + backward) traced on fake tensors: the FLOPs, dispatched ops and host syncs of the
code path a GPU runs, measured on a CPU-only machine at real 7B shapes (no memory, no compute), for ours and for
stock transformers' LLaVA on the same samples. `tests/models/test_gpu_free_checks.py` asserts on them and
`benchmarks/throughput.py` prints them.

Fake tensors (`FakeTensorMode`) carry shapes and dtypes only, and an `.item()`, `.tolist()` or data-dependent shape
(a boolean mask index, `nonzero`) on one raises: exactly the host syncs a GPU step must not have. Fake *CUDA* tensors
would be the literal GPU path, but on a CPU-only torch build autograd aborts the process as soon as it records an op
on one (no CUDA device guard is registered there: checked with torch 2.13), so the step runs on fake CPU tensors with
the attention configure_speed picks on a GPU without flash-attn (`packed_varlen`: torch's `varlen_attn`, whose fake
implementation gives shapes and FLOPs). Nothing else in our model code branches on the device.

The optimizer step is left out (same work for both apart from the trainable parameter count).
"""

import contextlib
import copy
import os
from collections import Counter
from dataclasses import dataclass
from unittest import mock

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

CLIP_L_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=336, patch_size=14)  # 576 image tokens
INTERNLM2_7B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                    num_key_value_heads=8, vocab_size=92544)
# What each stage trains (LlavaTrainingArguments fields), as benchmarks/throughput.py runs them
STAGES = {
    "pretrain": dict(stage="pretrain", tune_llm="frozen", tune_vision_tower="frozen"),
    "finetune-lora": dict(stage="finetune", tune_llm="lora", tune_vision_tower="lora", lora_r=512, lora_alpha=256,
                          vision_lora_r=64, vision_lora_alpha=16, lora_dropout=0.0),
    "finetune-full": dict(stage="finetune", tune_llm="full", tune_vision_tower="frozen"),
}


def llava_config(text: dict = INTERNLM2_7B, vision: dict = CLIP_L_336, text_layers: int | None = None,
                 vision_layers: int | None = None):
    """Our LlavaInternLM2Config at these sizes (InternLM2-7B + CLIP-L/336 by default), optionally with fewer layers."""
    from transformers import CLIPVisionConfig

    from ..models.internlm2 import InternLM2Config
    from ..models.llava_internlm2 import LlavaInternLM2Config

    text = {**text, **({"num_hidden_layers": text_layers} if text_layers else {})}
    vision = {**vision, **({"num_hidden_layers": vision_layers} if vision_layers else {})}
    return LlavaInternLM2Config(
        text_config=InternLM2Config(**text, max_position_embeddings=4096, rope_theta=1_000_000,
                                    tie_word_embeddings=False, pad_token_id=0),
        vision_config=CLIPVisionConfig(**vision), image_token_id=text["vocab_size"] - 1)


def make_items(config, samples: int, text_tokens: int, targets: int, images: bool | int = True) -> list[dict]:
    """`samples` LLaVA items of `text_tokens` text tokens (+ the images' tokens, `images` per sample: True is one,
    several are spread over the text), the last `targets` supervised."""
    items = []
    for i in range(samples):
        ids = [1 + (i + j) % 1000 for j in range(text_tokens)]
        labels = [-100] * (text_tokens - targets) + ids[text_tokens - targets:]
        item = {}
        for k in reversed(range(int(images))):  # image k after text token k + 1, as the dataset expands it
            image_tokens = config.image_seq_length
            ids = ids[:k + 1] + [config.image_token_id] * image_tokens + ids[k + 1:]
            labels = labels[:k + 1] + [-100] * image_tokens + labels[k + 1:]
        if images:
            size = config.vision_config.image_size
            pixels = torch.zeros(int(images), 3, size, size)
            item["pixel_values"] = pixels[0] if int(images) == 1 else pixels
        items.append({"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), **item})
    return items


def training_arguments(stage: str, **overrides):
    from ..train.arguments import LlavaTrainingArguments

    # (no `use_cpu`: the benchmark calls this in a process whose accelerate state is already on the GPU)
    return LlavaTrainingArguments(**{"output_dir": os.devnull, "report_to": "none", **STAGES[stage], **overrides})


def stock_trainable(model, args, quantized: bool = False):
    """What `configure_trainable` does for ours, in stock LLaVA's module names, with PEFT's defaults."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model.requires_grad_(False)
    model.model.multi_modal_projector.requires_grad_(True)
    if args.tune_llm == "full":
        model.model.language_model.requires_grad_(True)
        model.lm_head.requires_grad_(True)
    if args.tune_vision_tower == "full":
        model.model.vision_tower.requires_grad_(True)
    if args.tune_llm != "lora":
        return model
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(args.gradient_checkpointing))
    llm = r"model\.language_model\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    vit = r"model\.vision_tower\..*\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2)"
    vit = vit if args.tune_vision_tower == "lora" else "$^"
    config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, bias="none",
                        target_modules=f"^({llm}|{vit})$",
                        rank_pattern={r"model\.language_model\..*": args.lora_r,
                                      r"model\.vision_tower\..*": args.vision_lora_r},
                        alpha_pattern={r"model\.language_model\..*": args.lora_alpha,
                                       r"model\.vision_tower\..*": args.vision_lora_alpha},
                        modules_to_save=["multi_modal_projector"])
    return get_peft_model(model, config)


def cpu_attention_flops() -> dict:
    """FlopCounterMode's SDPA formulas for the CPU kernel fake CPU tensors dispatch to (torch counts the CUDA kernels
    only): without them a dense mask over a packed row would cost no FLOPs here."""
    from torch.utils.flop_counter import flop_registry

    def as_registered(formula):  # the registry's formulas take tensors already (no second shape wrapper)
        def count(*args, **kwargs):
            return formula(*args, **kwargs)

        count._get_raw = True
        return count

    aten = torch.ops.aten
    return {aten._scaled_dot_product_flash_attention_for_cpu:
            as_registered(flop_registry[aten._scaled_dot_product_efficient_attention]),
            aten._scaled_dot_product_flash_attention_for_cpu_backward:
            as_registered(flop_registry[aten._scaled_dot_product_efficient_attention_backward])}


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched (each one a kernel launch, or a view, on a GPU)."""

    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())


@dataclass
class StepTrace:
    flops: int
    ops: int
    op_counts: Counter
    module_flops: dict  # module name -> FLOPs (FlopCounterMode's per-module totals)


class FakeStep:
    """One model built on fake tensors; `trace(items)` runs a training step on them."""

    def __init__(self, config, stage: str, ours: bool = True, gradient_checkpointing: bool = True,
                 attention: str = "packed_varlen", dtype=torch.bfloat16):
        self.mode = FakeTensorMode(allow_non_fake_inputs=True)
        config = copy.deepcopy(config)  # the model's attention setting lives in its config: not shared between steps
        self.ours, self.config = ours, config
        args = training_arguments(stage, gradient_checkpointing=gradient_checkpointing)
        # built on the meta device (PEFT included), then every parameter and buffer made a fake CPU tensor
        with torch.device("meta"), _default_dtype(dtype):
            if ours:
                from ..models.llava_internlm2 import LlavaInternLM2ForConditionalGeneration
                from ..train.model_setup import configure_trainable

                model = LlavaInternLM2ForConditionalGeneration(config)
                model.language_model.set_attn_implementation(attention)
                model.enable_supervised_loss(args.loss_chunk_size or None)
                model = configure_trainable(model, args)
            else:
                from transformers import LlavaForConditionalGeneration

                from ..export.stock_llava import stock_llava_config

                model = LlavaForConditionalGeneration(stock_llava_config(config))
                model.config.text_config._attn_implementation = "sdpa"
                model = stock_trainable(model, args)
        _make_fake(model, self.mode)
        model.config.use_cache = False
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model = model.train()

    def batch(self, items, fake_boundaries: bool = True) -> dict:
        """Our padding-free batch (stock: the padded one) of `items`, its tensors fake. `fake_boundaries=False` gives
        `cu_seq_lens_*` fake tensors that know their values: FlopCounterMode reads them to count `varlen_attn`'s FLOPs."""
        from ..data.collator import LlavaDataCollator

        batch = LlavaDataCollator(0, padding_free=self.ours)(items)
        fake = {key: self.mode.from_tensor(value) if torch.is_tensor(value) else value for key, value in batch.items()}
        if not fake_boundaries:
            with self.mode:  # fake tensors that remember their values
                for key in ("cu_seq_lens_q", "cu_seq_lens_k"):
                    if key in batch:
                        fake[key] = torch.tensor(batch[key].tolist(), dtype=batch[key].dtype)
        return fake

    def trace(self, items, flops: bool = True) -> StepTrace:
        """Forward + backward of one micro-batch of `items`; raises on any host sync (when `flops` is False every
        batch tensor is fake, the strict check)."""
        batch = self.batch(items, fake_boundaries=not flops)
        counter = OpCounter()
        flop_counter = (FlopCounterMode(display=False, custom_mapping=cpu_attention_flops()) if flops
                        else contextlib.nullcontext())
        # stock's image-token check reads a device value (a host sync) by design; transformers' switch skips it
        stock_check = (contextlib.nullcontext() if self.ours
                       else mock.patch.dict(os.environ, TRANSFORMERS_DISABLE_TORCH_CHECK="1"))
        with self.mode, stock_check, flop_counter, counter:
            loss = self.model(**batch).loss
            loss.backward()
        self.model.zero_grad(set_to_none=True)
        return StepTrace(flop_counter.get_total_flops() if flops else 0, counter.total, counter.ops,
                         {name: sum(counts.values()) for name, counts in flop_counter.get_flop_counts().items()}
                         if flops else {})


def _make_fake(model, mode, device="cpu") -> None:
    """Replace each meta parameter and buffer of `model` by a fake tensor on `device` (tied weights stay tied)."""
    from torch._subclasses.fake_tensor import FakeTensor

    made = {}
    for module in model.modules():
        for store, as_parameter in ((module._parameters, True), (module._buffers, False)):
            for name, tensor in list(store.items()):
                if tensor is None:
                    continue
                if id(tensor) not in made:
                    fake = FakeTensor(mode, tensor.detach(), torch.device(device))
                    made[id(tensor)] = torch.nn.Parameter(fake, tensor.requires_grad) if as_parameter else fake
                store[name] = made[id(tensor)]


@contextlib.contextmanager
def _default_dtype(dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)

