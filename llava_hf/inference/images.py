"""Opening the images a user hands to chat or the web demo, with errors that name the file.

Decoding goes through the training pipeline's `to_rgb`/`load_image`, so a transparent PNG or a 16-bit scan
looks to the model at chat time exactly as it did during training.
"""

import os

from PIL import Image, UnidentifiedImageError
from transformers.image_utils import load_image as load_image_from_url

from llava_hf.data.images import load_image as load_image_file
from llava_hf.data.images import to_rgb

from ..errors import UserInputError, first_line
from ..hub_errors import network_errors


def open_image(path_or_url: str) -> Image.Image:
    """An RGB image from a local path or an http(s) URL; `UserInputError` if it is missing or not an image."""
    if path_or_url.startswith(("http://", "https://")):
        try:
            return to_rgb(load_image_from_url(path_or_url))
        except (UnidentifiedImageError, OSError, ValueError, *network_errors()) as error:
            raise UserInputError(f"cannot read image {path_or_url}: {first_line(error)}") from None
    if not os.path.isfile(path_or_url):
        raise UserInputError(f"image not found: {path_or_url}")
    try:
        return load_image_file(path_or_url)
    except (OSError, ValueError) as error:  # the data pipeline's message already names the file
        raise UserInputError(first_line(error)) from None

