"""Any transformers vision encoder, named by its folder: CLIP (any resolution), SigLIP (and SigLIP2's fixed-resolution
checkpoints, which are SigLIP models), and other fixed-resolution patch encoders whose output has `hidden_states`,
chosen by the config's `model_type` through the Auto classes. No encoder is named in code.

A folder may hold the vision model alone or a two-tower model (`openai/clip-vit-large-patch14-336`,
`google/siglip-so400m-patch14-384` hold the text tower too): its `vision_config` is the encoder, and the vision
class loads the encoder's weights from it. Before any weight loads, the encoder is run once on the meta device (no
memory, no weights) to check what LLaVA relies on and to count its tokens, and the image processor once on a small
image: a folder that does not fit is refused with a message that names it.
"""

import copy
import inspect
from dataclasses import dataclass

import torch

from ..errors import UserInputError
from .llava_internlm2.checkpoint_io import vision_encoder_from_pretrained
from .llava_internlm2.configuration_llava_internlm2 import vision_image_size, vision_patch_grid


def vision_config_from_pretrained(name_or_path, pooling_head: bool = False):
    """The vision encoder's config in a folder (or Hub id): the folder's own, or its `vision_config` for a two-tower
    model. SigLIP's attention-pooling head is switched off unless `pooling_head` (a folder written back whole): LLaVA
    reads hidden states, never the pooled output (stock LLaVA-OneVision checkpoints leave it out too), so it would
    only cost memory and compute."""
    from transformers import AutoConfig, PreTrainedConfig

    config = AutoConfig.from_pretrained(name_or_path)
    vision_config = getattr(config, "vision_config", None)
    if isinstance(vision_config, PreTrainedConfig):
        config = vision_config
    if not pooling_head:
        drop_pooling_head(config)
    return config


def drop_pooling_head(vision_config) -> None:
    """Switch SigLIP's attention-pooling head off (`vision_use_head`, which transformers before 5.2x reads without
    declaring it, defaulting to on)."""
    if getattr(vision_config, "vision_use_head", vision_config.model_type == "siglip_vision_model"):
        vision_config.vision_use_head = False


def image_processor_from_pretrained(name_or_path):
    """The folder's image processor, in its PIL implementation where transformers has one: the pixels LLaVA and
    XTuner trained on, with or without torchvision installed (the torchvision one resizes slightly differently)."""
    # from its module: transformers 5.17's top-level name is a placeholder that demands torchvision
    from transformers.models.auto.image_processing_auto import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(name_or_path, backend="pil")


def is_vision_encoder_config(config: dict) -> bool:
    """Whether a `config.json` (as a dict) describes a vision encoder LLaVA can use, or a two-tower model holding
    one: a fixed-resolution patch encoder has `image_size` and `patch_size`."""
    vision = config.get("vision_config")
    if isinstance(vision, dict):
        config = vision
    return config.get("image_size") is not None and config.get("patch_size") is not None


@dataclass(frozen=True)
class EncoderOutput:
    """What one image through the encoder gives: `tokens` per hidden state of `width` features, and
    `hidden_states` states (the embeddings, then one per layer); `patches` is what its config's grid holds."""

    tokens: int
    width: int
    hidden_states: int
    patches: int

    @property
    def additional_tokens(self) -> int:
        """Tokens besides the patches (CLIP's CLS: 1, SigLIP: 0)."""
        return self.tokens - self.patches


def run_on_meta_device(vision_config, name) -> EncoderOutput:
    """Run a skeleton of the encoder (meta device: no memory, no weights) on one image of its size; a
    `UserInputError` naming `name` when its output is not what LLaVA reads (a `[1, tokens, width]` hidden state per
    layer, from pixel values alone)."""
    from transformers import AutoModel

    encoder = f"{name} ({vision_config.model_type})"
    try:
        rows, columns = vision_patch_grid(vision_config)
    except ValueError as error:
        raise UserInputError(f"{name}: {error}") from None
    try:
        with torch.device("meta"):
            model = AutoModel.from_config(copy.deepcopy(vision_config))
    except ValueError as error:
        raise UserInputError(f"{encoder}: transformers has no model class for this config ({error})") from None
    needed = [parameter.name for parameter in list(inspect.signature(model.forward).parameters.values())[1:]
              if parameter.default is inspect.Parameter.empty
              and parameter.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
    if needed:
        raise UserInputError(f"{encoder}: {type(model).__name__} needs {needed} besides the pixel values (a "
                             "variable-resolution encoder); LLaVA runs fixed-resolution encoders on pixel values alone")
    height, width = vision_image_size(vision_config)
    pixels = torch.empty(1, getattr(vision_config, "num_channels", 3), height, width, device="meta")
    try:
        with torch.no_grad():
            output = model(pixels, output_hidden_states=True, return_dict=True)
    except Exception as error:  # whatever the encoder's code raises, said with the encoder's name
        raise UserInputError(f"{encoder}: a {height}x{width} image through {type(model).__name__} failed "
                             f"({type(error).__name__}: {error})") from None
    hidden_states = getattr(output, "hidden_states", None)
    if not hidden_states:
        raise UserInputError(f"{encoder}: {type(model).__name__}'s output has no hidden_states, which LLaVA's "
                             "features are taken from")
    shape = tuple(hidden_states[-1].shape)
    if len(shape) != 3:
        raise UserInputError(f"{encoder}: its hidden states have shape {shape}, not [images, tokens, width]: LLaVA "
                             "needs a transformer encoder's token sequence")
    return EncoderOutput(tokens=shape[1], width=shape[2], hidden_states=len(hidden_states), patches=rows * columns)


def check_encoder_fits(config, output: EncoderOutput, name) -> None:
    """The LLaVA `config` reads `output` (from `run_on_meta_device`) as it expects: its token count, its width and
    its feature layers; otherwise a `UserInputError` naming the encoder `name`."""
    vision_config = config.vision_config
    encoder = f"{name} ({vision_config.model_type})"
    expected = config.num_encoder_tokens()
    if output.additional_tokens < 0:
        raise UserInputError(f"{encoder}: one image gives {output.tokens} tokens, fewer than its {output.patches} "
                             "patches: not a patch encoder whose tokens LLaVA can map to the image")
    if output.tokens != expected:
        raise UserInputError(
            f"{encoder}: one image gives {output.tokens} tokens, but the config counts {expected} ({output.patches} "
            f"patches + num_additional_image_tokens={config.num_additional_image_tokens}); {output.additional_tokens} "
            "would match"
        )
    if output.width != getattr(vision_config, "hidden_size", None):
        raise UserInputError(f"{encoder}: its hidden states are {output.width} wide, but its config's hidden_size "
                             f"is {getattr(vision_config, 'hidden_size', None)}")
    for layer in config.vision_feature_layers():
        if not -output.hidden_states <= layer < output.hidden_states:
            raise UserInputError(f"{encoder}: vision_feature_layer {layer} does not exist; the encoder has "
                                 f"{output.hidden_states} hidden states (indices {-output.hidden_states} to "
                                 f"{output.hidden_states - 1}, -2 is the second to last layer)")


def check_image_processor_fits(image_processor, vision_config, name) -> None:
    """The image processor makes images of the size the encoder was built for (one small image, through it)."""
    from PIL import Image

    expected = vision_image_size(vision_config)
    pixels = image_processor(Image.new("RGB", (32, 24)), return_tensors="pt")["pixel_values"]
    if tuple(pixels.shape[-2:]) != expected:
        raise UserInputError(f"{name}: its image processor ({type(image_processor).__name__}) makes "
                             f"{tuple(pixels.shape[-2:])} images, but the encoder ({vision_config.model_type}) "
                             f"takes {expected}")


__all__ = ["EncoderOutput", "check_encoder_fits", "check_image_processor_fits", "drop_pooling_head",
           "image_processor_from_pretrained", "is_vision_encoder_config", "run_on_meta_device",
           "vision_config_from_pretrained", "vision_encoder_from_pretrained"]
