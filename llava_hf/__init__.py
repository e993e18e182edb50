"""llava_hf: train, chat with, evaluate and ship LLaVA-style vision-language models on transformers.

Importing the package registers its models (InternLM2, LLaVA-InternLM2) with transformers' Auto classes. The
registration needs torch and transformers, which take seconds to import, so it happens as soon as transformers
is imported (at once if it already is): `import llava_hf` stays instant, and `llava-hf --help` with it.
"""

from ._registration import register_with_transformers

register_with_transformers()

__version__ = "0.1.0"
