"""open_image: what the user points at becomes RGB, or a one-line error naming the file."""

import pytest
from PIL import Image

from llava_hf.cli.main import main as cli
from llava_hf.inference import UserInputError, open_image
from tests.unreachable import unreachable_url


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


def test_unreachable_url_is_one_line_naming_it():
    # transformers fetches URLs with huggingface_hub's HTTP library (httpx2 with huggingface_hub 2.x), whose
    # errors are not the `httpx` ones: a refused connection used to end in a long traceback.
    url = unreachable_url("/cat.jpg")
    with pytest.raises(UserInputError) as error:
        open_image(url)
    message = str(error.value)
    assert message.startswith(f"cannot read image {url}: ") and "\n" not in message


def test_chat_with_an_unreachable_image_url_stops_with_one_line_before_loading(capsys):
    url = unreachable_url("/cat.jpg")
    assert cli(["chat", "/no/such/model", "--image", url, "--prompt", "hi"]) == 2  # the model is never looked at
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"llava-hf chat: error: cannot read image {url}: ") and "\n" not in err
