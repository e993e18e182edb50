"""Training throughput of our LLaVA against stock transformers' `LlavaForConditionalGeneration`, side by side in
one process (not a test).

    python benchmarks/throughput.py --size tiny                       # CPU, < 2 minutes: the ratio line per stage
    python benchmarks/throughput.py --size 7b --json results.json     # one GPU, one call (< 8 minutes): 7B stage 1,
                                                                      # LoRA stage 2, QLoRA, and the 1.8B full finetune
    python benchmarks/throughput.py --size 1_8b --stage pretrain --ours padding_free=false --profile

Both models are built at the named size with random weights (ours seeded; stock gets the same weights, converted
to Llama names: same maths), and both train through `LlavaTrainer`, the code path `examples/train.py` runs, on
the same samples per step drawn from LLaVA-like length mixes (stage 1: 576 image + 15-120 text tokens; stage 2:
576 image + 50-900 text tokens with 6 % text-only samples of 200-1472 tokens; QLoRA: one 576 + 1472 sample).
Stock = today's padded batches, SDPA, the loss over full logits, PEFT, gradient checkpointing on every layer.
Ours = our model with this repository's training defaults (`configure_speed`: padding-free rows with the varlen
attention where it serves, the supervised-only chunked loss, `--gradient_checkpointing auto` except for QLoRA, whose
point is the memory) plus `--ours` options. QLoRA quantizes the LLM to NF4 in memory (no save and reload).
Per stage it prints samples/s, real (non-padding) tokens/s, padding share, MFU (only the FLOPs the stage must do:
no padding, no recomputation, frozen weights get no weight gradients; CPU: n/a), peak accelerator memory, the
first step's loss of each (the same weights and samples: they agree up to rounding), and the ratio ours/stock;
then the GPU-free numbers of one step (`llava_hf.testing.step_trace`: FLOPs and dispatched ops of ours and stock,
ops flat in the number of samples, no host sync), traced on fake tensors at each stage's widths with
`--gpu-free-layers` layers (the per-layer numbers scale with depth). `--json PATH` writes everything.
`--size tiny` shrinks the models and scales the image and text lengths by 1/8 so the CPU run stays short.
"""

import argparse
import dataclasses
import datetime
import gc
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import llava_hf  # noqa: E402,F401
from llava_hf.data.collator import LlavaDataCollator  # noqa: E402
from llava_hf.testing.step_trace import CLIP_L_336, INTERNLM2_7B, llava_config  # noqa: E402
from llava_hf.train.arguments import LlavaTrainingArguments, ModelArguments  # noqa: E402



@dataclasses.dataclass(frozen=True)
class Size:
    text: dict  # InternLM2 config fields
    vision: dict  # CLIP vision config fields
    length_scale: float  # text lengths of the mixes are multiplied by this
    lora: tuple[int, int, int, int]  # LLM r, alpha, ViT r, alpha


SIZES = {
    "tiny": Size(
        text=dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=16384),
        vision=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, image_size=112,
                    patch_size=14),  # 64 image tokens
        length_scale=1 / 8, lora=(64, 32, 16, 8)),
    "1_8b": Size(  # internlm2-chat-1_8b
        text=dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=16,
                  num_key_value_heads=8, vocab_size=92544),
        vision=CLIP_L_336, length_scale=1, lora=(512, 256, 64, 16)),
    "7b": Size(text=INTERNLM2_7B, vision=CLIP_L_336, length_scale=1, lora=(512, 256, 64, 16)),  # internlm2-chat-7b
}


@dataclasses.dataclass(frozen=True)
class Stage:
    mix: str  # caption | instruct | fixed
    batch: int  # samples per micro-batch on a GPU (halved for tiny)
    args: dict  # LlavaTrainingArguments fields
    quantized: bool = False
    variants: tuple[tuple[str, dict], ...] = (("ours", {}),)  # our rows: name, extra training arguments


STAGES = {
    "pretrain": Stage("caption", 32, dict(stage="pretrain", tune_llm="frozen", tune_vision_tower="frozen",
                                          learning_rate=1e-3, gradient_checkpointing=True)),
    "finetune-lora": Stage("instruct", 16, dict(stage="finetune", tune_llm="lora", tune_vision_tower="lora",
                                                learning_rate=2e-4, gradient_checkpointing=True)),
    "finetune-full": Stage("instruct", 16, dict(stage="finetune", tune_llm="full", tune_vision_tower="frozen",
                                                learning_rate=2e-5, gradient_checkpointing=True)),
    "qlora": Stage("fixed", 1, dict(stage="finetune", tune_llm="lora", tune_vision_tower="lora", learning_rate=2e-4,
                                    gradient_checkpointing=True), quantized=True,
                   variants=(("ours", {}), ("ours-24GB", dict(adapter_dtype="bfloat16", optim="paged_adamw_8bit")))),
}
# (size, stage) runs of each --size, in order; --stage keeps those of the named stages
PLANS = {"tiny": [("tiny", "pretrain"), ("tiny", "finetune-lora"), ("tiny", "finetune-full")],
         "1_8b": [("1_8b", "pretrain"), ("1_8b", "finetune-lora"), ("1_8b", "finetune-full"), ("1_8b", "qlora")],
         "7b": [("7b", "pretrain"), ("7b", "finetune-lora"), ("7b", "qlora"), ("1_8b", "finetune-full")]}
# what ours runs with beyond the stage's arguments: checkpointing sized by memory, except where memory is the point
OURS_DEFAULTS = {"qlora": {}}
OURS_DEFAULT = {"gradient_checkpointing": "auto"}
PROFILED_STEPS = 2
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "H800": 989.4, "A100": 312.0, "L40S": 362.0, "A10G": 70.0}


# ---------------------------------------------------------------------------------------------------- data


class MixDataset(torch.utils.data.Dataset):
    """Random token ids with LLaVA's shapes: BOS + prompt, the image's tokens, then turns whose replies carry labels;
    `modality_lengths` feeds LlavaTrainer's sampler as a LlavaDataset's does."""

    def __init__(self, mix: str, n: int, image_tokens: int, image_token_id: int, image_size: int, vocab: int,
                 scale: float, seed: int = 0):
        rng = random.Random(seed)
        self.items, self.modality_lengths = [], []
        self.pixels = torch.randn(3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
        for _ in range(n):
            if mix == "caption":
                has_image, text = True, rng.randint(15, 120)
            elif mix == "instruct":
                has_image = rng.random() >= 0.06
                text = rng.randint(50, 900) if has_image else rng.randint(200, 1472)
            else:
                has_image, text = True, 1472
            text = max(4, round(text * scale))
            ids = [rng.randrange(100, vocab - 100) for _ in range(text)]
            labels = list(ids)
            if mix == "caption":  # plain template: BOS + image, the caption is supervised
                labels[:1] = [-100]
            else:  # two turns: user text unsupervised, replies supervised (about 60 % of the text)
                quarter = text // 5
                for start, end in ((0, quarter), (text // 2, text // 2 + quarter)):
                    labels[start:end] = [-100] * (end - start)
            if has_image:
                ids = ids[:1] + [image_token_id] * image_tokens + ids[1:]
                labels = labels[:1] + [-100] * image_tokens + labels[1:]
            self.items.append((torch.tensor(ids), torch.tensor(labels), has_image))
            self.modality_lengths.append(len(ids) if has_image else -len(ids))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        ids, labels, has_image = self.items[i]
        item = {"input_ids": ids, "labels": labels}
        if has_image:
            item["pixel_values"] = self.pixels
        return item


class RecordingCollator:
    """The real collator, plus what each batch held (for samples/s, real tokens/s, padding and FLOPs)."""

    def __init__(self, collator: LlavaDataCollator):
        self.collator, self.batches = collator, []

    def __call__(self, items):
        batch = self.collator(items)
        lengths = [len(item["input_ids"]) for item in items]
        supervised = [int((item["labels"][1:] != -100).sum()) for item in items]
        self.batches.append(dict(samples=len(items), lengths=lengths, supervised=supervised,
                                 images=sum("pixel_values" in item for item in items), positions=batch["input_ids"].numel()))
        return batch


# ---------------------------------------------------------------------------------------------------- models


def our_config(size: Size):
    return llava_config(size.text, size.vision)


def build_ours(size: Size, device, dtype):
    from llava_hf.models.llava_internlm2 import LlavaInternLM2ForConditionalGeneration

    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaInternLM2ForConditionalGeneration._from_config(our_config(size), dtype=dtype)
    model.config.use_cache = False
    return model


def stock_from_ours(ours, device, dtype):
    """Stock `LlavaForConditionalGeneration` (Llama text model) holding exactly our weights, converted the way
    `llava-hf export-hf` converts them."""
    from transformers import LlavaForConditionalGeneration

    from llava_hf.export.stock_llava import stock_llava_config, stock_state_dict

    with torch.device(device):
        stock = LlavaForConditionalGeneration._from_config(stock_llava_config(ours.config), dtype=dtype)
    stock.load_state_dict(stock_state_dict(ours), strict=True)
    stock.config.use_cache = False
    return stock


def quantize_in_memory(model, dtype):
    """The LLM body's linear layers as bitsandbytes NF4 (double quantization, `dtype` compute and storage), in place:
    what `--bits 4` loads (`llava_hf.models.quantization.bnb_config`), without writing 15 GB and reading them back."""
    import bitsandbytes as bnb
    from torch import nn

    from llava_hf.models.quantization import NOT_QUANTIZED

    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            path = f"{parent_name}.{name}".split(".")
            if type(child) is not nn.Linear or any(part in NOT_QUANTIZED for part in path):
                continue
            quantized = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                          compute_dtype=dtype, compress_statistics=True, quant_type="nf4",
                                          quant_storage=dtype, device="meta")
            quantized.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, compress_statistics=True,
                                                 quant_type="nf4", quant_storage=dtype,
                                                 module=quantized).to(child.weight.device)  # quantizes
            if child.bias is not None:
                quantized.bias = child.bias
            setattr(parent, name, quantized)
    # what PEFT's k-bit preparation and HF Trainer read (Trainer does not move a bitsandbytes model)
    from transformers.utils.quantization_config import QuantizationMethod

    model.is_loaded_in_4bit = True
    model.quantization_method = QuantizationMethod.BITS_AND_BYTES
    free_memory()
    return model


# ---------------------------------------------------------------------------------------------------- FLOPs


def required_flops(batches, config, args: LlavaTrainingArguments) -> float:
    """FLOPs the stage must do for these batches: real tokens only, no recomputation, no weight gradients for frozen
    weights (a matmul's backward is 1x its forward for input gradients, +1x for weight gradients; attention's is 2x),
    the LM head only where there is a label, the ViT up to the feature layer (-2)."""
    text, vision = config.text_config, config.vision_config
    head_dim = text.hidden_size // text.num_attention_heads
    q_width, kv_width = text.num_attention_heads * head_dim, text.num_key_value_heads * head_dim
    h, inter = text.hidden_size, text.intermediate_size
    llm_layer = h * (2 * q_width + 2 * kv_width) + 3 * h * inter  # weights per decoder layer
    llm_lora = args.lora_r * (4 * h + 2 * q_width + 2 * kv_width + 3 * (h + inter)) if args.tune_llm == "lora" else 0
    vh, vinter = vision.hidden_size, vision.intermediate_size
    vit_layer = 4 * vh * vh + 2 * vh * vinter
    vit_lora = args.vision_lora_r * (8 * vh + 2 * (vh + vinter)) if args.tune_vision_tower == "lora" else 0
    vit_layers = vision.num_hidden_layers - 1
    patches = (vision.image_size // vision.patch_size) ** 2 + 1
    linear = 3 if args.tune_llm == "full" else 2  # forward + input gradients (+ weight gradients)
    vit_trains = args.tune_vision_tower != "frozen"
    vit_linear = 3 if args.tune_vision_tower == "full" else 2 if vit_trains else 1
    head = 2 * h * text.vocab_size * (3 if args.tune_llm == "full" else 2)
    projector = 6 * (vh * h + h * h)
    total = 0.0
    for batch in batches:
        for length, supervised in zip(batch["lengths"], batch["supervised"]):
            total += text.num_hidden_layers * (2 * llm_layer * linear + 6 * llm_lora) * length
            total += text.num_hidden_layers * 2 * q_width * length ** 2 * 3  # causal QK^T and PV, forward + backward
            total += head * supervised
        images = batch["images"]
        total += images * config.image_seq_length * projector
        total += images * vit_layers * patches * (2 * vit_layer * vit_linear + 6 * vit_lora
                                                  + 4 * vh * patches * (3 if vit_trains else 1))
    return total


# ---------------------------------------------------------------------------------------------------- runs


@dataclasses.dataclass
class Result:
    stage: str
    name: str
    samples_per_s: float
    tokens_per_s: float
    padding: float
    mfu: float | None
    peak_gib: float | None
    static_gib: float | None
    first_loss: float | None


def step_timer(cuda: bool):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends, self.losses = [], []

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    return StepTimer()


def run_one(name, model, dataset, stage_name, stage: Stage, training_args, config, cli, profile_dir):
    from llava_hf.train.trainer import LlavaTrainer

    cuda = torch.cuda.is_available()
    collator = RecordingCollator(LlavaDataCollator(0, padding_free=training_args.padding_free))
    timer = step_timer(cuda)
    static = torch.cuda.memory_allocated() / 2**30 if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = LlavaTrainer(model=model, args=training_args, train_dataset=dataset, data_collator=collator,
                           callbacks=[timer])
    profiler = None
    if cli.profile:
        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        profiler = torch.profiler.profile(activities=activities, schedule=torch.profiler.schedule(
            wait=cli.warmup + cli.steps, warmup=0, active=PROFILED_STEPS))  # after the timed steps
        trainer.add_callback(profiler_stepper(profiler))
        profiler.start()
    trainer.train()
    if profiler is not None:
        profiler.stop()
        sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        print(f"\n--- profile: {stage_name} / {name} ({PROFILED_STEPS} steps after the timed ones, by {sort}) ---")
        print(profiler.key_averages().table(sort_by=sort, row_limit=cli.profile_rows))
        os.makedirs(profile_dir, exist_ok=True)
        profiler.export_chrome_trace(os.path.join(profile_dir, f"{stage_name}_{name}.json"))
    measured = collator.batches[cli.warmup: cli.warmup + cli.steps]
    elapsed = timer.ends[cli.warmup + cli.steps - 1] - timer.ends[cli.warmup - 1]
    samples = sum(b["samples"] for b in measured)
    tokens = sum(sum(b["lengths"]) for b in measured)
    positions = sum(b["positions"] for b in measured)
    mfu = None
    peak_flops = cli.peak_tflops * 1e12 if cli.peak_tflops else None
    if peak_flops is None and cuda:
        device_name = torch.cuda.get_device_name()
        peak_flops = next((v * 1e12 for k, v in PEAK_TFLOPS.items() if k in device_name), None)
    if peak_flops:
        mfu = required_flops(measured, config, training_args) / elapsed / peak_flops
    result = Result(stage_name, name, samples / elapsed, tokens / elapsed, 1 - tokens / positions, mfu,
                    torch.cuda.max_memory_allocated() / 2**30 if cuda else None, static,
                    timer.losses[0] if timer.losses else None)
    del trainer
    return result


def profiler_stepper(profiler):
    from transformers import TrainerCallback

    class Stepper(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            profiler.step()

    return Stepper()


def training_arguments(stage: Stage, size: Size, batch: int, cli, out_dir: str, extra: dict) -> LlavaTrainingArguments:
    cuda = torch.cuda.is_available()
    r, alpha, vr, valpha = size.lora
    steps = cli.warmup + cli.steps + (PROFILED_STEPS if cli.profile else 0)
    fields = dict(output_dir=out_dir, per_device_train_batch_size=batch, max_steps=steps,
                  logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True, seed=0,
                  dataloader_num_workers=0, bf16=cuda, use_cpu=not cuda, lora_r=r, lora_alpha=alpha, lora_dropout=0.0,
                  vision_lora_r=vr, vision_lora_alpha=valpha, **stage.args)
    fields.update(extra)
    return LlavaTrainingArguments(**fields)


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def run_stage(stage_name: str, size_name: str, cli, work: str) -> list[Result]:
    from llava_hf.testing.step_trace import stock_trainable

    stage, size = STAGES[stage_name], SIZES[size_name]
    cuda = torch.cuda.is_available()
    if stage.quantized and not cuda:
        print(f"{stage_name}: skipped (NF4 needs a CUDA GPU and bitsandbytes)")
        return []
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    batch = stage.batch if size_name != "tiny" else max(1, stage.batch // 2)
    if cli.batch:
        batch = cli.batch
    config = our_config(size)
    dataset = MixDataset(stage.mix, (cli.warmup + cli.steps) * batch, config.image_seq_length, config.image_token_id,
                         config.vision_config.image_size, config.text_config.vocab_size, size.length_scale)
    ours_extra = {k: parse_value(v) for k, v in (item.split("=", 1) for item in cli.ours)}
    label = f"{size_name} {stage_name}"
    results = []

    stock_args = training_arguments(stage, size, batch, cli, os.path.join(work, "stock"),
                                    dict(padding_free=False, loss_chunk_size=0))
    ours = build_ours(size, device, dtype)
    stock = stock_from_ours(ours, device, dtype)  # same weights; from here on one model at a time
    del ours
    free_memory()
    if stage.quantized:
        stock = quantize_in_memory(stock, dtype)
    stock = stock_trainable(stock, stock_args, stage.quantized)
    results.append(run_one("stock", stock, dataset, label, stage, stock_args, config, cli,
                           os.path.join(work, "profile")))
    del stock
    free_memory()

    for variant, extra in stage.variants:
        defaults = OURS_DEFAULTS.get(stage_name, OURS_DEFAULT)
        options = {**defaults, **extra, **ours_extra}
        out_of_memory = False
        try:
            results.append(run_ours(variant, options, stage, size, batch, cli, work, dataset, label, config, device,
                                    dtype))
        except torch.OutOfMemoryError:
            if options.get("gradient_checkpointing") != "auto":
                raise
            out_of_memory = True  # retried below, once the traceback (and the model it holds) is gone
        free_memory()
        if out_of_memory:
            # the activation-memory model was too optimistic: say so, and measure with every layer checkpointed
            print(f"{label} {variant}: out of memory with --gradient_checkpointing auto; again with true", flush=True)
            results.append(run_ours(f"{variant} (auto OOM: all layers)", {**options, "gradient_checkpointing": True},
                                    stage, size, batch, cli, work, dataset, label, config, device, dtype))
            free_memory()
    return results


def run_ours(variant, options, stage, size, batch, cli, work, dataset, label, config, device, dtype) -> Result:
    from llava_hf.train.model_setup import configure_trainable
    from llava_hf.train.run import configure_speed

    args = training_arguments(stage, size, batch, cli, os.path.join(work, variant.split()[0]), options)
    model = build_ours(size, device, dtype)  # seeded: the same weights again
    if stage.quantized:
        model = quantize_in_memory(model, dtype)
        model.is_quantized = True  # configure_trainable's cue for PEFT's k-bit preparation ...
    if cli.attn:  # what `--attn_implementation` does at load time in examples/train.py
        model.language_model.set_attn_implementation(cli.attn)
    llava = model
    model = configure_trainable(model, args)
    llava.__dict__.pop("is_quantized", None)  # ... which HF Trainer would read as a transformers quantizer's
    configure_speed(llava, ModelArguments(attn_implementation=cli.attn), args, dataset)
    try:
        return run_one(variant, model, dataset, label, stage, args, config, cli, os.path.join(work, "profile"))
    finally:
        del model, llava


def gpu_free_numbers(size_name: str, stage_name: str, layers: int) -> dict:
    """One step of ours and stock traced on fake tensors at this size's widths with `layers` LLM and ViT layers:
    FLOPs, dispatched ops (ours with n and 2n samples of the same total tokens), and whether ours has a host sync."""
    from llava_hf.testing.step_trace import FakeStep, llava_config, make_items

    size = SIZES[size_name]
    config = llava_config(size.text, size.vision, text_layers=layers, vision_layers=layers)
    text, targets = max(8, round(600 * size.length_scale)), max(4, round(60 * size.length_scale))
    items = make_items(config, samples=8, text_tokens=text, targets=targets)
    twice = make_items(config, samples=16, text_tokens=text // 2, targets=targets // 2)
    numbers = {"size": size_name, "stage": stage_name, "layers": layers}
    try:
        ours = FakeStep(config, stage_name)
        ours.trace(items, flops=False)  # raises on a host sync
        numbers["host_syncs"] = 0
    except Exception as error:  # noqa: BLE001 (reported, the benchmark goes on)
        numbers["host_syncs"] = f"{type(error).__name__}: {error}"[:200]
        return numbers
    stock = FakeStep(config, stage_name, ours=False)
    ours_trace, stock_trace = ours.trace(items), stock.trace(items)
    numbers.update(flops_ours=ours_trace.flops, flops_stock=stock_trace.flops, ops_ours=ours_trace.ops,
                   ops_stock=stock_trace.ops, ops_ours_2x_samples=ours.trace(twice, flops=False).ops)
    return numbers


def report_gpu_free(rows: list[dict]) -> None:
    print("\n| GPU-free (fake tensors) | layers | FLOPs ours / stock | ops ours / stock | ops with 2x samples "
          "| host syncs |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "flops_ours" not in r:
            print(f"| {r['size']} {r['stage']} | {r['layers']} | | | | {r['host_syncs']} |")
            continue
        print(f"| {r['size']} {r['stage']} | {r['layers']} | {r['flops_ours'] / 1e12:.2f} / "
              f"{r['flops_stock'] / 1e12:.2f} TFLOP ({r['flops_ours'] / r['flops_stock']:.2f}x) | {r['ops_ours']} / "
              f"{r['ops_stock']} ({r['ops_ours'] / r['ops_stock']:.2f}x) | {r['ops_ours_2x_samples']} "
              f"({'flat' if r['ops_ours_2x_samples'] == r['ops_ours'] else 'NOT flat'}) | {r['host_syncs']} |")


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------- report


def header() -> str:
    import accelerate
    import peft
    import transformers

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else \
        f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f})"
    return (f"{datetime.datetime.now():%Y-%m-%d %H:%M} | {device} | torch {torch.__version__}, transformers "
            f"{transformers.__version__}, peft {peft.__version__}, accelerate {accelerate.__version__}, python "
            f"{platform.python_version()}\ncommand: python {' '.join(sys.argv)}")


def fmt(value, pattern, missing="n/a"):
    return missing if value is None else pattern.format(value)


def report(results: list[Result]) -> None:
    print("\n| stage | run | samples/s | real tokens/s | padding | MFU | peak mem (GiB) | static (GiB) | first loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.stage} | {r.name} | {r.samples_per_s:.2f} | {r.tokens_per_s:,.0f} | {r.padding:.0%} | "
              f"{fmt(r.mfu, '{:.1%}')} | {fmt(r.peak_gib, '{:.1f}')} | {fmt(r.static_gib, '{:.1f}')} | "
              f"{fmt(r.first_loss, '{:.4f}')} |")
    print()
    for row in ratios(results):
        memory = f", peak memory {row['peak_memory']:.2f}x" if row["peak_memory"] else ""
        print(f"{row['stage']}: {row['run']}/stock samples/s {row['samples_per_s']:.2f}x, "
              f"real tokens/s {row['tokens_per_s']:.2f}x{memory}")


def ratios(results: list[Result]) -> list[dict]:
    """ours/stock per stage and variant."""
    rows = []
    for stage in dict.fromkeys(r.stage for r in results):
        runs = [r for r in results if r.stage == stage]
        stock = next((r for r in runs if r.name == "stock"), None)
        for ours in (r for r in runs if r.name != "stock" and stock is not None):
            rows.append({"stage": stage, "run": ours.name, "samples_per_s": ours.samples_per_s / stock.samples_per_s,
                         "tokens_per_s": ours.tokens_per_s / stock.tokens_per_s,
                         "peak_memory": ours.peak_gib / stock.peak_gib if ours.peak_gib and stock.peak_gib else None})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(PLANS), default="tiny")
    parser.add_argument("--stage", nargs="+", choices=list(STAGES), help="default: every stage of the size's plan")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default: 3 tiny, 4 otherwise)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 1 tiny, 2 otherwise)")
    parser.add_argument("--batch", type=int, default=None, help="samples per micro-batch (default: per stage)")
    parser.add_argument("--attn", default=None, help="our --attn_implementation (default: what configure_speed picks)")
    parser.add_argument("--ours", nargs="*", default=[], metavar="ARG=VALUE",
                        help="extra LlavaTrainingArguments for our runs, e.g. padding_free=false use_liger_kernel=true "
                             "compile_decoder_layers=true gradient_checkpointing=true max_tokens_per_batch=16384")
    parser.add_argument("--peak-tflops", type=float, default=None, help="for MFU on an accelerator not in the table")
    parser.add_argument("--profile", action="store_true", help="torch.profiler table per run (+ chrome traces)")
    parser.add_argument("--profile-rows", type=int, default=25)
    parser.add_argument("--gpu-free-layers", type=int, default=2,
                        help="LLM and ViT layers of the fake-tensor trace (0: skip the GPU-free numbers)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write every number here")
    parser.add_argument("--work-dir", default=None, help="scratch space (profiler traces)")
    parser.add_argument("--cpu-threads", type=int, default=1,
                        help="torch threads on a CPU (default 1: on a shared machine more threads spin-wait)")
    cli = parser.parse_args()
    if not torch.cuda.is_available():
        torch.set_num_threads(cli.cpu_threads)
    tiny = cli.size == "tiny"
    cli.steps = cli.steps or (3 if tiny else 4)
    cli.warmup = cli.warmup or (1 if tiny else 2)
    print(header(), flush=True)
    work = cli.work_dir or tempfile.mkdtemp(prefix="llava_throughput_")
    plan = [(size, stage) for size, stage in PLANS[cli.size] if not cli.stage or stage in cli.stage]
    results, failures, gpu_free = [], {}, []
    started = time.perf_counter()

    def write_json():  # after every stage: a run cut short by a time limit keeps what it measured
        if cli.json:
            with open(cli.json, "w") as f:
                json.dump({"header": header(), "runs": [dataclasses.asdict(r) for r in results],
                           "ratios": ratios(results), "gpu_free": gpu_free, "failures": failures}, f, indent=1)

    try:
        for size, stage in plan:
            start = time.perf_counter()
            try:
                stage_results = run_stage(stage, size, cli, os.path.join(work, f"{size}_{stage}"))
            except Exception as error:  # noqa: BLE001 (one stage failing must not lose the others' numbers)
                failures[f"{size} {stage}"] = f"{type(error).__name__}: {error}"
                print(f"{size} {stage}: FAILED {failures[f'{size} {stage}']}", flush=True)
                traceback.print_exc()
                free_memory()
                continue
            results += stage_results
            write_json()
            if stage_results:
                report(stage_results)
                print(f"({size} {stage}: {time.perf_counter() - start:.0f} s including model builds)", flush=True)
    finally:
        if cli.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    if len({r.stage for r in results}) > 1:
        print("\n=== all stages ===")
        report(results)
    if cli.gpu_free_layers:
        start = time.perf_counter()
        for size, stage in plan:
            if not STAGES[stage].quantized:  # NF4 has no fake-tensor kernels
                gpu_free.append(gpu_free_numbers(size, stage, cli.gpu_free_layers))
                write_json()
        report_gpu_free(gpu_free)
        print(f"(GPU-free numbers: {time.perf_counter() - start:.0f} s)")
    print(f"(total: {time.perf_counter() - started:.0f} s)")
    for name, error in failures.items():
        print(f"FAILED: {name}: {error}")
    if cli.json:
        write_json()
        print(f"numbers written to {cli.json}")
    if cli.profile:
        print(f"chrome traces: {os.path.join(work, '*', 'profile')} (kept only with --work-dir)")


if __name__ == "__main__":
    main()
