"""A tiny InternLM2-layout tokenizer, trained on the fly with sentencepiece.

The demo and the tests cannot download `internlm/internlm2-chat-7b`, so they build a stand-in that
takes the same loading path as the real files: a SentencePiece BPE `tokenizer.model` (byte fallback,
no dummy prefix) whose last pieces are `[UNUSED_TOKEN_*]` placeholders, and a `tokenizer_config.json`
that renames those placeholders to the chat tokens through `added_tokens_decoder`, exactly as the
published `tokenizer_config.json` does.
"""

import io
import itertools
import json
import os
import random

# The six placeholders the published tokenizer_config.json renames, in id order (last six ids).
CHAT_TOKENS = {
    "[UNUSED_TOKEN_141]": "<|plugin|>",
    "[UNUSED_TOKEN_142]": "<|interpreter|>",
    "[UNUSED_TOKEN_143]": "<|action_end|>",
    "[UNUSED_TOKEN_144]": "<|action_start|>",
    "[UNUSED_TOKEN_145]": "<|im_end|>",
    "[UNUSED_TOKEN_146]": "<|im_start|>",
}

# The original chat template, verbatim from internlm2-chat's tokenizer_config.json.
INTERNLM2_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_WORDS = (
    "a an the is are what which color colour shape in on of image picture photo describe this that "
    "red green blue yellow purple orange white grey gray light dark background circle square triangle "
    "answer with option letter from given choices directly question hint please user assistant system "
    "yes no there one two three four five shown filled small large big left right top bottom center "
    "hello world dog cat brown how many who where when why and or not it its to for you I can see "
    "caption render clear concise summary give brief description short"
).split()


def _corpus(seed: int = 0, n_lines: int = 3000) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 12))]
        if rng.random() < 0.3:
            words[0] = words[0].capitalize()
        line = " ".join(words) + rng.choice([".", "?", "!", ",", ":", ""])
        if rng.random() < 0.2:
            line = f"A. {line}\nB. {rng.randint(0, 999)}"
        lines.append(line)
    lines.append("你好世界 图片 颜色 形状 请直接回答选项字母。 答案")
    return "\n".join(lines)


def build_tiny_internlm2_tokenizer_files(save_dir: str, vocab_size: int = 1000, seed: int = 0) -> str:
    """Write `tokenizer.model` + `tokenizer_config.json` + `special_tokens_map.json` in the published
    InternLM2 layout to `save_dir` and return it. Ids: <unk>=0, <s>=1, </s>=2, chat tokens last."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    os.makedirs(save_dir, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus(seed).split("\n")),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        add_dummy_prefix=False,
        user_defined_symbols=list(CHAT_TOKENS),
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        character_coverage=1.0,
        minloglevel=2,
    )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    # Move the placeholders to the end of the vocabulary, where the real model keeps them.
    pieces = list(proto.pieces)
    placeholders = sorted((p for p in pieces if p.piece in CHAT_TOKENS), key=lambda p: p.piece)
    others = [p for p in pieces if p.piece not in CHAT_TOKENS]
    del proto.pieces[:]
    for piece in itertools.chain(others, placeholders):
        proto.pieces.add().CopyFrom(piece)
    with open(os.path.join(save_dir, "tokenizer.model"), "wb") as f:
        f.write(proto.SerializeToString())

    n = len(proto.pieces)
    first_chat_id = n - len(CHAT_TOKENS)
    added_tokens_decoder = {
        str(i): {"content": c, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": s}
        for i, c, s in [(0, "<unk>", True), (1, "<s>", True), (2, "</s>", True)]
    }
    for offset, placeholder in enumerate(sorted(CHAT_TOKENS)):
        added_tokens_decoder[str(first_chat_id + offset)] = {
            "content": CHAT_TOKENS[placeholder],
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
    chat_tokens = [CHAT_TOKENS[p] for p in sorted(CHAT_TOKENS, reverse=True)]
    config = {
        "added_tokens_decoder": added_tokens_decoder,
        "additional_special_tokens": chat_tokens,
        "auto_map": {
            "AutoTokenizer": [
                "tokenization_internlm2.InternLM2Tokenizer",
                "tokenization_internlm2_fast.InternLM2TokenizerFast",
            ]
        },
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
        "chat_template": INTERNLM2_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "decode_with_prefix_space": False,
        "model_max_length": 1000000000000000019884624838656,
        "sp_model_kwargs": None,
        "tokenizer_class": "InternLM2Tokenizer",
    }
    with open(os.path.join(save_dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
    special = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>",
               "additional_special_tokens": chat_tokens}
    with open(os.path.join(save_dir, "special_tokens_map.json"), "w") as f:
        json.dump(special, f, indent=2)
    return save_dir
