"""Visual wake words: image files read with Pillow as the models take them (float32 RGB 96x96 in [0, 1]).

One home for how a file becomes model input outside tf.data, shared by the test set (data.py's
`load_test`), deployment's validation and calibration sets (`load_images`) and the minival builder
(minival.py), so that a test image is squashed and converted exactly as a minival image is.

The model sees float32 RGB images (96, 96, 3) in [0, 1]: uint8 pixel values times float32(1/255),
exactly as Keras' `rescale=1/255` computes them.

Resampling. The authors squash every COCO image to 96x96 with `skimage.transform.resize(...,
anti_aliasing=True)`: a Gaussian blur with sigma = (scale - 1) / 2, then bilinear sampling. Of
Pillow's filters, BILINEAR (a triangle kernel widened by the scale factor when shrinking, i.e.
anti-aliased) is by far the closest to that: on synthetic 1/f-spectrum 640x480 images it differs
from a scipy re-implementation of the skimage recipe by about 0.8 grey levels RMS, against about
5 for BOX (area averaging) and about 6 for LANCZOS, which both keep more detail than the authors'
blur. So every resize here (`build_minival`, `load_images`) uses Image.Resampling.BILINEAR;
the tf.data pipelines (data.py), which only resize images that are not 96x96 already (the training
archive's are), use tf.image.resize(bilinear, antialias=True), the same kernel (within 1 grey level).
"""

import concurrent.futures
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from common.errors import UserError

IMAGE_SIZE = 96
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)
RESAMPLE = Image.Resampling.BILINEAR  # see the module docstring
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
RESCALE = 1.0 / 255.0
IO_THREADS = 4


def listed_images(folder: Path) -> list[str]:
    """Sorted names of the .png/.jpg/.jpeg files (any case) directly in `folder`, hidden files excluded."""
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.name.lower().endswith(IMAGE_SUFFIXES) and not entry.name.startswith(".") and entry.is_file()
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB of an image in any mode Pillow reads, as TensorFlow's decoders (training) give it.

    1, L, P, RGB: as they are (grey and palette expanded); alpha (RGBA, LA, PA, a palette's
    transparency) is dropped, not composited, as tf.io.decode_png(channels=3) drops it; 16-bit grey
    (I;16*, and I, which older Pillows give 16-bit PNGs) is scaled to 8 bit by its high byte (v >> 8, what
    TensorFlow's PNG decoder keeps: 257 x p gives back p), not clipped; CMYK as
    (255 - C) x (255 - K) // 255 per channel, TensorFlow's JPEG formula. Float images (F) are refused
    (ValueError): no 8-bit scale can be assumed for them.
    """
    mode = image.mode
    if mode.startswith("I"):
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535) >> 8
        return Image.fromarray(values.astype(np.uint8), "L").convert("RGB")
    if mode == "CMYK":
        cmyk = np.asarray(image).astype(np.uint16)
        return Image.fromarray(((255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) // 255).astype(np.uint8), "RGB")
    if mode in ("F", "RGBa", "La"):
        raise ValueError(
            f"image mode {mode} has no 8-bit RGB equivalent TensorFlow would decode to; "
            "save the image as 8-bit RGB or grey"
        )
    if mode == "PA":
        image = image.convert("RGBA")
    return image if mode == "RGB" else image.convert("RGB")


def to_model_size(image: Image.Image) -> Image.Image:
    """8-bit RGB (`to_rgb`), squashed to 96x96 with RESAMPLE: always a new image, which outlives the closing
    of `image`'s file (an RGB image of the model's size needs no conversion: it is copied)."""
    rgb = to_rgb(image)
    if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
        return rgb.resize((IMAGE_SIZE, IMAGE_SIZE), RESAMPLE)
    return rgb.copy() if rgb is image else rgb


def _read_uint8(path: Path) -> np.ndarray:
    """uint8 (96, 96, 3) RGB pixels of the image file at `path` (any Pillow-readable format, size, mode)."""
    with Image.open(path) as image:
        return np.asarray(to_model_size(image), dtype=np.uint8)


def read_images(paths: Sequence[Path]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """float32 (N, 96, 96, 3) in [0, 1] for `paths`, read on IO_THREADS threads, and the
    (row, error) of each unreadable file, whose row is left at zero."""
    images = np.zeros((len(paths), *IMAGE_SHAPE), np.float32)
    failures: list[tuple[int, str]] = []

    def read(row: int) -> None:
        try:
            pixels = _read_uint8(paths[row])
        except Exception as err:  # corrupt files fail inside Pillow's decoders in many ways
            failures.append((row, f"{type(err).__name__}: {err}"))
            return
        np.multiply(pixels, np.float32(RESCALE), out=images[row], dtype=np.float32)

    with concurrent.futures.ThreadPoolExecutor(IO_THREADS) as pool:
        list(pool.map(read, range(len(paths)), chunksize=64))
    return images, sorted(failures)


def load_images(paths: Sequence[Path | str]) -> np.ndarray:
    """float32 (N, 96, 96, 3) RGB in [0, 1] (uint8 values times float32(1/255)) of the image files.

    Any Pillow-readable format (PNG, JPEG...), size and mode: converted to RGB and, unless already
    96x96, squashed to 96x96 with RESAMPLE (as `build_minival` does). An unreadable file is a UserError.
    """
    paths = [Path(path) for path in paths]
    images, failures = read_images(paths)
    if failures:
        row, error = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise UserError(f"Cannot read image {paths[row]} ({error}){more}; delete or replace it")
    return images
