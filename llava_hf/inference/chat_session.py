"""A multi-turn, multi-image conversation that keeps the KV cache between turns.

XTuner's chat re-encodes the whole history every turn. Here each turn renders the full conversation (so the
prompt is exactly what a fresh full-history `generate` would see), tokenizes it (cheap), and hands `generate`
the full ids together with the cache of the previous turns: transformers then runs the model only on the
tokens the cache does not already hold. Where the re-tokenized history differs from what was generated
(an answer cut by a stop word or `max_new_tokens`, or tokens that decode and re-encode differently), the
cache is cropped to the longest common prefix first, so the answer always equals the full-history one.
"""

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from PIL import Image
from transformers import DynamicCache, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from llava_hf.models.internlm2.modeling_internlm2 import CACHE_FIELD

# `generate` takes the cache as `cache` from transformers 5.2x on, `past_key_values` before.
CACHE_KWARG = "cache" if CACHE_FIELD == "cache" else "past_key_values"


@dataclass
class ChatTurn:
    """One exchange: the user's text, the images sent with it, and the answer (None while generating)."""

    text: str
    images: list[Image.Image] = field(default_factory=list)
    answer: str | None = None


class StopFlag(StoppingCriteria):
    """Lets another thread end a running `generate` (Ctrl-C in the terminal, a closed browser tab)."""

    def __init__(self):
        self.event = threading.Event()

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class ChatSession:
    """Talk to a LLaVA model turn by turn; `stream_reply` yields the answer as it is generated.

    `template` is None for the model's own chat template, or a `llava_hf.data.templates.PromptTemplate`
    (XTuner-style strings). `generation_options` go to `generate` unchanged (max_new_tokens, do_sample, ...).
    `stop_words` end an answer and are not part of it.
    """

    def __init__(self, model, processor, *, template=None, system: str | None = None,
                 generation_options: dict | None = None, stop_words=()):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.template = template
        self.system = system
        self.generation_options = dict(generation_options or {})
        template_stops = template.stop_words if template else [end_of_turn_marker(processor)]
        words = list(dict.fromkeys(word for word in [*stop_words, *template_stops] if word))
        # Added/special tokens (`<|im_end|>`) end generation as EOS does; other words are matched as text, even
        # one-token ones, which can also appear inside a longer token ("Co" in "Colour").
        self.stop_token_ids = [added_token_id(self.tokenizer, word) for word in words]
        self.stop_words = [word for word, token_id in zip(words, self.stop_token_ids) if token_id is None]
        self.stop_token_ids = [token_id for token_id in self.stop_token_ids if token_id is not None]
        self.reset()

    def reset(self):
        """Forget the conversation (and its cache); the next turn starts from scratch."""
        self.turns: list[ChatTurn] = []
        self.pending_images: list[Image.Image] = []
        self.cache = DynamicCache()
        self.cached_ids = torch.empty(0, dtype=torch.long)

    def add_image(self, image: Image.Image):
        """Attach an image to the next user turn (as a new `<image>` in that turn)."""
        self.pending_images.append(image)

    def reply(self, text: str, images=()) -> str:
        """The whole answer to `text` at once."""
        for _ in self.stream_reply(text, images):
            pass
        return self.turns[-1].answer

    def stream_reply(self, text: str, images=()) -> Iterator[str]:
        """Yield the answer to `text` piece by piece; the turn is recorded even if the caller stops early."""
        turn = ChatTurn(text=text, images=[*self.pending_images, *images])
        self.turns.append(turn)
        try:
            inputs = self.prepare_inputs()
        except Exception:
            self.turns.pop()  # the conversation stays as it was, pending images included
            raise
        self.pending_images = []
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop_flag = StopFlag()
        result = {}

        def run_generate():
            try:
                result["sequences"] = self.model.generate(
                    **inputs, streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([stop_flag]), **self.stop_options(),
                    **{CACHE_KWARG: self.cache}, **self.generation_options)
            except BaseException as error:  # re-raised in the caller's thread below
                result["error"] = error
                streamer.end()

        worker = threading.Thread(target=run_generate, daemon=True)
        worker.start()
        try:
            yield from hold_back_stop_words(streamer, self.stop_words)
        finally:
            stop_flag.event.set()
            worker.join()
            if "error" in result:
                self.turns.pop()
                raise result["error"]
            self.record_answer(turn, inputs["input_ids"], result["sequences"])

    def prepare_inputs(self):
        """`generate` inputs: full-history ids (the cache is cropped to the prefix they share with what it
        holds) and the pixels of the images that are not in the cache yet."""
        prompt = self.render_prompt()
        images = [image for turn in self.turns for image in turn.images]
        add_bos = not (self.tokenizer.bos_token and prompt.startswith(self.tokenizer.bos_token))
        inputs = self.processor(images=images or None, text=prompt, return_tensors="pt", add_special_tokens=add_bos)
        input_ids = inputs["input_ids"]
        reuse = self.reusable_prefix_length(input_ids[0])
        cached_length = self.cache.get_seq_length()
        if reuse == 0:
            self.cache = DynamicCache()
        elif reuse < cached_length:
            self.cache.crop(reuse - cached_length)  # a negative count: tokens to drop (5.17 and 5.2x agree)
        image_token_id = self.processor.image_token_id
        new_image_tokens = int((input_ids[0, reuse:] == image_token_id).sum())
        n_new_images = new_image_tokens // self.processor.image_seq_length
        model_inputs = {"input_ids": input_ids.to(self.model.device),
                        "attention_mask": torch.ones_like(input_ids).to(self.model.device)}
        if n_new_images:
            model_inputs["pixel_values"] = inputs["pixel_values"][len(images) - n_new_images:].to(
                self.model.device, self.model.dtype)
        return model_inputs

    def reusable_prefix_length(self, input_ids: torch.Tensor) -> int:
        """How many leading tokens of `input_ids` the cache already holds (never all: one must be fed),
        moved back to an image's first token so an image is always encoded whole."""
        cached = self.cached_ids[: self.cache.get_seq_length()]
        limit = min(len(cached), len(input_ids) - 1)
        differs = (cached[:limit] != input_ids[:limit]).nonzero()
        reuse = int(differs[0]) if len(differs) else limit
        image_token_id = self.processor.image_token_id
        while 0 < reuse and input_ids[reuse] == image_token_id and input_ids[reuse - 1] == image_token_id:
            reuse -= 1
        return reuse

    def stop_options(self) -> dict:
        options = {}
        if self.stop_token_ids:
            eos = self.model.generation_config.eos_token_id
            eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
            options["eos_token_id"] = list(dict.fromkeys([*eos, *self.stop_token_ids]))
        if self.stop_words:
            options.update(stop_strings=self.stop_words, tokenizer=self.tokenizer)
        return options

    def record_answer(self, turn: ChatTurn, input_ids: torch.Tensor, sequences: torch.Tensor):
        """Store the answer text and which ids the cache now holds (everything fed, not the last token)."""
        new_ids = sequences[0, input_ids.shape[1]:]
        turn.answer = cut_at_stop_words(self.tokenizer.decode(new_ids, skip_special_tokens=True), self.stop_words)
        self.cached_ids = sequences[0, : self.cache.get_seq_length()].cpu()

    def render_prompt(self) -> str:
        """The whole conversation as text, ending where the assistant's next answer starts."""
        if self.template is None:
            return self.processor.apply_chat_template(self.messages(), add_generation_prompt=True, tokenize=False)
        return render_with_template(self.template, self.turns, self.system, self.processor.image_token,
                                    self.tokenizer.eos_token)

    def messages(self) -> list[dict]:
        """The conversation in transformers' chat format (content parts; images as `{"type": "image"}`)."""
        messages = []
        if self.system:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        for turn in self.turns:
            content = [{"type": "image"} for _ in turn.images] + [{"type": "text", "text": turn.text}]
            messages.append({"role": "user", "content": content})
            if turn.answer is not None:
                messages.append({"role": "assistant", "content": [{"type": "text", "text": turn.answer}]})
        return messages


def end_of_turn_marker(processor) -> str | None:
    """What the chat template writes right after an answer (`<|im_end|>` for InternLM2), to stop there."""
    marker = "\x01ANSWER\x01"
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": [{"type": "text", "text": marker}]}]
    try:
        rendered = processor.apply_chat_template(messages, tokenize=False)
    except Exception:  # noqa: BLE001 (a template that cannot render this gives no marker, not an error)
        return None
    after = rendered.partition(marker)[2].strip()
    return after or None


def added_token_id(tokenizer, word: str) -> int | None:
    """The id of `word` when it is an added or special token (never part of a longer token), else None."""
    return tokenizer.get_added_vocab().get(word)


def render_with_template(template, turns: list[ChatTurn], system, image_token: str, eos_token: str) -> str:
    """XTuner's layout: [SYSTEM] + INSTRUCTION for the first turn, INSTRUCTION later; each answer is followed
    by SUFFIX (or EOS where the template has none) and SEP; images come first in their turn."""
    parts = [template.system.format(system=system)] if system and template.system else []
    for index, turn in enumerate(turns):
        if template.image_only_input:  # LLaVA "plain" (stage 1): the image alone is the prompt
            text = image_token * len(turn.images)
        else:
            text = "".join(f"{image_token}\n" for _ in turn.images) + turn.text
        parts.append(template.instruction.format(input=text, round=index + 1))
        if turn.answer is not None:
            parts.append(turn.answer + (template.suffix or eos_token or "") + (template.sep or ""))
    return "".join(parts)


def cut_at_stop_words(text: str, stop_words) -> str:
    positions = [text.find(word) for word in stop_words if word in text]
    return text[: min(positions)] if positions else text


def hold_back_stop_words(pieces, stop_words) -> Iterator[str]:
    """Pass streamed text through, but never show a stop word: text that may be the start of one waits."""
    if not stop_words:
        yield from pieces
        return
    buffer = ""
    for piece in pieces:
        buffer += piece
        cut = cut_at_stop_words(buffer, stop_words)
        if cut != buffer:
            if cut:
                yield cut
            return
        keep = max((n for word in stop_words for n in range(1, len(word)) if buffer.endswith(word[:n])), default=0)
        if len(buffer) > keep:
            yield buffer[: len(buffer) - keep]
            buffer = buffer[len(buffer) - keep:]
    if buffer:
        yield buffer
