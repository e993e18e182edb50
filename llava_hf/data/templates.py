"""Prompt templates: how a (user input, assistant reply) turn is rendered, and which parts carry loss.

The strings are XTuner's `PROMPT_TEMPLATE` (v0.1.23) so checkpoints trained here chat like XTuner's.
Rendering of turn i: `[system] + instruction.format(input=...)` (no loss), then `reply + suffix` (loss),
then EOS with loss when `suffix_as_eos` is False, then `sep` (no loss).
"""

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class PromptTemplate:
    system: str  # "{system}" placeholder; prepended to the first turn only when a system text is given
    instruction: str  # "{input}" placeholder: wraps the user turn
    suffix: str = ""  # appended to every reply, with loss (e.g. "<|im_end|>")
    suffix_as_eos: bool = False  # True: the suffix ends the reply, so no EOS and no per-turn BOS
    sep: str = ""  # after every turn, without loss
    stop_words: tuple[str, ...] = ()  # generation stops when one is produced
    image_only_input: bool = False  # LLaVA "plain": the user text is dropped, only the image is kept


internlm2_chat = PromptTemplate(
    system="<|im_start|>system\n{system}<|im_end|>\n",
    instruction="<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n",
    suffix="<|im_end|>",
    suffix_as_eos=True,
    sep="\n",
    stop_words=("<|im_end|>",),
)
internlm_chat = PromptTemplate(
    system="<|System|>:{system}\n",
    instruction="<|User|>:{input}<eoh>\n<|Bot|>:",
    suffix="<eoa>",
    suffix_as_eos=True,
    sep="\n",
    stop_words=("<eoa>",),
)
vicuna = PromptTemplate(
    system=(
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the user's questions. {system}\n "
    ),
    instruction="USER: {input} ASSISTANT:",
    sep="\n",
)
llama3_chat = PromptTemplate(
    system="<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>",
    instruction=(
        "<|start_header_id|>user<|end_header_id|>\n\n{input}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    suffix="<|eot_id|>",
    suffix_as_eos=True,
    stop_words=("<|eot_id|>",),
)
# Qwen uses the same ChatML layout; it also stops on its document end token.
qwen_chat = dataclasses.replace(internlm2_chat, stop_words=("<|im_end|>", "<|endoftext|>"))
phi3_chat = PromptTemplate(
    system="<|system|>\n{system}<|end|>\n",
    instruction="<|user|>\n{input}<|end|>\n<|assistant|>\n",
    suffix="<|end|>",
    suffix_as_eos=True,
    sep="\n",
    stop_words=("<|end|>",),
)
# LLaVA-1.5 stage 1 (`conv_llava_plain`): BOS, the image, the caption and "\n" (with loss), nothing else.
# Single-turn image captions only: text-only and multi-turn samples are errors (`check_template_accepts`).
plain = PromptTemplate(
    system="{system}",
    instruction="{input}",
    suffix="\n",
    suffix_as_eos=True,
    image_only_input=True,
)

TEMPLATES: dict[str, PromptTemplate] = {
    "internlm2_chat": internlm2_chat,
    "internlm_chat": internlm_chat,
    "vicuna": vicuna,
    "llama3_chat": llama3_chat,
    "qwen_chat": qwen_chat,
    "phi3_chat": phi3_chat,
    "plain": plain,
}
DEFAULT_TEMPLATE = "internlm2_chat"
CHAT_TEMPLATE = "chat_template"  # name that means "derive it from the tokenizer's own chat template"


def get_template(name: str, tokenizer=None) -> PromptTemplate:
    """The named template; `"chat_template"` derives one from `tokenizer.chat_template`."""
    if name == CHAT_TEMPLATE:
        if tokenizer is None:
            raise ValueError(f"template {CHAT_TEMPLATE!r} needs the tokenizer whose chat template to use")
        return template_from_chat_template(tokenizer)
    if name not in TEMPLATES:
        valid = ", ".join([*TEMPLATES, CHAT_TEMPLATE])
        raise ValueError(f"unknown prompt template {name!r}; valid names: {valid}")
    return TEMPLATES[name]


_USER_1, _REPLY_1, _USER_2, _REPLY_2 = "\x01U1\x01", "\x01A1\x01", "\x01U2\x01", "\x01A2\x01"


def template_from_chat_template(tokenizer) -> PromptTemplate:
    """Read instruction / suffix / sep off the tokenizer's Jinja chat template by rendering marker turns.

    The reply's end marker (what follows the reply, up to trailing whitespace) becomes the suffix, with
    loss; the trailing whitespace becomes the sep. Templates that render the first turn differently from
    later ones (e.g. a default system prompt) cannot be expressed and raise.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{type(tokenizer).__name__} has no chat_template; pick a named template instead")

    def render(messages, **kwargs) -> str:
        text = tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
        bos = tokenizer.bos_token
        return text[len(bos):] if bos and text.startswith(bos) else text

    two_turns = render([
        {"role": "user", "content": _USER_1}, {"role": "assistant", "content": _REPLY_1},
        {"role": "user", "content": _USER_2}, {"role": "assistant", "content": _REPLY_2},
    ])
    prompt = render([{"role": "user", "content": _USER_1}], add_generation_prompt=True)
    if _USER_1 not in prompt or not two_turns.startswith(prompt + _REPLY_1):
        raise ValueError("the tokenizer's chat template does not render user/assistant turns in order")
    instruction = prompt.replace("{", "{{").replace("}", "}}").replace(_USER_1, "{input}")
    after_reply_1 = two_turns[len(prompt) + len(_REPLY_1):two_turns.index(_USER_2)]
    second_prefix = prompt.split(_USER_1)[0]
    if not after_reply_1.endswith(second_prefix):
        raise ValueError("the tokenizer's chat template renders the first turn differently from later ones")
    tail = after_reply_1[: len(after_reply_1) - len(second_prefix)]
    suffix = tail.rstrip()
    sep = tail[len(suffix):]
    if not two_turns.endswith(_REPLY_2 + tail):
        raise ValueError("the tokenizer's chat template ends the last reply differently from earlier ones")
    return PromptTemplate(
        system="{system}", instruction=instruction, suffix=suffix, suffix_as_eos=bool(suffix), sep=sep,
        stop_words=(suffix,) if suffix else (),
    )
