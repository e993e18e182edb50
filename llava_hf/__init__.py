"""llava_hf: train, chat with, evaluate and ship LLaVA-style vision-language models on transformers.

Importing the package registers its models (InternLM2, LLaVA-InternLM2) with transformers' Auto classes.
"""

from .models import register as _register

_register()

__version__ = "0.1.0"
