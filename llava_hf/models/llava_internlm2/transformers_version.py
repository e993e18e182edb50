"""The transformers releases the model code runs on, checked before the code imports anything from transformers.

A saved folder ships this code for `trust_remote_code=True` users, whose transformers may be older than the code:
4.x lacks `PreTrainedConfig`, and 5.x before 5.17 cannot build its strict dataclass configs. Without this check
they would see an ImportError or a dataclass error about one of our classes; with it they see which version the
folder needs and what to do. The configuration, modeling and processing files call `require_supported_transformers`
first; `save_pretrained` ships this file with them, and the model card and `requirements.txt` quote the same minimum.
"""

from transformers.utils.versions import require_version

MIN_TRANSFORMERS_VERSION = "5.17.0"


def require_supported_transformers() -> None:
    """ImportError naming the installed and the needed version when transformers is too old for this code."""
    require_version(
        f"transformers>={MIN_TRANSFORMERS_VERSION}",
        f"This model's code (loaded with trust_remote_code=True) needs transformers>={MIN_TRANSFORMERS_VERSION}: "
        f"pip install -U 'transformers>={MIN_TRANSFORMERS_VERSION}'. With an older transformers, load the stock "
        "LlavaForConditionalGeneration folder that `llava-hf export-hf` writes from this one (no remote code).",
    )
