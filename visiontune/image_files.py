"""Reading image and mask files into arrays: any common format, one channel count, one size.

Images: PNG, JPEG, BMP and TIFF; grey, RGB or RGBA (alpha dropped), palette images as their
colours; TIFFs with up to ``MAX_CHANNELS`` channels as pages or samples (tifffile); 8-bit,
16-bit and float pixels, kept in their type (``PIXEL_TYPES``); an image may also be one file
per channel (an ``ImageRef`` tuple, nnU-Net's ``_0000``, ``_0001``, ...). Masks:
single-channel class indices, binary 0/255 (read as 0/1), or palette PNGs (the palette index is
the class). Decoding is Pillow's, and tifffile's for TIFFs.

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
GREY_MODES = ("1", "L", "LA", "La")  # 8-bit grey (alpha dropped)
COLOUR_MODES = ("P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr")  # read as 8-bit RGB
DEEP_MODES = {"I;16": 1, "I;16B": 1, "I;16L": 1, "I;16N": 1, "I": 2, "F": 2}  # grey beyond 8 bits -> PIXEL_TYPES index
READ_MODES = "grey, RGB, CMYK, palette, 16-bit or floating-point images"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, either byte order
# What a data set's images are stored as, smallest first: the first type that holds every image.
# 16-bit integers stay 16-bit; anything else beyond 8 bits (signed, 32-bit, float) becomes float32.
PIXEL_TYPES = ("uint8", "uint16", "float32")
MAX_CHANNELS = 16
# An image is one file, or one file per channel (stacked in order): nnU-Net's CASE_0000, CASE_0001, ...
ImageRef = str | tuple[str, ...]


def describe_ref(source: FileSource, ref: ImageRef) -> str:
    """An image as messages name it: its file, or the first of its channel files."""
    if isinstance(ref, str):
        return source.describe(ref)
    return f"{source.describe(ref[0])} (and its other {len(ref) - 1} channel file{'s' if len(ref) > 2 else ''})"


def ref_files(ref: ImageRef) -> list[str]:
    """The files an image reads."""
    return [ref] if isinstance(ref, str) else list(ref)


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


def _mode_info(mode: str) -> tuple[int, int] | None:
    """(channels, PIXEL_TYPES index) of an image Pillow opened in ``mode``; None for a mode it
    does not read (a 16-bit colour PNG, which Pillow would cut to 8 bits)."""
    if mode in GREY_MODES:
        return 1, 0
    if mode in DEEP_MODES:
        return 1, DEEP_MODES[mode]
    if mode in COLOUR_MODES:
        return 3, 0
    return None


def _deep_png(data: bytes) -> bool:
    """A 16-bit colour PNG (colour types 2 and 6), which Pillow would read at 8 bits."""
    return data[:8] == PNG_SIGNATURE and len(data) >= 26 and data[24] == 16 and data[25] in (2, 6)


def _refuse_deep_png(where: str) -> None:
    raise DataError(f"{where}: a 16-bit colour PNG, which Pillow reads at 8 bits only; save it as a TIFF or as one "
                    "16-bit grey PNG per channel")


def image_header(data: bytes, where: str) -> tuple[int, int, int, int]:
    """(height, width, channels, PIXEL_TYPES index) of an image file, from its header, without
    decoding its pixels."""
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 26:
        if _deep_png(data):
            _refuse_deep_png(where)
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        grey = data[25] in (0, 4)  # colour types 0 and 4 are grey
        return height, width, 1 if grey else 3, 1 if grey and data[24] == 16 else 0
    if data[:4] in TIFF_SIGNATURES:
        found = _tiff(data, where, pixels=False)
        if found is not None:
            return found
    try:
        with Image.open(io.BytesIO(data)) as image:
            info = _mode_info(image.mode)
            if info is None:
                raise DataError(f"{where}: {image.mode} pixels, which visiontune does not read ({READ_MODES})")
            return image.height, image.width, *info
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = " ".join((str(error) or type(error).__name__).split())
        raise DataError(f"{where}: unreadable image ({reason})") from None


# --------------------------------------------------------------------------------------- TIFF
# Photometric interpretations whose pixels are not channel values as stored (palette indices,
# YCbCr, CIELab): Pillow converts those to RGB.
PILLOW_PHOTOMETRICS = (3, 6, 8, 9, 10)
CHANNEL_AXES = "CSQI"  # tifffile's axes that hold channels: channel, sample, unknown, image (page)
ALPHA_SAMPLES = (1, 2)  # TIFF ExtraSamples: associated and unassociated alpha


def _tiff_type(dtype: np.dtype) -> int:
    if dtype == np.uint8 or dtype == np.bool_:
        return 0
    return 1 if dtype == np.uint16 else 2


def _tiff(data: bytes, where: str, pixels: bool):
    """A TIFF through tifffile: ``pixels`` False -> (height, width, channels, type index) from
    its tags; True -> its pixels ``(C, H, W)`` as stored (alpha dropped). None where Pillow reads
    it instead: palette and YCbCr images, and compressions tifffile decodes only with imagecodecs
    (LZW, JPEG, PackBits), which Pillow decodes itself for grey and RGB."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            page, series = tiff.pages[0], tiff.series[0]
            if int(page.photometric) in PILLOW_PHOTOMETRICS:
                return None
            axes, shape = series.axes, tuple(series.shape)
            keep = [index for index, side in enumerate(shape) if side != 1 or axes[index] in "YX"]
            axes, shape = "".join(axes[i] for i in keep), tuple(shape[i] for i in keep)
            if axes == "YX":
                channel_axis = None
            elif len(axes) == 3 and axes[1:] == "YX" and axes[0] in CHANNEL_AXES:
                channel_axis = 0
            elif axes == "YXS":
                channel_axis = 2
            else:
                raise DataError(f"{where}: a TIFF of shape {series.shape} (axes {series.axes}); visiontune reads 2D "
                                f"images with up to {MAX_CHANNELS} channels, as pages or samples")
            count = 1 if channel_axis is None else shape[channel_axis]
            extra = tuple(getattr(page, "extrasamples", ()) or ())
            # An 8-bit RGBA or grey+alpha image loses its alpha, as a PNG does; deeper images keep every
            # sample: multiplexed fluorescence saved as 16-bit "RGBA" (tifffile's default for 4 planes).
            alpha = (channel_axis is not None and count in (2, 4) and extra[-1:] in ((1,), (2,))
                     and int(page.photometric) in (1, 2) and series.dtype == np.uint8)
            channels = count - 1 if alpha else count
            if channels > MAX_CHANNELS:
                raise DataError(f"{where}: {channels} channels; visiontune reads at most {MAX_CHANNELS}")
            height, width = shape[axes.index("Y")], shape[axes.index("X")]
            if not pixels:
                return height, width, channels, _tiff_type(series.dtype)
            array = series.asarray().reshape(shape)
    except DataError:
        raise
    except (KeyError, ValueError, NotImplementedError) as error:
        if "imagecodecs" in str(error):
            return None
        reason = " ".join((str(error) or type(error).__name__).split())
        raise DataError(f"{where}: unreadable image ({reason})") from None
    except Exception as error:  # tifffile's own errors for a broken file
        reason = " ".join((str(error) or type(error).__name__).split())
        raise DataError(f"{where}: unreadable image ({reason})") from None
    array = array[None] if channel_axis is None else np.moveaxis(array, channel_axis, 0)
    array = array[:channels]
    return np.ascontiguousarray(array.astype(PIXEL_TYPES[_tiff_type(array.dtype)], copy=False))


# ------------------------------------------------------------------------------- pixels as stored
def _pillow_pixels(image: Image.Image, where: str) -> np.ndarray:
    """A Pillow image's pixels ``(C, H, W)``: 8-bit grey or RGB (alpha dropped, palette as its
    colours), 16-bit grey as uint16, other grey beyond 8 bits as float32."""
    info = _mode_info(image.mode)
    if info is None:
        raise DataError(f"{where}: {image.mode} pixels, which visiontune does not read ({READ_MODES})")
    channels, kind = info
    if kind:
        return np.asarray(image).astype(PIXEL_TYPES[kind])[None]
    array = np.asarray(_as_mode(image, "L" if channels == 1 else "RGB", where))
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def read_pixels(data: bytes, where: str) -> np.ndarray:
    """An image file's pixels as stored: ``(C, H, W)`` of its ``PIXEL_TYPES`` type, alpha dropped."""
    if data[:4] in TIFF_SIGNATURES:
        array = _tiff(data, where, pixels=True)
        if array is not None:
            return array
    if _deep_png(data):
        _refuse_deep_png(where)
    return _pillow_pixels(_open(data, where, "image"), where)


def _read_ref_pixels(source: FileSource, ref: ImageRef) -> np.ndarray:
    """An image's pixels as stored: one file's, or its channel files' stacked in order (each one
    channel, all of one size; the type the largest of theirs)."""
    if isinstance(ref, str):
        return read_pixels(source.read(ref), source.describe(ref))
    planes = []
    for name in ref:
        plane = read_pixels(source.read(name), source.describe(name))
        if plane.shape[0] != 1:
            raise DataError(f"{source.describe(name)}: a channel file with {plane.shape[0]} channels; each of a "
                            "case's channel files must be one grey channel")
        if planes and plane.shape[1:] != planes[0].shape[1:]:
            raise DataError(f"{source.describe(name)}: {plane.shape[1]}x{plane.shape[2]}, but "
                            f"{source.describe(ref[0])} is {planes[0].shape[1]}x{planes[0].shape[2]}; a case's "
                            "channel files must share one size")
        planes.append(plane)
    kind = max(PIXEL_TYPES.index(plane.dtype.name) for plane in planes)
    return np.concatenate([plane.astype(PIXEL_TYPES[kind], copy=False) for plane in planes])


def ref_header(source: FileSource, ref: ImageRef, limit: int = -1) -> tuple[int, int, int, int]:
    """(height, width, channels, type index) of an image: one file's header, or its channel
    files' (one channel each; the size of the first; the largest type)."""
    if isinstance(ref, str):
        return image_header(source.read(ref, limit), source.describe(ref))
    headers = [image_header(source.read(name, limit), source.describe(name)) for name in ref]
    return headers[0][0], headers[0][1], len(ref), max(header[3] for header in headers)


def _luma(pixels: np.ndarray) -> np.ndarray:
    """RGB ``(3, H, W)`` as grey ``(1, H, W)`` of the same type: Pillow's conversion for 8 bits
    (ITU-R 601-2 luma), the same weights in floating point for more."""
    if pixels.dtype == np.uint8:
        return np.asarray(Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0))).convert("L"))[None]
    grey = np.tensordot(np.array([0.299, 0.587, 0.114]), pixels.astype(np.float64), axes=1)[None]
    return grey.round().astype(pixels.dtype) if pixels.dtype.kind == "u" else grey.astype(pixels.dtype)


def conform(pixels: np.ndarray, channels: int, size: tuple[int, int] | None, pixel_type: str = "uint8",
            where: str = "image") -> np.ndarray:
    """Stored pixels ``(C, H, W)`` as a data set's images are: ``channels`` (grey replicated to
    RGB, RGB to grey by luma; any other difference is an error), ``pixel_type`` (never to a
    smaller type), resized (bilinear) to ``size``."""
    count = pixels.shape[0]
    if count != channels:
        if count == 1 and channels == 3:
            pixels = np.repeat(pixels, 3, axis=0)
        elif count == 3 and channels == 1:
            pixels = _luma(pixels)
        else:
            raise DataError(f"{where}: {count} channel{'s' if count > 1 else ''}, but the data set's images have "
                            f"{channels}")
    if PIXEL_TYPES.index(pixels.dtype.name) > PIXEL_TYPES.index(pixel_type):
        raise DataError(f"{where}: {_type_words(pixels.dtype.name)} pixels, but the data set's images are "
                        f"{_type_words(pixel_type)}")
    return _resize(pixels.astype(pixel_type, copy=False), size, Image.BILINEAR)


def _type_words(pixel_type: str) -> str:
    return {"uint8": "8-bit", "uint16": "16-bit", "float32": "floating-point"}[pixel_type]


def _resize(array: np.ndarray, size: tuple[int, int] | None, resample) -> np.ndarray:
    """(C, H, W) or (H, W) resized with Pillow (``resample``: BILINEAR or NEAREST): uint8 planes
    as 8-bit images, others as float ("F") planes, rounded back to 16 bits where they were."""
    if size is None or array.shape[-2:] == tuple(size):
        return array
    if array.ndim == 2:
        return _resize(array[None], size, resample)[0]
    if array.dtype == np.uint8:
        planes = [np.asarray(Image.fromarray(plane).resize((size[1], size[0]), resample)) for plane in array]
        return np.stack(planes)
    planes = [np.asarray(Image.fromarray(plane.astype(np.float32)).resize((size[1], size[0]), resample))
              for plane in array]
    resized = np.stack(planes)
    if array.dtype == np.uint16:
        return np.clip(resized.round(), 0, 65535).astype(np.uint16)
    return resized.astype(array.dtype)


def decode_image(data: bytes, where: str, channels: int, size: tuple[int, int] | None,
                 pixel_type: str = "uint8") -> np.ndarray:
    """An image file as ``(channels, height, width)`` of ``pixel_type``, resized (bilinear) to ``size``."""
    if pixel_type == "uint8" and channels in (1, 3) and data[:4] not in TIFF_SIGNATURES:
        image = _open(data, where, "image")
        if image.mode in GREY_MODES or image.mode in COLOUR_MODES:  # 8-bit: Pillow converts, as always
            return image_array(image, channels, size, where)
        return conform(_pillow_pixels(image, where), channels, size, pixel_type, where)
    return conform(read_pixels(data, where), channels, size, pixel_type, where)


def decode_ref(source: FileSource, ref: ImageRef, channels: int, size: tuple[int, int] | None,
               pixel_type: str = "uint8") -> np.ndarray:
    """An image (one file or one per channel) as ``(channels, height, width)`` of ``pixel_type``."""
    if isinstance(ref, str):
        return decode_image(source.read(ref), source.describe(ref), channels, size, pixel_type)
    return conform(_read_ref_pixels(source, ref), channels, size, pixel_type, describe_ref(source, ref))


def _as_mode(image: Image.Image, mode: str, where: str) -> Image.Image:
    if image.mode == mode:
        return image
    try:
        return image.convert(mode)
    except ValueError as error:
        raise DataError(f"{where}: cannot convert its {image.mode} pixels to {'grey' if mode == 'L' else 'RGB'} "
                        f"({error})") from None


def _converted(image: Image.Image, channels: int, where: str) -> Image.Image:
    """An 8-bit ``image`` as grey ("L") for one channel or "RGB" for three: RGBA loses its alpha,
    a palette becomes its colours, grey is replicated. A mode Pillow cannot convert (a CIELab
    TIFF to grey, say) is a ``DataError`` naming ``where``."""
    return _as_mode(image, "L" if channels == 1 else "RGB", where)


def image_array(image: Image.Image, channels: int, size: tuple[int, int] | None,
                where: str = "image", pixel_type: str = "uint8") -> np.ndarray:
    """A Pillow image as ``(channels, height, width)``, resized (bilinear) to ``size``; ``where``
    names it in the error of an image whose pixels cannot be converted."""
    if pixel_type != "uint8" or channels not in (1, 3) or image.mode not in GREY_MODES + COLOUR_MODES:
        return conform(_pillow_pixels(image, where), channels, size, pixel_type, where)
    array = np.asarray(_converted(image, channels, where))
    return _resize(array[None] if channels == 1 else array.transpose(2, 0, 1), size, Image.BILINEAR)


def array_image(array: np.ndarray, channels: int, size: tuple[int, int] | None, pixel_type: str = "uint8",
                where: str = "image") -> np.ndarray:
    """An image given as an array, ``(H, W)`` or ``(H, W, C)``, as a data set's images are
    (``conform``): 8-bit grey and RGB through Pillow, as files are."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise DataError(f"{where}: an image array must be (height, width) or (height, width, channels), "
                        f"not {array.shape}")
    kind = _tiff_type(array.dtype)  # uint8 (or bool), uint16, anything else as float32
    pixels = np.ascontiguousarray(array.transpose(2, 0, 1).astype(PIXEL_TYPES[kind], copy=False))
    if kind == 0 and pixels.shape[0] == 4 and channels == 3:  # RGBA: alpha dropped, as in a file
        pixels = pixels[:3]
    return conform(pixels, channels, size, pixel_type, where)


def decode_mask(data: bytes, where: str, size: tuple[int, int] | None, ignore: int | None = None) -> np.ndarray:
    """A mask file as class indices, uint8 ``(height, width)``, resized (nearest) to ``size``.

    Binary masks stored as 0/255 read as 0/1, unless the layout declares an ignore value
    (``ignore``: VOC's 255, nnU-Net's ``ignore`` label), whose pixels become ``IGNORE_LABEL``; a
    palette PNG's indices are its classes.
    """
    image = _open(data, where, "mask")
    if image.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
        raise DataError(f"{where}: a mask must be a single-channel image of class indices (grey or palette), "
                        f"not {image.mode}")
    values = np.asarray(image.convert("L") if image.mode == "1" else image)
    if ignore is not None and ignore != IGNORE_LABEL:
        values = np.where(values == ignore, IGNORE_LABEL, values)
    if values.max(initial=0) > 255:
        raise DataError(f"{where}: mask values up to {int(values.max())}; at most 256 classes are supported")
    values = values.astype(np.uint8)
    present = np.unique(values)
    if ignore is None and len(present) <= 2 and present.max(initial=0) == 255:  # binary 0/255
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


def headers_chunk(source: FileSource, names: list[ImageRef]) -> np.ndarray:
    """(height, width, channels, PIXEL_TYPES index) of each image, from the start of its file(s)."""
    out = np.zeros((len(names), 4), dtype=np.int64)
    for index, name in enumerate(names):
        try:
            out[index] = ref_header(source, name, HEAD_BYTES)
        except DataError:  # a header beyond the first bytes, or a broken file: read it whole
            out[index] = ref_header(source, name)
    return out


def images_chunk(source: FileSource, names: list[ImageRef], channels: int, size: tuple[int, int],
                 pixel_type: str = "uint8") -> np.ndarray:
    """Images decoded to ``(len(names), channels, height, width)`` of ``pixel_type``."""
    out = np.empty((len(names), channels, size[0], size[1]), dtype=pixel_type)
    for index, name in enumerate(names):
        if not isinstance(name, str):
            out[index] = decode_ref(source, name, channels, size, pixel_type)
            continue
        try:
            out[index] = decode_image(source.read(name), name, channels, size, pixel_type)
        except DataError as error:  # named in full only when it is needed
            raise DataError(str(error).replace(name, source.describe(name), 1)) from None
    return out


def masks_chunk(source: FileSource, names: list[str], image_names: list[ImageRef], shapes: list[tuple[int, int]],
                declared: int | None, size: tuple[int, int], ignore: int | None = None) -> np.ndarray:
    """Masks decoded to class indices ``(len(names), height, width)``, checked against their image's
    size and the declared classes (``ignore``: the value stored as IGNORE_LABEL, allowed besides),
    then resized by nearest neighbour."""
    out = np.empty((len(names), size[0], size[1]), dtype=np.uint8)
    for index, (name, image_name, shape) in enumerate(zip(names, image_names, shapes)):
        where = source.describe(name)
        mask = decode_mask(source.read(name), where, None, ignore)
        if mask.shape != tuple(shape):
            raise DataError(f"{where}: mask is {mask.shape[0]}x{mask.shape[1]} but its image "
                            f"{describe_ref(source, image_name)} is {shape[0]}x{shape[1]}")
        largest = int(mask[mask != IGNORE_LABEL].max(initial=0)) if ignore is not None else int(mask.max())
        if declared and largest >= declared:
            raise DataError(f"{where}: mask value {largest} is outside the {declared} classes declared "
                            f"(0..{declared - 1})")
        out[index] = resize_mask(mask, size)
    return out


def uniform_images_chunk(source: FileSource, names: list[str], channels: int, size: tuple[int, int],
                         grey_only: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    """One pass for a folder whose sampled images are all 8-bit grey or RGB files of ``size``
    (and, with ``grey_only``, all grey): (images, headers, True), each file read once;
    (..., False) as soon as a file breaks that assumption, and the caller takes the two-pass way."""
    height, width = size
    headers = np.zeros((len(names), 4), dtype=np.int64)
    # Each image is pasted into one tall sheet, converted to an array once at the end: an array
    # per small image costs more than decoding it (Pillow's tobytes machinery, per call).
    sheet = Image.new("L" if channels == 1 else "RGB", (width, height * len(names)))
    refused = np.empty((0, channels, height, width), dtype=np.uint8), headers, False
    for index, name in enumerate(names):
        data = source.read(name)
        if data[:4] in TIFF_SIGNATURES or _deep_png(data):  # pages, samples or depth: the general way
            return refused
        try:
            image = _open(data, name, "image")
        except DataError as error:
            raise DataError(str(error).replace(name, source.describe(name), 1)) from None
        grey = image.mode in GREY_MODES
        if not grey and image.mode not in COLOUR_MODES:
            return refused
        headers[index] = (image.height, image.width, 1 if grey else 3, 0)
        if (image.height, image.width) != (height, width) or (grey_only and not grey):
            return refused
        sheet.paste(_converted(image, channels, source.describe(name)), (0, index * height))
    pixels = np.asarray(sheet).reshape(len(names), height, width, channels)
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)), headers, True


def model_inputs_chunk(source: FileSource, names: list[ImageRef], channels: int, size: tuple[int, int],
                       pixel_type: str = "uint8"
                       ) -> tuple[np.ndarray, np.ndarray, list[int], list[tuple[int, str]]]:
    """Images decoded for prediction: (``(n, channels, H, W)`` of ``pixel_type`` at ``size``, their
    own (height, width) ``(n, 2)``, the indices into ``names`` they are, and (index, error) of the
    files that could not be read; unlike the loader's chunks, a broken file does not stop the rest)."""
    out = np.empty((len(names), channels, size[0], size[1]), dtype=pixel_type)
    sizes = np.zeros((len(names), 2), dtype=np.int64)
    kept, errors = [], []
    for index, name in enumerate(names):
        try:
            where = describe_ref(source, name)
            if isinstance(name, str) and pixel_type == "uint8" and channels in (1, 3):
                image = _open(source.read(name), where, "image")  # the 8-bit way, as the loader's
                own = (image.height, image.width)
                pixels = image_array(image, channels, size, where)
            else:
                stored = _read_ref_pixels(source, name)
                own = stored.shape[1:]
                pixels = conform(stored, channels, size, pixel_type, where)
            out[len(kept)] = pixels
            sizes[len(kept)] = own
            kept.append(index)
        except DataError as error:
            errors.append((index, str(error)))
    return out[:len(kept)], sizes[:len(kept)], kept, errors


def display_grey(source: FileSource, ref: ImageRef) -> np.ndarray:
    """An image as 8-bit grey ``(H, W)`` at its own size, to draw on: 8-bit grey or RGB as Pillow
    converts it; anything else its first channel stretched from its 1st to 99th percentile."""
    pixels = _read_ref_pixels(source, ref)
    if pixels.dtype == np.uint8 and pixels.shape[0] in (1, 3):
        return conform(pixels, 1, None)[0]
    return stretched(pixels[0])


def stretched(plane: np.ndarray) -> np.ndarray:
    """A plane of any type as uint8, from its 1st to its 99th percentile (Fiji's auto contrast):
    for pictures only, never for a model's input."""
    low, high = np.percentile(plane, [1, 99]) if plane.size else (0.0, 1.0)
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip((plane.astype(np.float64) - low) * scale, 0, 255).round().astype(np.uint8)
