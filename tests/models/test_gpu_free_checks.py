"""GPU-free checks of the GPU training step (issue 21: a per-layer host sync and a per-sample attention loop made
training 1.5-4x slower than stock on a GPU while the CPU benchmark looked fine).

One forward + backward traced on fake tensors (`llava_hf.testing.step_trace`: shapes only, no memory, no compute) at
the real InternLM2-7B and CLIP-L/336 widths (hidden 4096, 32/8 heads, vocabulary 92544, 576 image tokens) with
one LLM and one ViT layer instead of 32 and 24: every per-layer count scales with the layer count and the comparisons
hold layer by layer. `python benchmarks/throughput.py --size 7b` prints the same numbers at full depth.
"""

import itertools

import pytest
import torch
from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException

from llava_hf.models import packed_attention
from llava_hf.testing.step_trace import FakeStep, llava_config, make_items

HOST_SYNC = (DataDependentOutputException, DynamicOutputShapeException)


@pytest.fixture(scope="module")
def config():
    return llava_config(text_layers=1, vision_layers=1)


@pytest.fixture(scope="module")
def ours(config):
    return FakeStep(config, "pretrain")


@pytest.fixture(scope="module")
def stock(config):
    return FakeStep(config, "pretrain", ours=False)


def test_our_training_step_has_no_host_sync(ours, config):
    # every batch tensor fake: an .item(), .tolist() or data-dependent shape anywhere in forward or backward raises
    ours.trace(make_items(config, samples=8, text_tokens=80, targets=40), flops=False)


def test_a_multi_image_step_has_no_host_sync(ours, config):
    """Samples with three images each (LLaVA-OneVision's interleaved form): the features still fill their tokens
    without reading anything back."""
    items = make_items(config, samples=2, text_tokens=40, targets=20, images=3)
    assert items[0]["pixel_values"].shape[0] == 3
    ours.trace(items, flops=False)


def test_a_host_sync_in_the_attention_is_caught(ours, config, monkeypatch):
    """The defect of issue 21: the sample boundaries read back from `position_ids` (`.tolist()`) in every layer."""
    monkeypatch.setattr(packed_attention, "_row_boundaries", lambda query, key, mask, position_ids, kwargs:
                        packed_attention.boundaries_from_position_ids(position_ids))
    with pytest.raises(HOST_SYNC):
        ours.trace(make_items(config, samples=4, text_tokens=40, targets=20), flops=False)


@pytest.mark.slow
def test_stage2_lora_step_has_no_host_sync(config):
    """ViT LoRA and LLM LoRA (PEFT) in the step: still no sync."""
    FakeStep(config, "finetune-lora").trace(make_items(config, samples=4, text_tokens=60, targets=30), flops=False)


def test_our_step_does_no_more_flops_than_stock(ours, stock, config):
    """Same samples: ours (padding-free row, varlen attention, supervised-only loss) against stock LLaVA (padded
    batch, sdpa, loss over full logits). A dense mask over the packed row (attention over all 5248 tokens instead of
    8 x 656) would add ~8x the attention FLOPs (the decoder check below), and a loss over every position the head's
    (the head check)."""
    items = make_items(config, samples=8, text_tokens=80, targets=40)
    ours_trace, stock_trace = ours.trace(items), stock.trace(items)
    assert ours_trace.flops <= stock_trace.flops, (ours_trace.flops, stock_trace.flops)
    # the LM head runs only where there is a target: 320 of 5248 positions (x1.5: its forward is recomputed)
    positions = sum(len(item["input_ids"]) for item in items)
    head = next(v for k, v in ours_trace.module_flops.items() if k.endswith("language_model.output"))
    stock_head = next(v for k, v in stock_trace.module_flops.items() if k.endswith("lm_head"))
    assert head <= 1.5 * stock_head * (8 * 40) / positions * 1.1, (head, stock_head)
    # and the attention is block-diagonal: the decoder costs what stock's does on the same tokens, not more
    decoder = next(v for k, v in ours_trace.module_flops.items() if k.endswith("language_model.model"))
    stock_decoder = next(v for k, v in stock_trace.module_flops.items() if k.endswith("model.language_model"))
    assert decoder <= 1.05 * stock_decoder, (decoder, stock_decoder)


@pytest.mark.slow
def test_a_dense_mask_over_the_packed_row_is_caught(config, stock):
    """transformers' own `sdpa` on the packed row (a dense block-diagonal mask over all its tokens, the issue's
    0.41x ablation): the decoder's FLOPs exceed stock's on the same samples."""
    dense = FakeStep(config, "pretrain", attention="sdpa")
    items = make_items(config, samples=8, text_tokens=80, targets=40)
    decoder = next(v for k, v in dense.trace(items).module_flops.items() if k.endswith("language_model.model"))
    stock_decoder = next(v for k, v in stock.trace(items).module_flops.items() if k.endswith("model.language_model"))
    assert decoder > 1.05 * stock_decoder, (decoder, stock_decoder)


def test_dispatched_ops_are_flat_in_the_samples_and_at_most_stocks(ours, stock, config):
    """A per-sample loop anywhere (attention, loss) adds ops per sample and per layer; the same tokens and targets
    in 4 or 16 samples must dispatch the same ops."""
    few = ours.trace(make_items(config, samples=4, text_tokens=160, targets=80), flops=False)
    many = ours.trace(make_items(config, samples=16, text_tokens=40, targets=20), flops=False)
    assert many.ops == few.ops, (few.ops, many.ops, many.op_counts - few.op_counts)
    stock_ops = stock.trace(make_items(config, samples=4, text_tokens=160, targets=80), flops=False).ops
    assert few.ops <= stock_ops, (few.ops, stock_ops)


@pytest.mark.slow
def test_a_per_sample_loop_is_caught(ours, config, monkeypatch):
    """An attention that loops over the samples (SDPA per sample, as `packed_sdpa` does on a CPU) in the GPU's place:
    the op count grows with the samples."""
    lengths = []

    def per_sample_attention(query, key, value, bounds, scale=None, causal=True):
        offsets = [0, *itertools.accumulate(lengths)]
        group = query.shape[1] // key.shape[1]
        key, value = (t.repeat_interleave(group, dim=1) for t in (key, value))
        return torch.cat([
            torch.nn.functional.scaled_dot_product_attention(
                *(t[start:end].transpose(0, 1) for t in (query, key, value)), is_causal=causal, scale=scale,
            ).transpose(0, 1)
            for start, end in zip(offsets[:-1], offsets[1:])
        ])

    monkeypatch.setattr(packed_attention, "varlen_attention", per_sample_attention)
    counts = []
    for samples, text_tokens, targets in ((2, 80, 40), (8, 20, 10)):
        items = make_items(config, samples=samples, text_tokens=text_tokens, targets=targets)
        lengths[:] = [len(item["input_ids"]) for item in items]
        counts.append(ours.trace(items, flops=False).ops)
    assert counts[1] > counts[0], counts
