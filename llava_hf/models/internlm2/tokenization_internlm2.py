"""InternLM2 tokenizer: the published `tokenizer.model` + `tokenizer_config.json`, no remote code.

transformers 5 converts the SentencePiece proto into a `tokenizers` backend and renames the
`[UNUSED_TOKEN_*]` placeholders to the chat tokens listed in `added_tokens_decoder`, which reproduces the
original ids (no dummy prefix, byte fallback, special tokens never split). This class only pins what the
original fast tokenizer did differently from that generic backend: the class name the published
`tokenizer_class` refers to, left padding for generation, and a copy of `tokenizer.model` on save so exports
still load in the original ecosystem.
"""

import os
from shutil import copyfile

from transformers.tokenization_utils_tokenizers import TokenizersBackend


class InternLM2Tokenizer(TokenizersBackend):
    vocab_files_names = {"vocab_file": "tokenizer.model", "tokenizer_file": "tokenizer.json"}
    padding_side = "left"
    model_input_names = ["input_ids", "attention_mask"]

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
