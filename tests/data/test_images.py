import os

import numpy as np
import pytest
from PIL import Image

from llava_hf.data.images import load_image, resolve_image_path


def save(image, path, **kwargs):
    image.save(path, **kwargs)
    return str(path)


@pytest.mark.parametrize("make, expected", [
    (lambda: Image.new("RGBA", (8, 8), (10, 20, 30, 0)), (255, 255, 255)),  # transparent -> white, not black
    (lambda: Image.new("RGBA", (8, 8), (10, 20, 30, 255)), (10, 20, 30)),
    (lambda: Image.new("LA", (8, 8), (100, 255)), (100, 100, 100)),
    (lambda: Image.new("L", (8, 8), 77), (77, 77, 77)),
    (lambda: Image.new("RGB", (8, 8), (200, 10, 10)).convert("P", palette=Image.Palette.ADAPTIVE), (200, 10, 10)),
    (lambda: Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)), (255, 255, 255)),  # I;16 scaled, not clipped
    (lambda: Image.fromarray(np.full((8, 8), 32896, dtype=np.uint16)), (128, 128, 128)),
])
def test_every_mode_becomes_rgb(tmp_path, make, expected):
    path = save(make(), tmp_path / "x.png")
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.getpixel((3, 3)) == expected


def test_transparent_palette_png(tmp_path):
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    path = save(image, tmp_path / "p.png", transparency=0)
    assert load_image(path).getpixel((0, 0)) == (255, 255, 255)


def test_cmyk_jpeg(tmp_path):
    path = save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "c.jpg")
    r, g, b = load_image(path).getpixel((4, 4))
    assert r > 200 and g < 50 and b < 50


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = save(image, tmp_path / "o.jpg", exif=exif)
    assert load_image(path).size == (20, 40)


def test_missing_file_found_by_stem_without_renaming(tmp_path):
    save(Image.new("RGB", (8, 8)), tmp_path / "123.gif")  # OCR-VQA: a GIF where the JSON says .jpg
    path, by_stem = resolve_image_path(str(tmp_path), "123.jpg")
    assert (path, by_stem) == (str(tmp_path / "123.gif"), True)
    assert sorted(os.listdir(tmp_path)) == ["123.gif"]
    assert resolve_image_path(str(tmp_path), "123.gif") == (str(tmp_path / "123.gif"), False)


@pytest.mark.parametrize("relative", ["../outside.jpg", "sub/../../outside.jpg", "/etc/passwd"])
def test_paths_must_stay_inside_the_image_folder(tmp_path, relative):
    folder = tmp_path / "images"
    folder.mkdir()
    save(Image.new("RGB", (8, 8)), tmp_path / "outside.jpg")
    with pytest.raises(ValueError, match="escapes the image folder"):
        resolve_image_path(str(folder), relative)


def test_missing_image(tmp_path):
    with pytest.raises(ValueError, match="image 'nope.jpg' not found in"):
        resolve_image_path(str(tmp_path), "nope.jpg")


def test_empty_corrupt_and_truncated_files(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.jpg is empty \(0 bytes\)"):
        load_image(str(tmp_path / "empty.jpg"))
    (tmp_path / "junk.jpg").write_bytes(os.urandom(500))
    with pytest.raises(ValueError, match="junk.jpg cannot be decoded"):
        load_image(str(tmp_path / "junk.jpg"))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = open(save(noise, tmp_path / "full.jpg"), "rb").read()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.jpg cannot be decoded.*truncated"):
        load_image(str(tmp_path / "cut.jpg"))
