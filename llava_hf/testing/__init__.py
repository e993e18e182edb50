"""Helpers for tests and the demo: a tiny InternLM2-layout tokenizer trained on the fly and a tiny random LLaVA.

The model code never imports this package; `llava_hf.demo` and the test suite do.
"""

from .tiny_model import build_tiny_llava
from .tiny_tokenizer import build_tiny_internlm2_tokenizer_files

__all__ = ["build_tiny_internlm2_tokenizer_files", "build_tiny_llava"]
