"""Reading image and mask files into uint8 arrays: any common format, one channel count, one size.

Images: PNG, JPEG, BMP and TIFF; grey, RGB or RGBA (alpha dropped), palette images as their
colours, 16-bit grey scaled to 8 bits. Masks: single-channel class indices, binary 0/255 (read
as 0/1), or palette PNGs (the palette index is the class). Decoding is Pillow's.

This module imports neither torch nor the rest of visiontune's data package, so that the
processes ``data.decode`` starts to decode a large folder in parallel start in a moment. The
``*_chunk`` functions are what those processes run, over files of a ``file_sources.FileSource``
(which pickles as its location).
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from visiontune.errors import DataError
from visiontune.file_sources import FileSource

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".tif", ".tiff")
# A mask pixel of this value is left out of the loss, the metrics and the class count (Pascal
# VOC's object boundaries): only where a layout declares it, so a binary 0/255 mask stays 0/1.
IGNORE_LABEL = 255
SYSTEM_FILES = (".ds_store", "thumbs.db", "desktop.ini")  # what operating systems leave behind
SCALED_GREY_MODES = ("I", "I;16", "I;16B", "I;16L", "F")  # grey beyond 8 bits: scaled to 0-255
GREY_MODES = ("1", "L", "LA") + SCALED_GREY_MODES
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"


def skip_reason(name: str) -> str | None:
    """Why a file in a data folder is not an image to read (None: it is one)."""
    lower = name.lower()
    if lower in SYSTEM_FILES or name.startswith(".") or name.startswith("._"):
        return "system or hidden files"
    if not lower.endswith(IMAGE_SUFFIXES):
        return "non-image files"
    return None


def _format_of(data: bytes) -> tuple[str, ...] | None:
    """Pillow's format name from a file's signature, so that Pillow tries that plugin alone."""
    if data[:8] == PNG_SIGNATURE:
        return ("PNG",)
    if data[:3] == JPEG_SIGNATURE:
        return ("JPEG",)
    return None


# The PNGs that ``_simple_png`` decodes itself: 8 bits per sample, not interlaced, grey, RGB or RGBA.
SIMPLE_PNG_MODES = {0: "L", 2: "RGB", 6: "RGBA"}


def _simple_png(data: bytes) -> Image.Image | None:
    """A plain 8-bit PNG decoded by Pillow's own inflate-and-unfilter decoder, or None for any other.

    For a small image, parsing the chunks in Python (Pillow's PngImageFile) costs more than
    decoding the pixels: this walks the chunks with ``struct``, joins the IDAT data and hands it
    to the same C decoder (``Image.frombytes(..., "zip", rawmode)``), about twice as fast on a
    28x28 digit. Anything unusual (palette, 16 bits, interlacing, a missing IEND) returns None and
    takes Pillow's full path, which also gives the error of a broken file.
    """
    position, end, header, parts = 8, len(data), None, []
    while position + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, position)
        start = position + 8
        if start + length + 4 > end:
            return None
        if kind == b"IHDR":
            header = struct.unpack_from(">IIBBBBB", data, start)
        elif kind == b"IDAT":
            parts.append(data[start:start + length])
        elif kind == b"IEND":
            break
        position = start + length + 4
    else:
        return None
    if header is None or not parts:
        return None
    width, height, depth, colour, _, _, interlace = header
    mode = SIMPLE_PNG_MODES.get(colour)
    if depth != 8 or interlace or mode is None:
        return None
    return Image.frombytes(mode, (width, height), b"".join(parts), "zip", mode)


def _open(data: bytes, where: str, what: str) -> Image.Image:
    try:
        image = _simple_png(data) if data[:8] == PNG_SIGNATURE else None
        if image is not None:
            return image
        # A PNG straight to its plugin: Image.open's format probing costs as much as decoding a small file.
        image = (PngImagePlugin.PngImageFile(io.BytesIO(data)) if data[:8] == PNG_SIGNATURE
                 else Image.open(io.BytesIO(data), formats=_format_of(data)))
        image.load()  # decode now: a truncated file fails here, not later
        return image
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        reason = " ".join((str(error) or type(error).__name__).split())
        raise DataError(f"{where}: unreadable {what} ({reason})") from None


def image_header(data: bytes, where: str) -> tuple[int, int, int]:
    """(height, width, channels) of an image file from its header, without decoding it."""
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 26:
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return height, width, 1 if data[25] in (0, 4) else 3  # colour types 0 and 4 are grey
    try:
        with Image.open(io.BytesIO(data)) as image:
            channels = 1 if image.mode in GREY_MODES else 3
            return image.height, image.width, channels
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = " ".join((str(error) or type(error).__name__).split())
        raise DataError(f"{where}: unreadable image ({reason})") from None


def _to_uint8_grey(image: Image.Image) -> np.ndarray:
    if image.mode in SCALED_GREY_MODES:  # 16-bit or float grey: scale to 0-255
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        return ((values - low) * scale).round().astype(np.uint8)
    return np.asarray(image.convert("L"))


def _resize(array: np.ndarray, size: tuple[int, int] | None, resample) -> np.ndarray:
    """(C, H, W) or (H, W) uint8 resized with Pillow (``resample``: BILINEAR or NEAREST)."""
    if size is None or array.shape[-2:] == tuple(size):
        return array
    if array.ndim == 2:
        return np.asarray(Image.fromarray(array).resize((size[1], size[0]), resample))
    planes = [np.asarray(Image.fromarray(plane).resize((size[1], size[0]), resample)) for plane in array]
    return np.stack(planes)


def decode_image(data: bytes, where: str, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """An image file as uint8 ``(channels, height, width)``, resized (bilinear) to ``size``."""
    return image_array(_open(data, where, "image"), channels, size, where)


def _converted(image: Image.Image, channels: int, where: str) -> Image.Image:
    """``image`` as 8-bit grey ("L") for one channel or "RGB" for three: RGBA loses its alpha, a
    palette becomes its colours, grey is replicated, 16-bit or float grey is scaled to 0-255.
    A mode Pillow cannot convert (a CIELab TIFF to grey, say) is a ``DataError`` naming ``where``."""
    mode = "L" if channels == 1 else "RGB"
    if image.mode == mode:
        return image
    if image.mode in SCALED_GREY_MODES:
        image = Image.fromarray(_to_uint8_grey(image))
    try:
        return image.convert(mode)
    except ValueError as error:
        raise DataError(f"{where}: cannot convert its {image.mode} pixels to {'grey' if channels == 1 else 'RGB'} "
                        f"({error})") from None


def image_array(image: Image.Image, channels: int, size: tuple[int, int] | None,
                where: str = "image") -> np.ndarray:
    """A Pillow image as uint8 ``(channels, height, width)``, resized (bilinear) to ``size``;
    ``where`` names it in the error of an image whose pixels cannot be converted."""
    array = np.asarray(_converted(image, channels, where))
    return _resize(array[None] if channels == 1 else array.transpose(2, 0, 1), size, Image.BILINEAR)


def decode_mask(data: bytes, where: str, size: tuple[int, int] | None, ignore: bool = False) -> np.ndarray:
    """A mask file as class indices, uint8 ``(height, width)``, resized (nearest) to ``size``.

    Binary masks stored as 0/255 read as 0/1, unless the layout declares 255 the ignore label
    (``ignore``); a palette PNG's indices are its classes.
    """
    image = _open(data, where, "mask")
    if image.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
        raise DataError(f"{where}: a mask must be a single-channel image of class indices (grey or palette), "
                        f"not {image.mode}")
    values = np.asarray(image.convert("L") if image.mode == "1" else image)
    if values.max(initial=0) > 255:
        raise DataError(f"{where}: mask values up to {int(values.max())}; at most 256 classes are supported")
    values = values.astype(np.uint8)
    present = np.unique(values)
    if not ignore and len(present) <= 2 and present.max(initial=0) == 255:  # binary 0/255
        values = (values == 255).astype(np.uint8)
    return resize_mask(values, size)


def encode_png(image: Image.Image) -> bytes:
    """A Pillow image as PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def encode_png_array(array: np.ndarray) -> bytes:
    """A uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG bytes (a mask of class indices stays exact)."""
    return encode_png(Image.fromarray(np.ascontiguousarray(array)))


def resize_mask(mask: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """A mask of class indices resized to ``size`` by nearest neighbour (unchanged where it fits)."""
    return _resize(mask, size, Image.NEAREST)


def decode_png(data: bytes, where: str) -> np.ndarray:
    """PNG bytes as an array (H, W) or (H, W, C), as stored; a :class:`DataError` naming ``where``."""
    return np.asarray(_open(data, where, "PNG"))


# --------------------------------------------------------------------- files, for worker processes
HEAD_BYTES = 65536  # enough of a file for its header (a JPEG's size follows its EXIF block)


def headers_chunk(source: FileSource, names: list[str]) -> np.ndarray:
    """(height, width, channels) of each image file, from the start of the file."""
    out = np.zeros((len(names), 3), dtype=np.int64)
    for index, name in enumerate(names):
        try:
            out[index] = image_header(source.read(name, HEAD_BYTES), name)
        except DataError:  # a header beyond the first bytes, or a broken file: read it whole
            out[index] = image_header(source.read(name), source.describe(name))
    return out


def images_chunk(source: FileSource, names: list[str], channels: int, size: tuple[int, int]) -> np.ndarray:
    """Images decoded to uint8 ``(len(names), channels, height, width)``."""
    out = np.empty((len(names), channels, size[0], size[1]), dtype=np.uint8)
    for index, name in enumerate(names):
        try:
            out[index] = decode_image(source.read(name), name, channels, size)
        except DataError as error:  # named in full only when it is needed
            raise DataError(str(error).replace(name, source.describe(name), 1)) from None
    return out


def masks_chunk(source: FileSource, names: list[str], image_names: list[str], shapes: list[tuple[int, int]],
                declared: int | None, size: tuple[int, int], ignore: bool = False) -> np.ndarray:
    """Masks decoded to class indices ``(len(names), height, width)``, checked against their image's
    size and the declared classes (``ignore``: IGNORE_LABEL allowed besides), then resized by
    nearest neighbour."""
    out = np.empty((len(names), size[0], size[1]), dtype=np.uint8)
    for index, (name, image_name, shape) in enumerate(zip(names, image_names, shapes)):
        where = source.describe(name)
        mask = decode_mask(source.read(name), where, None, ignore)
        if mask.shape != tuple(shape):
            raise DataError(f"{where}: mask is {mask.shape[0]}x{mask.shape[1]} but its image "
                            f"{source.describe(image_name)} is {shape[0]}x{shape[1]}")
        largest = int(mask[mask != IGNORE_LABEL].max(initial=0)) if ignore else int(mask.max())
        if declared and largest >= declared:
            raise DataError(f"{where}: mask value {largest} is outside the {declared} classes declared "
                            f"(0..{declared - 1})")
        out[index] = resize_mask(mask, size)
    return out


def uniform_images_chunk(source: FileSource, names: list[str], channels: int, size: tuple[int, int],
                         grey_only: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    """One pass for a folder whose sampled images all share ``size`` (and, with ``grey_only``, are
    all grey): (images, headers, True), each file read once; (..., False) as soon as a file
    breaks that assumption, and the caller takes the two-pass way."""
    height, width = size
    headers = np.zeros((len(names), 3), dtype=np.int64)
    # Each image is pasted into one tall sheet, converted to an array once at the end: an array
    # per small image costs more than decoding it (Pillow's tobytes machinery, per call).
    sheet = Image.new("L" if channels == 1 else "RGB", (width, height * len(names)))
    for index, name in enumerate(names):
        data = source.read(name)
        try:
            image = _open(data, name, "image")
        except DataError as error:
            raise DataError(str(error).replace(name, source.describe(name), 1)) from None
        grey = image.mode in GREY_MODES
        headers[index] = (image.height, image.width, 1 if grey else 3)
        if (image.height, image.width) != (height, width) or (grey_only and not grey):
            return np.empty((0, channels, height, width), dtype=np.uint8), headers, False
        sheet.paste(_converted(image, channels, source.describe(name)), (0, index * height))
    pixels = np.asarray(sheet).reshape(len(names), height, width, channels)
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)), headers, True


def model_inputs_chunk(source: FileSource, names: list[str], channels: int, size: tuple[int, int]
                       ) -> tuple[np.ndarray, np.ndarray, list[int], list[tuple[int, str]]]:
    """Images decoded for prediction: (uint8 ``(n, channels, H, W)`` at ``size``, their own
    (height, width) ``(n, 2)``, the indices into ``names`` they are, and (index, error) of the
    files that could not be read; unlike the loader's chunks, a broken file does not stop the rest)."""
    out = np.empty((len(names), channels, size[0], size[1]), dtype=np.uint8)
    sizes = np.zeros((len(names), 2), dtype=np.int64)
    kept, errors = [], []
    for index, name in enumerate(names):
        try:
            where = source.describe(name)
            image = _open(source.read(name), where, "image")
            sizes[len(kept)] = (image.height, image.width)
            out[len(kept)] = image_array(image, channels, size, where)
            kept.append(index)
        except DataError as error:
            errors.append((index, str(error)))
    return out[:len(kept)], sizes[:len(kept)], kept, errors
