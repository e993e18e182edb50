"""Conversation -> `input_ids` / `labels` with XTuner's `encode_fn` semantics.

Every text chunk is encoded on its own with `add_special_tokens=False` (chunks split at `<image>`, the
reply, the sep), exactly like XTuner, so SentencePiece prefix behaviour matches checkpoints trained there.
Loss covers only replies, their suffix, and EOS; BOS, user text, the images and the sep are -100.
Truncation counts each image as one token (XTuner's `max_length = 2048 - 576`), then the images expand; an image
whose token truncation cuts off is left out of the sample (`dataset.py` keeps the images whose tokens remain).
"""

import os
import re

import torch

from .conversation import IMAGE_TOKEN, conversation_to_turns
from .templates import PromptTemplate

IGNORE_INDEX = -100
DEFAULT_CONTEXT = 2048  # LLaVA-1.5's and XTuner's context: text tokens + image tokens


def default_max_length(image_seq_length: int) -> int:
    """Text tokens kept per sample when none is given: the context minus the image's tokens."""
    return DEFAULT_CONTEXT - image_seq_length


DEFAULT_MAX_LENGTH = default_max_length(576)  # 1472 for CLIP-L/336 (24 x 24 patches), XTuner's LLaVA setting
IMAGES_CUT_OFF = "images_cut_by_truncation"  # the kind of a sample whose last images lost their token to max_length


def tokenize_conversation(
    conversations, tokenizer, template: PromptTemplate, *, image_token_id: int,
    max_length: int = DEFAULT_MAX_LENGTH, has_image: bool | int, system: str = "",
) -> tuple[list[int], list[int]]:
    """Compact encoding: each image is a single `image_token_id`, where its `<image>` is. `has_image`: the sample's
    number of images (a bool: none or one). Raises ValueError for a bad conversation."""
    turns = conversation_to_turns(conversations, has_image)
    check_template_accepts(template, len(turns), has_image)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    needs_eos = not template.suffix_as_eos
    if needs_eos and tokenizer.eos_token_id is None:
        raise ValueError(f"template without an end-of-reply suffix needs an EOS token; {type(tokenizer).__name__} has none")

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False) if text else []

    input_ids: list[int] = []
    labels: list[int] = []
    turn_needs_bos = True
    for round_index, turn in enumerate(turns):
        user_text = turn.input
        if template.image_only_input:  # one turn with an image (check_template_accepts)
            user_text = IMAGE_TOKEN
        prompt = template.instruction.format(input=user_text, round=round_index + 1)
        if round_index == 0 and system:
            prompt = template.system.format(system=system) + prompt
        before, *after = prompt.split(IMAGE_TOKEN)
        prompt_ids = encode(before) + [i for chunk in after for i in [image_token_id, *encode(chunk)]]
        if turn_needs_bos:
            prompt_ids = bos + prompt_ids
        reply_ids = encode(turn.output + template.suffix) + ([tokenizer.eos_token_id] if needs_eos else [])
        sep_ids = encode(template.sep)
        input_ids += prompt_ids + reply_ids + sep_ids
        labels += [IGNORE_INDEX] * len(prompt_ids) + reply_ids + [IGNORE_INDEX] * len(sep_ids)
        turn_needs_bos = needs_eos
    return input_ids[:max_length], labels[:max_length]


def check_template_accepts(template: PromptTemplate, n_turns: int, has_image: bool | int) -> None:
    """LLaVA's `plain` format is single-turn image captioning: it keeps only the image of the user turn, so a
    text-only sample would become BOS + reply, later questions would vanish, and so would the text that tells
    several images apart. Raise ValueError for those. `has_image`: the number of images (a bool: none or one)."""
    if not template.image_only_input:
        return
    if not has_image:
        raise ValueError("the 'plain' template (LLaVA's single-turn image captioning) needs an image; this sample "
                         "is text-only")
    if int(has_image) > 1:
        raise ValueError(f"the 'plain' template (LLaVA's single-turn image captioning) takes one image; this sample "
                         f"has {int(has_image)}")
    if n_turns > 1:
        raise ValueError(f"the 'plain' template (LLaVA's single-turn image captioning) takes one turn; this sample "
                         f"has {n_turns}")


def expand_image_tokens(input_ids, labels, image_token_id: int, image_seq_length: int):
    """Repeat each image token `image_seq_length` times, in place (labels -100): the positions the features fill, the
    first image's first."""
    input_ids = torch.as_tensor(input_ids, dtype=torch.long)
    labels = torch.as_tensor(labels, dtype=torch.long)
    is_image = input_ids == image_token_id
    if image_seq_length == 1 or not bool(is_image.any()):
        return input_ids, labels
    repeats = torch.where(is_image, image_seq_length, 1)
    return input_ids.repeat_interleave(repeats), labels.repeat_interleave(repeats)


def has_supervised_tokens(labels) -> bool:
    return any(label != IGNORE_INDEX for label in labels)


class SentencePieceEncoder:
    """SentencePiece's own encoder for a tokenizer converted from its `tokenizer.model` (InternLM2, Llama-2): the same
    ids, 2-3x faster on whole texts. SentencePiece models split no words before BPE, so the `tokenizers` conversion
    merges over each whole text, which SentencePiece's C++ BPE does much faster. Added tokens (`<|im_end|>`, `<image>`)
    are split off first, as the tokenizer does. `for_tokenizer` returns one only when a probe set of texts encodes to
    exactly the tokenizer's ids; anything else keeps the tokenizer. Texts with a NUL character are left to the
    tokenizer too: InternLM2's model has a NUL piece, which SentencePiece treats as unused and transformers does not.
    """

    PROBES = (
        "Hello world", " leading space", "two  spaces\tand a tab\n\nnew lines ", "UPPER lower 12345 3.14",
        "你好，世界。用中文回答", "emoji 🙂 and ümlauts", "code: def f(x):\n    return x ** 2",
        "<image>\nWhat is this?", "answer<|im_end|>", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
        "a<s>b</s>c", "\u200b\u00a0 spaces", "   ", "\n",
    )

    def __init__(self, vocab_file: str, added_tokens: dict[str, int]):
        self.vocab_file = vocab_file
        self.added_tokens = added_tokens
        self.split = re.compile("(" + "|".join(map(re.escape, sorted(added_tokens, key=len, reverse=True))) + ")")
        self._processor = None

    @classmethod
    def for_tokenizer(cls, tokenizer) -> "SentencePieceEncoder | None":
        vocab_file = getattr(tokenizer, "vocab_file", None)
        if not vocab_file or not os.path.isfile(vocab_file) or not tokenizer.get_added_vocab():
            return None
        try:
            encoder = cls(vocab_file, tokenizer.get_added_vocab())
            same = all(encoder.encode(text) == tokenizer.encode(text, add_special_tokens=False) for text in cls.PROBES)
        except (ImportError, OSError, RuntimeError):  # no sentencepiece, or not a SentencePiece model file
            return None
        return encoder if same else None

    def encode(self, text: str) -> list[int] | None:
        """The ids of `text`, or None for a text to leave to the tokenizer."""
        if "\x00" in text:
            return None
        if self._processor is None:  # built lazily: each tokenizing worker loads its own
            import sentencepiece

            self._processor = sentencepiece.SentencePieceProcessor(model_file=self.vocab_file)
        ids = []
        for i, piece in enumerate(self.split.split(text)):
            if i % 2:
                ids.append(self.added_tokens[piece])
            elif piece:
                ids.extend(self._processor.encode(piece))
        return ids

    def __getstate__(self):  # the C++ processor does not pickle; workers rebuild it
        return {**self.__dict__, "_processor": None}


class BulkEncoder:
    """`tokenizer.encode(text, add_special_tokens=False)` for tokenizing a whole dataset: the same ids, faster.

    A tokenizer converted from a SentencePiece model encodes through SentencePiece itself (`SentencePieceEncoder`).
    Otherwise, with a `tokenizers` backend the text goes to the backend directly, skipping transformers' per-call wrapper
    (about 40 % of the time for short chunks), through `encode_batch_fast` where the backend has it (no character
    offsets: another 20 %), and texts seen before (the sep, the template around `<image>`, frequent short answers)
    come from a bounded memo. Everything else is delegated to the tokenizer, so it can
    stand in for it in `tokenize_conversation`. The backend is put in plain-encode state once, here; nothing else
    must reconfigure it (truncation, padding) while this encoder is in use, which holds in a tokenizing worker.
    """

    MEMO_MAX_CHARS = 64  # longer texts rarely repeat

    def __init__(self, tokenizer, memo_size: int = 200_000):
        self.tokenizer = tokenizer
        self.memo: dict[str, list[int]] = {}
        self.memo_size = memo_size
        self.backend = getattr(tokenizer, "backend_tokenizer", None)
        if self.backend is not None:
            tokenizer.encode("", add_special_tokens=False)  # no truncation/padding, its special-token splitting
        self.without_offsets = hasattr(self.backend, "encode_batch_fast")  # tokenizers >= 0.20
        self.sentencepiece = SentencePieceEncoder.for_tokenizer(tokenizer)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        if add_special_tokens:
            return self.tokenizer.encode(text, add_special_tokens=True)
        ids = self.memo.get(text)
        if ids is None:
            ids = self.sentencepiece.encode(text) if self.sentencepiece is not None else None
            if ids is None:
                ids = self._encode_with_tokenizer(text)
            if len(text) <= self.MEMO_MAX_CHARS and len(self.memo) < self.memo_size:
                self.memo[text] = ids
        return list(ids)

    def _encode_with_tokenizer(self, text: str) -> list[int]:
        if self.without_offsets:
            return self.backend.encode_batch_fast([text], add_special_tokens=False)[0].ids
        if self.backend is not None:
            return self.backend.encode(text, add_special_tokens=False).ids
        return self.tokenizer.encode(text, add_special_tokens=False)

    def __getattr__(self, name):
        if name in ("tokenizer", "sentencepiece", "__setstate__", "__getstate__"):  # unpickling: not set yet
            raise AttributeError(name)
        return getattr(self.tokenizer, name)
