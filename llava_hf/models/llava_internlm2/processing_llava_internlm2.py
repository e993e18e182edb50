"""Processor for LLaVA-InternLM2: the vision encoder's image processor + tokenizer + the internlm2 chat template.

Images are preprocessed in one place (`preprocess_images`, which the training data pipeline calls too):
optionally padded to a square with the image-mean colour, as LLaVA-1.5 does for finetuning and inference,
then resized/cropped/normalised by the encoder's image processor (CLIP's, SigLIP's, ...). Text has each `<image>`
expanded to `image_seq_length` image tokens before tokenization, as `LlavaProcessor` does.
"""

from .transformers_version import require_supported_transformers


require_supported_transformers()  # before the imports below, which older transformers lack

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers.feature_extraction_utils import BatchFeature  # noqa: E402
from transformers.processing_utils import ProcessorMixin  # noqa: E402


def build_chat_template(image_token: str = "<image>") -> str:
    """The internlm2 chat format (`{{ bos_token }}` then `<|im_start|>role\\ncontent<|im_end|>\\n` per message).

    Message content is a string or a list of `{"type": "image"}` / `{"type": "text", "text": ...}` items; images
    render as `<image>\\n` at the start of the message text, where XTuner's LLaVA templates put them.
    """
    return (
        "{{ bos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '" + image_token + "\\n' }}"
        "{% endif %}{% endfor %}"
        "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
        "{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


# `from_pretrained` keyword arguments that say where files come from, passed on to the image processor's loading.
PRETRAINED_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")

# Tokens that end a chat turn in the chat formats we know (InternLM2/Qwen ChatML, Llama-3, Phi-3).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>")


def chat_stop_token_ids(tokenizer) -> list[int]:
    """The ids generation stops at in a chat: EOS and whichever end-of-turn token the vocabulary has (internlm2-chat:
    `</s>` and `<|im_end|>`, as the original chat code passes [2, 92542])."""
    vocab = tokenizer.get_vocab()
    ids = [tokenizer.eos_token_id, *(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)]
    return [i for i in dict.fromkeys(ids) if i is not None]


def expand_to_square(image: Image.Image, background_color: tuple[int, int, int]) -> Image.Image:
    """LLaVA-1.5's `expand2square`: paste the image centred on a square canvas of side max(width, height).

    The result is RGB (the background is an RGB colour and CLIP takes RGB).
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), tuple(background_color))
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def _flatten_images(images) -> list:
    if images is None:
        return []
    if not isinstance(images, (list, tuple)):
        return [images]
    flat = []
    for item in images:
        flat.extend(item if isinstance(item, (list, tuple)) else [item])
    return flat


class LlavaInternLM2Processor(ProcessorMixin):
    r"""
    Wraps the vision encoder's image processor and a tokenizer that has `image_token` as a single added token.

    Args:
        image_processor: any image processor returning `pixel_values` (CLIP's, SigLIP's, ...; the PIL one where
            transformers has one, as `build_llava_processor` loads it).
        tokenizer: the language model's tokenizer, with `image_token` added.
        chat_template: defaults to the internlm2 chat format (see `build_chat_template`).
        image_token: the placeholder the text uses for one image.
        image_seq_length: image tokens per image; must equal the model's `config.image_seq_length`.
        pad_to_square: pad images to a square with the image-mean colour before the image processor.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template=None,
        image_token="<image>",
        image_seq_length=576,
        pad_to_square=True,
        **kwargs,
    ):
        self.image_token = image_token
        self.image_seq_length = image_seq_length
        self.pad_to_square = pad_to_square
        image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        if image_token_id is None or image_token_id == tokenizer.unk_token_id:
            raise ValueError(
                f"The tokenizer has no {image_token!r} token; add it as a special token "
                "(build_llava_from_pretrained does) before building the processor"
            )
        self.image_token_id = image_token_id
        if chat_template is None:
            chat_template = build_chat_template(image_token)
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """The saved processor, its image processor in the PIL implementation where transformers has one, as
        `build_llava_processor` chose it: `AutoImageProcessor` would pick the torchvision one wherever torchvision is
        installed, whose resizing gives slightly different pixels than the model was trained on."""
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        if kwargs.get("image_processor") is None:
            # from its module: transformers 5.17's top-level name is a placeholder that demands torchvision
            from transformers.models.auto.image_processing_auto import AutoImageProcessor

            hub_kwargs = {key: kwargs[key] for key in PRETRAINED_HUB_KWARGS if key in kwargs}
            processor.image_processor = AutoImageProcessor.from_pretrained(pretrained_model_name_or_path,
                                                                           backend="pil", **hub_kwargs)
        return processor

    @property
    def background_color(self) -> tuple[int, int, int]:
        """The image-mean colour LLaVA-1.5 pads with (CLIP's, or SigLIP's 0.5 grey)."""
        mean = getattr(self.image_processor, "image_mean", None)
        if mean is None:
            raise ValueError(f"{type(self.image_processor).__name__} has no image_mean to pad images to a square with; "
                             "turn padding off (pad_to_square=False, --pad_image_to_square false)")
        return tuple(int(x * 255) for x in mean)

    def preprocess_images(self, images, pad_to_square: bool | None = None) -> torch.Tensor:
        """`[n, 3, H, W]` pixel values for a list of images (padded to square first when enabled)."""
        images = _flatten_images(images)
        if not images:
            raise ValueError("preprocess_images got no images")
        pad = self.pad_to_square if pad_to_square is None else pad_to_square
        if pad:
            for index, image in enumerate(images):
                if not isinstance(image, Image.Image):
                    raise TypeError(f"image {index}: pad_to_square needs a PIL image, got {type(image).__name__}")
            images = [expand_to_square(image, self.background_color) for image in images]
        else:
            images = [image.convert("RGB") if isinstance(image, Image.Image) else image for image in images]
        return self.image_processor(images, return_tensors="pt")["pixel_values"]

    def __call__(self, images=None, text=None, pad_to_square: bool | None = None, return_tensors="pt", **kwargs):
        """Tokenize `text` with each `image_token` expanded to `image_seq_length` image tokens, and preprocess
        `images` (one per `image_token`, in order; flat or one list per sample). Returns input_ids,
        attention_mask and, when there are images, pixel_values `[n_images, 3, H, W]`."""
        if text is None and images is None:
            raise ValueError("Pass `text`, `images`, or both")
        flat_images = _flatten_images(images)
        data = {}
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            self._check_image_count(texts, images, flat_images)
            expanded = [t.replace(self.image_token, self.image_token * self.image_seq_length) for t in texts]
            text_inputs = self.tokenizer(expanded, return_tensors=return_tensors, **kwargs)
            self._check_expanded(texts, text_inputs["input_ids"])
            data.update(text_inputs)
        if flat_images:
            data["pixel_values"] = self.preprocess_images(flat_images, pad_to_square)
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _check_image_count(self, texts, images, flat_images):
        per_sample = isinstance(images, (list, tuple)) and len(images) == len(texts) and len(texts) > 1 and all(
            isinstance(item, (list, tuple)) for item in images
        )
        if per_sample:
            for index, (t, sample_images) in enumerate(zip(texts, images)):
                if t.count(self.image_token) != len(sample_images):
                    raise ValueError(
                        f"sample {index}: the text has {t.count(self.image_token)} {self.image_token!r} placeholders "
                        f"but {len(sample_images)} images were given for it"
                    )
            return
        n_placeholders = sum(t.count(self.image_token) for t in texts)
        if n_placeholders != len(flat_images):
            raise ValueError(
                f"The text has {n_placeholders} {self.image_token!r} placeholders but {len(flat_images)} images "
                "were given; pass exactly one image per placeholder, in order"
            )

    def _check_expanded(self, texts, input_ids):
        # Truncation (or a tokenizer that splits the token) would silently break the image/feature alignment.
        for index, (t, ids) in enumerate(zip(texts, input_ids)):
            expected = t.count(self.image_token) * self.image_seq_length
            found = sum(1 for i in ids if int(i) == self.image_token_id)
            if found != expected:
                raise ValueError(
                    f"sample {index}: expected {expected} image tokens after tokenization, found {found} "
                    "(truncated, or the tokenizer splits the image token)"
                )

    @property
    def model_input_names(self):
        return list(self.tokenizer.model_input_names) + ["pixel_values"]


__all__ = ["END_OF_TURN_TOKENS", "LlavaInternLM2Processor", "build_chat_template", "chat_stop_token_ids",
           "expand_to_square"]
