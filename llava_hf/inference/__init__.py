"""Loading trained models for inference (chat, MMBench, the web demo)."""

from .loading import load_model_and_processor

__all__ = ["load_model_and_processor"]
