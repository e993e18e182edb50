"""open_image: what the user points at becomes RGB, or a one-line error naming the file."""

import pytest
from PIL import Image

from llava_hf.inference import UserInputError, open_image


def test_transparent_png_becomes_rgb_like_in_training(tmp_path):
    path = tmp_path / "logo.png"
    Image.new("RGBA", (8, 6), (255, 0, 0, 0)).save(path)
    image = open_image(str(path))
    assert image.mode == "RGB" and image.size == (8, 6)
    assert image.getpixel((0, 0)) == (255, 255, 255)  # transparent shows as white, as the data pipeline does


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserInputError, match=r"image not found: .*cat\.jpg$"):
        open_image(str(tmp_path / "cat.jpg"))


def test_unreadable_file_is_named(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels")
    with pytest.raises(UserInputError, match="notes.jpg") as error:
        open_image(str(path))
    assert "\n" not in str(error.value)
