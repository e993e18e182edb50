"""Torch dtype names as users give them (`--torch_dtype` of every command and of training), in one place.

Importing this module does not import torch, so command-line parsers can list the choices and stay fast.
"""

DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
DTYPE_CHOICES = ("auto", "bfloat16", "float16", "float32", *DTYPE_ALIASES)


def resolve_dtype(name, auto="auto"):
    """`torch.dtype` for a name in `DTYPE_CHOICES`; None and dtypes pass through. "auto" gives `auto`: transformers'
    "auto" (the dtype the weights are stored in) by default, the mixed-precision dtype for training."""
    import torch

    from .errors import UserInputError

    if name is None or isinstance(name, torch.dtype):
        return name
    if name == "auto":
        return auto
    if name not in DTYPE_CHOICES:
        raise UserInputError(f"unknown torch dtype {name!r}; choose one of {', '.join(DTYPE_CHOICES)}")
    return getattr(torch, DTYPE_ALIASES.get(name, name))
