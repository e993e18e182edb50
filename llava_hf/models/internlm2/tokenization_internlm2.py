"""InternLM2 tokenizer: the published `tokenizer.model` + `tokenizer_config.json`, no remote code.

transformers 5 converts the SentencePiece proto into a `tokenizers` backend and renames the
`[UNUSED_TOKEN_*]` placeholders to the chat tokens listed in `added_tokens_decoder`, which reproduces the
original ids (no dummy prefix, byte fallback, special tokens never split). This class only pins what the
original fast tokenizer did differently from that generic backend: the class name the published
`tokenizer_class` refers to, left padding for generation, and a copy of `tokenizer.model` on save so exports
still load in the original ecosystem.

A saved folder needs no tokenizer code: it holds `tokenizer.json`, records `padding_side`, and drops the
published `auto_map` (it names `tokenization_internlm2_fast.py`, which is never copied). Where llava_hf is not
installed, transformers (>= 5.17) does not know the class name and loads the same `tokenizer.json` with its stock
`TokenizersBackend`: the same ids, the same padding side.
"""

import os
from shutil import copyfile

from transformers.tokenization_utils_tokenizers import TokenizersBackend


class InternLM2Tokenizer(TokenizersBackend):
    vocab_files_names = {"vocab_file": "tokenizer.model", "tokenizer_file": "tokenizer.json"}
    padding_side = "left"
    model_input_names = ["input_ids", "attention_mask"]

    # No `__init__` of our own: transformers converts the SentencePiece file (renaming the chat placeholders) only
    # for tokenizer classes that keep TokenizersBackend's.

    def save_pretrained(self, save_directory, *args, **kwargs):
        # What tokenizer_config.json records comes from `init_kwargs`: the padding side for the stock class, and no
        # `auto_map` entry for remote tokenizer files the folder does not hold.
        auto_map = {k: v for k, v in (self.init_kwargs.get("auto_map") or {}).items() if k != "AutoTokenizer"}
        self.init_kwargs = {k: v for k, v in self.init_kwargs.items() if k != "auto_map"}
        self.init_kwargs.update({"padding_side": self.padding_side}, **({"auto_map": auto_map} if auto_map else {}))
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _save_pretrained(self, save_directory, file_names, legacy_format=None, filename_prefix=None):
        file_names = super()._save_pretrained(save_directory, file_names, legacy_format, filename_prefix)
        return file_names + self.save_vocabulary(str(save_directory), filename_prefix)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        vocab_file = getattr(self, "vocab_file", None)
        if not vocab_file or not os.path.isfile(vocab_file):
            return ()
        out = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "tokenizer.model")
        if os.path.abspath(vocab_file) != os.path.abspath(out):
            copyfile(vocab_file, out)
        return (out,)


__all__ = ["InternLM2Tokenizer"]
