"""Helpers for tests and the demo: a tiny InternLM2-layout tokenizer trained on the fly and a tiny random LLaVA;
`step_trace` traces one training step on fake tensors (the GPU-free checks of the tests and the benchmark).

The model code never imports this package; `llava_hf.demo` and the test suite do.
"""

from .tiny_model import build_tiny_llava
from .tiny_tokenizer import build_tiny_internlm2_tokenizer_files

__all__ = ["build_tiny_internlm2_tokenizer_files", "build_tiny_llava"]
