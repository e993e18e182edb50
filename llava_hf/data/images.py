"""Image files: safe path resolution inside the image folder, robust decoding to RGB.

Real LLaVA data has every oddity: OCR-VQA ships .gif/.png under .jpg names, PNGs with alpha or 16-bit
depth, CMYK JPEGs, rotated phone photos. `load_image` turns each into the RGB picture a person would see.
"""

import functools
import os

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
TRANSPARENT_BACKGROUND = (255, 255, 255)  # what viewers show behind transparent pixels


def resolve_image_path(image_folder: str, relative_path: str) -> tuple[str, bool]:
    """(existing path, found_by_stem). Raises ValueError when the path leaves the folder or nothing exists.

    A missing file is looked up by stem with another image extension, without renaming anything on disk.
    The containment check is lexical so a folder of symlinks into shared storage keeps working.
    """
    folder = os.path.abspath(image_folder)
    path = os.path.normpath(os.path.join(folder, relative_path))
    if os.path.isabs(relative_path) or os.path.commonpath([folder, path]) != folder:
        raise ValueError(f"image path {relative_path!r} escapes the image folder {image_folder}")
    if os.path.isfile(path):
        return path, False
    directory, name = os.path.split(path)
    candidates = _files_by_stem(directory).get(os.path.splitext(name)[0], ())
    if candidates:
        return os.path.join(directory, candidates[0]), True
    raise ValueError(f"image {relative_path!r} not found in {image_folder}")


@functools.lru_cache(maxsize=4096)
def _files_by_stem(directory: str) -> dict[str, tuple[str, ...]]:
    """Stem -> image file names in `directory`, listed once per directory (cheap for 80K OCR-VQA misses)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return {}
    by_stem: dict[str, list[str]] = {}
    for name in names:
        stem, extension = os.path.splitext(name)
        if extension.lower() in IMAGE_EXTENSIONS:
            by_stem.setdefault(stem, []).append(name)
    return {stem: tuple(found) for stem, found in by_stem.items()}


def load_image(path: str) -> Image.Image:
    """Decode fully, apply EXIF orientation, convert any mode to RGB. Raises ValueError naming the file."""
    if os.path.getsize(path) == 0:
        raise ValueError(f"image file {path} is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"image file {path} cannot be decoded: {e}") from e
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB for every PIL mode: alpha composited on white, 16-bit/float depth scaled instead of clipped."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, TRANSPARENT_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I") or image.mode == "F":
        gray = np.clip(np.asarray(image, dtype=np.float64) * _depth_scale(image), 0, 255).round()
        return Image.fromarray(gray.astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")


def _depth_scale(image: Image.Image) -> float:
    """Factor that maps a 16-bit / 32-bit / float grayscale image onto 0..255."""
    peak = float(np.asarray(image).max(initial=0))
    if image.mode.startswith("I;16") or (image.mode == "I" and peak > 255):
        return 255.0 / 65535.0
    if image.mode == "F" and peak <= 1.0:
        return 255.0
    return 255.0 / peak if peak > 255 else 1.0
