"""LLaVA data pipeline: LLaVA-format JSON readers, prompt templates, supervised tokenization with XTuner's
semantics, image decoding, validation, the on-disk tokenization cache, modality-grouped and token-budget sampling, and the
padding-free collator."""

from .collator import LlavaDataCollator
from .conversation import IMAGE_TOKEN, Turn, check_conversations, conversation_to_turns
from .dataset import LlavaDataset, build_llava_dataset
from .errors import DataError
from .images import load_image, resolve_image_path, to_rgb
from .sampler import ModalityLengthGroupedSampler, TokenBudgetBatchSampler
from .sources import DataSource, iter_records, pair_sources, read_samples
from .templates import DEFAULT_TEMPLATE, TEMPLATES, PromptTemplate, get_template, template_from_chat_template
from .tokenization import DEFAULT_MAX_LENGTH, IGNORE_INDEX, default_max_length, expand_image_tokens, tokenize_conversation
from .validate import Problem, ValidationReport, validate_data

__all__ = [
    "DEFAULT_MAX_LENGTH", "DEFAULT_TEMPLATE", "IGNORE_INDEX", "IMAGE_TOKEN", "TEMPLATES", "DataError", "DataSource",
    "LlavaDataCollator", "LlavaDataset", "ModalityLengthGroupedSampler", "Problem", "PromptTemplate", "TokenBudgetBatchSampler", "Turn",
    "ValidationReport", "build_llava_dataset", "check_conversations", "conversation_to_turns", "default_max_length",
    "expand_image_tokens", "get_template", "iter_records", "load_image", "pair_sources", "read_samples", "resolve_image_path",
    "template_from_chat_template", "to_rgb", "tokenize_conversation", "validate_data",
]
