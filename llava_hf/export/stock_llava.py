"""`llava-hf export-hf`: a stock `transformers.LlavaForConditionalGeneration` folder (no llava_hf, no remote code).

Plain transformers, vLLM, SGLang and TGI serve that class, not ours. Our model computes the same function:
the vision tower, projector and image-feature selection are LLaVA's, and an InternLM2 language model is a Llama
once `wqkv` is unpacked (`llava_hf.models.internlm2.convert_internlm2`, rope settings included). What differs is
only names and packaging:

- weights: our `language_model.*` (the causal LM with its head) becomes LLaVA's `model.language_model.*` +
  `lm_head.*` (checked by loading them strictly into a meta-device `LlavaForConditionalGeneration`), saved in the
  layout of the LLaVA checkpoints on the Hub (`language_model.model.*`, `language_model.lm_head.*`,
  `vision_tower.vision_model.*`, `multi_modal_projector.*`): what transformers 4.x, vLLM and transformers >= 5.17
  read. (transformers 5's own `save_pretrained` writes the vision tower without its `vision_model.` prefix, which
  only transformers 5 reads.)
- image features: stock LLaVA's `default` strategy drops token 0 of any encoder, ours drops the tokens the encoder
  puts ahead of its patches (CLIP's CLS; none for SigLIP). So an encoder with one CLS keeps `default`, and one without
  (SigLIP) is written with `full`, which there keeps the same tokens (`stock_feature_selection`).
- processor: `LlavaProcessor` with a stock fast tokenizer (`tokenizer.json`), `LlavaImageProcessor` with
  `do_pad` (pads to a square with the image-mean colour before resizing, as our processor does) and the encoder's
  resize/crop/normalise settings (checked: the same pixels on probe images), `num_additional_image_tokens` (CLIP's
  CLS: 1, SigLIP: 0) so its image-token count equals our `image_seq_length`; our chat template; a generation config
  that stops at EOS and at `<|im_end|>`.
- transformers 4.x (>= 4.49, which many serving stacks still pin) reads the folder too, with the same ids, pixels,
  rope and output: `transformers4_files` adds what it reads where 5.x writes something else (the tokenizer class,
  `rope_theta` / `rope_scaling` next to `rope_parameters`, `preprocessor_config.json`). The model card and
  `requirements.txt` state that minimum.

Every field of our config has a `LlavaConfig` counterpart except `text_model_name_or_path` /
`vision_model_name_or_path`, which only matter for a folder without backbone weights (the export holds them all).
What the stock class cannot express is refused before any weight is read, with the reason (`stock_llava_config`):
a text model or vision tower transformers does not implement, a projector other than `mlp2x_gelu` (stock's is
always Linear-act-Linear, without token downsampling), or a `default` strategy that drops more than the first token
(an encoder with register tokens). Such a model still trains, merges, chats and loads with remote code.
"""

import copy

import torch

from ..errors import UserInputError
from .merge import DEFAULT_MAX_SHARD_SIZE, folder_kind, load_merged
from .output_folder import atomic_output_folder, check_output_folder

# The image processor settings LlavaImageProcessor shares (CLIP's; SigLIP's are a subset, without a crop).
IMAGE_PROCESSOR_SETTINGS = ("size", "crop_size", "resample", "do_resize", "do_center_crop", "do_rescale",
                            "rescale_factor", "do_normalize", "image_mean", "image_std", "do_convert_rgb")
# Encoders whose Hub checkpoints (and transformers 4.x) name their weights `vision_model.*`.
VISION_MODEL_PREFIXED = ("clip_vision_model", "siglip_vision_model")
CANNOT_EXPORT = "cannot export to stock LlavaForConditionalGeneration: "


def export_stock_llava(src: str, out: str, dtype: str = "auto", max_shard_size: str = DEFAULT_MAX_SHARD_SIZE,
                       force: bool = False) -> str:
    """Write `src` (any folder `llava-hf merge` accepts: adapters are merged first) as a stock LLaVA folder."""
    from transformers import AutoConfig

    from ..models.adapters import adapter_base
    from .model_card import build_model_card, save_model_card
    from .transformers4_files import add_transformers4_files

    check_output_folder(out, force, inputs=[src])
    config_folder = adapter_base(src) if folder_kind(src) == "adapter" else src
    stock_llava_config(AutoConfig.from_pretrained(config_folder))  # refuse before loading weights
    model, processor = load_merged(src, dtype)
    stock_model = to_stock_llava_model(model)
    stock_processor = to_stock_llava_processor(processor, model.config)
    with atomic_output_folder(out, force, inputs=[src]) as staging:
        stock_model.save_pretrained(staging, state_dict=hub_layout_state_dict(stock_model), save_original_format=False,
                                    max_shard_size=max_shard_size)
        stock_processor.save_pretrained(staging)
        add_transformers4_files(staging)
        save_model_card(build_model_card(stock_model.config, stock=True), staging)
    return out


def stock_llava_config(config):
    """The `LlavaConfig` for our `LlavaInternLM2Config`, or `UserInputError` saying what stock LLaVA lacks."""
    from transformers import LlavaConfig

    from ..models.internlm2 import InternLM2Config, internlm2_config_to_llama_config

    text_config = config.text_config
    if isinstance(text_config, InternLM2Config):
        text_config = internlm2_config_to_llama_config(text_config)
    text_config, vision_config = copy.deepcopy(text_config), copy.deepcopy(config.vision_config)
    for sub_config in (text_config, vision_config):
        sub_config.name_or_path = ""  # where the backbones were loaded from: a local path, meaningless elsewhere
    for part, sub_config in (("language model", text_config), ("vision tower", vision_config)):
        if not _is_stock(sub_config):
            raise UserInputError(
                f"{CANNOT_EXPORT}the {part} is a {sub_config.model_type!r} "
                "model, which transformers does not implement (stock LLaVA would need remote code for it)"
            )
    if config.projector_downsample is not None:
        raise UserInputError(
            f"{CANNOT_EXPORT}projector_downsample={config.projector_downsample!r} merges each 2x2 block of patches "
            "into one image token, and stock LLaVA's projector has no such step (it maps every selected encoder token "
            "to one image token); `llava-hf merge` writes a folder that loads with trust_remote_code"
        )
    if config.projector_type != "mlp2x_gelu":
        raise UserInputError(
            f"{CANNOT_EXPORT}projector_type={config.projector_type!r}: stock LLaVA's projector is always "
            "Linear-activation-Linear (mlp2x_gelu); `llava-hf merge` writes a folder that loads with trust_remote_code"
        )
    strategy, _ = stock_feature_selection(config)
    return LlavaConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_index=config.image_token_id,
        image_seq_length=config.image_seq_length,
        projector_hidden_act=config.projector_hidden_act,
        vision_feature_select_strategy=strategy,
        vision_feature_layer=config.vision_feature_layer,
        multimodal_projector_bias=config.multimodal_projector_bias,
        tie_word_embeddings=config.tie_word_embeddings,
    )


def stock_feature_selection(config) -> tuple[str, int]:
    """(stock `vision_feature_select_strategy`, LlavaProcessor's `num_additional_image_tokens`) that select the
    features ours does. Stock's `default` drops exactly token 0, whatever the encoder: ours drops the encoder's
    `num_additional_image_tokens`, so it is stock's `default` for one CLS and stock's `full` for none (SigLIP)."""
    additional = config.num_additional_image_tokens
    if config.vision_feature_select_strategy == "full" or additional == 0:
        return "full", additional
    if additional == 1:
        return "default", 1
    raise UserInputError(
        f"{CANNOT_EXPORT}the vision tower ({config.vision_config.model_type}) puts {additional} tokens ahead of its "
        "patches (a CLS and register tokens), which the 'default' strategy drops; stock LLaVA's 'default' drops only "
        "the first (train with --vision_feature_select_strategy full to export such an encoder)"
    )


def _is_stock(config) -> bool:
    from transformers import AutoConfig

    try:
        return type(AutoConfig.for_model(config.model_type)).__module__.startswith("transformers.")
    except ValueError:
        return False


def stock_state_dict(model) -> dict:
    """Our state dict under stock `LlavaForConditionalGeneration`'s parameter names (InternLM2 unpacked to Llama)."""
    from ..models.internlm2 import InternLM2Config, internlm2_to_llama_state_dict

    state = model.state_dict()
    language_model = model.language_model
    base_prefix, head_prefix = f"{language_model.base_model_prefix}.", "lm_head."
    if isinstance(model.config.text_config, InternLM2Config):
        state = internlm2_to_llama_state_dict(state, model.config.text_config, prefix="language_model.")
    else:
        head = language_model.get_output_embeddings()
        head_prefix = next(name for name, module in language_model.named_modules() if module is head) + "."
    renamed = {}
    for key, tensor in state.items():
        if key.startswith("language_model." + head_prefix):
            renamed["lm_head." + key[len("language_model." + head_prefix):]] = tensor
        elif key.startswith("language_model." + base_prefix):
            renamed["model.language_model." + key[len("language_model." + base_prefix):]] = tensor
        else:
            renamed["model." + key] = tensor  # vision_tower.*, multi_modal_projector.*
    return renamed


def to_stock_llava_model(model):
    """A `LlavaForConditionalGeneration` holding our weights, to be saved: built on the meta device and given our
    tensors (no copy, no random init of a second model). Its non-persistent buffers (rotary frequencies, CLIP
    position ids) stay on the meta device; `from_pretrained` of the saved folder computes them."""
    from transformers import LlavaForConditionalGeneration

    config = stock_llava_config(model.config)
    with torch.device("meta"):
        stock = LlavaForConditionalGeneration(config)
    stock.load_state_dict(stock_state_dict(model), strict=True, assign=True)
    stock.generation_config = copy.deepcopy(model.generation_config)
    return stock.eval()


def hub_layout_state_dict(stock) -> dict:
    """`LlavaForConditionalGeneration`'s weights under the names LLaVA checkpoints on the Hub use (CLIP's and SigLIP's
    with their `vision_model.` prefix, which transformers 4.x needs and 5.x removes on loading)."""
    vision_prefix = ("vision_tower.vision_model." if stock.config.vision_config.model_type in VISION_MODEL_PREFIXED
                     else "vision_tower.")
    renames = (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
               ("model.vision_tower.", vision_prefix), ("model.multi_modal_projector.", "multi_modal_projector."))
    state = {}
    for key, tensor in stock.state_dict().items():
        if key == "lm_head.weight" and stock.config.tie_word_embeddings:
            continue  # the input embeddings; loading ties them again
        runtime, hub = next((old, new) for old, new in renames if key.startswith(old))
        rest = key[len(runtime):]
        state[hub + rest.removeprefix("vision_model.")] = tensor  # the prefix once, whether or not it is there
    return state


def to_stock_llava_processor(processor, config):
    """`LlavaProcessor` equivalent to our processor: same tokenizer ids, same pixels, same image-token count (the
    pixels and the count checked on probe images)."""
    from transformers import LlavaImageProcessorPil, LlavaProcessor

    settings = processor.image_processor.to_dict()
    settings = {k: settings[k] for k in IMAGE_PROCESSOR_SETTINGS if settings.get(k) is not None}
    settings.setdefault("do_center_crop", False)  # SigLIP's resizes to the final size; LlavaImageProcessor crops
    image_processor = LlavaImageProcessorPil(do_pad=processor.pad_to_square, **settings)
    strategy, additional = stock_feature_selection(config)
    stock = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=stock_tokenizer(processor.tokenizer),
        patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=strategy,
        chat_template=processor.chat_template,
        image_token=processor.image_token,
        num_additional_image_tokens=additional,  # CLIP's CLS: 1; SigLIP: 0
    )
    check_same_preprocessing(processor, stock, config)
    return stock


def check_same_preprocessing(processor, stock, config) -> None:
    """`UserInputError` unless the stock processor gives our pixels (within 1e-5) and our image-token count on a wide
    and a tall probe image."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for width, height in ((48, 30), (30, 52)):
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        ours = processor.preprocess_images([image])
        theirs = stock(images=[image], text=stock.image_token, return_tensors="pt")
        if ours.shape != theirs["pixel_values"].shape or (ours - theirs["pixel_values"]).abs().max() > 1e-5:
            raise UserInputError(
                f"{CANNOT_EXPORT}LlavaImageProcessor does not reproduce {type(processor.image_processor).__name__}'s "
                f"pixels (a {width}x{height} probe image gives {tuple(theirs['pixel_values'].shape)} vs "
                f"{tuple(ours.shape)}, or different values)"
            )
        count = int((theirs["input_ids"] == stock.tokenizer.convert_tokens_to_ids(stock.image_token)).sum())
        if count != config.image_seq_length:
            raise UserInputError(f"{CANNOT_EXPORT}LlavaProcessor would insert {count} image tokens per image (patch "
                                 f"{stock.patch_size}), the model needs {config.image_seq_length}")


def stock_tokenizer(tokenizer):
    """The tokenizer as the class transformers ships (`PreTrainedTokenizerFast`, 5.x's `TokenizersBackend`) over the
    same `tokenizers` pipeline: the same ids, special tokens and padding side, and nothing that points at our code
    (no `auto_map`)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=copy.deepcopy(tokenizer.backend_tokenizer),
        padding_side=tokenizer.padding_side,
        chat_template=tokenizer.chat_template,
        model_max_length=tokenizer.model_max_length,
        clean_up_tokenization_spaces=tokenizer.clean_up_tokenization_spaces,
        extra_special_tokens=list(tokenizer.extra_special_tokens),
        **tokenizer.special_tokens_map,
    )
