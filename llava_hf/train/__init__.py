"""Training: stages, what trains, the HF Trainer subclass, callbacks and the demo."""

from .arguments import DataArguments, LlavaTrainingArguments, ModelArguments, parse_args
from .run import train

__all__ = ["DataArguments", "LlavaTrainingArguments", "ModelArguments", "parse_args", "train"]
