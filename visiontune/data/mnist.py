"""MNIST: IDX files (gzipped or raw), the course's PNG folders, a zip of them, or a download.

Looked for under the data root, first match wins:

1. IDX files ``train-images-idx3-ubyte[.gz]`` etc. in ``ROOT/mnist``, ``ROOT/MNIST/raw``
   (torchvision's layout) or ``ROOT`` itself;
2. PNG folders ``ROOT/MNIST/Train/<digit>/*.png`` and ``ROOT/MNIST/Test/<digit>/*.png``;
3. ``ROOT/MNIST.zip`` holding that folder layout (or ROOT given as the zip itself);
4. otherwise, when allowed, the IDX files are downloaded from torchvision's MNIST mirrors into
   ``ROOT/mnist`` and verified against the official checksums of the decompressed files.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import torch

from visiontune.file_sources import FileSource, FolderSource, ZipSource
from visiontune.image_files import decode_png
from visiontune.data.splits import ImageSet
from visiontune.errors import DataError

IMAGE_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABEL_MAGIC = 0x00000801  # unsigned byte, 1 dimension

# The four files and the MD5 of their decompressed content (the official release). Checking
# the decompressed bytes lets a mirror recompress the archives without failing verification.
IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
    "train_labels": ("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
    "test_images": ("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
    "test_labels": ("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
}
MIRRORS_ENV = "VISIONTUNE_MNIST_MIRRORS"  # comma-separated base URLs, tried in order
DOWNLOAD_TIMEOUT_S = 30


def read_idx_bytes(data: bytes, expected_magic: int, where: str) -> np.ndarray:
    """Parse an IDX file's bytes into a uint8 array, checking magic number and length."""
    if len(data) < 4:
        raise DataError(f"{where}: too short for an IDX file ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DataError(f"{where}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x} for an IDX "
                        f"{'image' if expected_magic == IMAGE_MAGIC else 'label'} file")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{where}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataError(f"{where}: holds {len(data) - header} data bytes, but its header {shape} needs {expected} "
                        "(truncated or corrupt file)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_file(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                return stream.read()
        return path.read_bytes()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read ({error})") from None


def _idx_path(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_idx_folder(root: Path) -> Path | None:
    """The first candidate folder under ``root`` holding any MNIST IDX file, or None."""
    for folder in (root / "mnist", root / "MNIST" / "raw", root):
        if any(_idx_path(folder, stem) for stem, _ in IDX_FILES.values()):
            return folder
    return None


def load_idx_folder(folder: Path) -> tuple[ImageSet, ImageSet]:
    """Train and test sets from the four IDX files in ``folder``."""
    arrays = {}
    for key, (stem, _) in IDX_FILES.items():
        path = _idx_path(folder, stem)
        if path is None:
            raise DataError(f"{folder}: missing {stem} (or {stem}.gz); an MNIST IDX folder needs all four files")
        magic = IMAGE_MAGIC if key.endswith("images") else LABEL_MAGIC
        arrays[key] = read_idx_bytes(_read_file(path), magic, str(path))
    sets = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise DataError(f"{folder}: {split} has {len(images)} images but {len(labels)} labels")
        if labels.size and labels.max() > 9:
            raise DataError(f"{folder}: {split} labels must be digits 0-9, found {int(labels.max())}")
        sets.append(ImageSet(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))))
    return sets[0], sets[1]


def load_png_split(source: FileSource, folder: str) -> ImageSet:
    """One split from ``folder/<digit>/*.png``; digits are the sub-folder names 0-9."""
    if not source.is_dir(folder):
        raise DataError(f"{source.describe(folder)}: missing folder (expected digit sub-folders 0-9)")
    images, labels = [], []
    for name in source.list_dir(folder):
        if not source.is_dir(f"{folder}/{name}"):
            continue
        if name not in {str(d) for d in range(10)}:
            raise DataError(f"{source.describe(folder + '/' + name)}: unexpected folder; expected digit folders 0-9")
        for path in source.files_in(f"{folder}/{name}", (".png",)):
            pixels = decode_png(source.read_bytes(path), source.describe(path))
            if pixels.ndim == 3:
                pixels = pixels[..., 0]  # grey PNGs saved as RGB carry the grey level in every channel
            if pixels.shape != (28, 28):
                raise DataError(f"{source.describe(path)}: is {pixels.shape[1]}x{pixels.shape[0]}, expected 28x28")
            images.append(pixels.astype(np.uint8))
            labels.append(int(name))
    if not images:
        raise DataError(f"{source.describe(folder)}: no PNG images in its digit folders")
    return ImageSet(torch.from_numpy(np.stack(images)).unsqueeze(1), torch.tensor(labels, dtype=torch.int64))


def _png_source(root: Path) -> tuple[FileSource, str] | None:
    if root.is_file() and root.suffix.lower() == ".zip":
        return ZipSource(root), "MNIST"
    if (root / "MNIST" / "Train").is_dir() or (root / "MNIST" / "Test").is_dir():
        return FolderSource(root), "MNIST"
    if (root / "MNIST.zip").is_file():
        return ZipSource(root / "MNIST.zip"), "MNIST"
    return None


def mirrors() -> list[str]:
    """Base URLs to download from: ``$VISIONTUNE_MNIST_MIRRORS`` or torchvision's list."""
    configured = os.environ.get(MIRRORS_ENV)
    if configured:
        return [url.strip().rstrip("/") + "/" for url in configured.split(",") if url.strip()]
    from torchvision.datasets import MNIST

    return list(MNIST.mirrors)


def download_mnist(target: Path, base_urls: list[str] | None = None, checksums: dict[str, str] | None = None) -> Path:
    """Download the four gzipped IDX files into ``target``, verified, all or nothing.

    Files land in a temporary folder first and move into ``target`` only when every one has
    passed its checksum, so a failed download leaves nothing half-written.
    """
    from torchvision.datasets.utils import download_url

    base_urls = base_urls or mirrors()
    checksums = checksums or {stem: md5 for stem, md5 in IDX_FILES.values()}
    target.mkdir(parents=True, exist_ok=True)
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # urllib would otherwise wait forever offline
    try:
        with tempfile.TemporaryDirectory(dir=target, prefix=".download-") as staging:
            for stem, md5 in checksums.items():
                errors = []
                for base in base_urls:
                    try:
                        download_url(base + stem + ".gz", staging, stem + ".gz")
                        digest = hashlib.md5(_read_file(Path(staging) / (stem + ".gz"))).hexdigest()
                        if digest != md5:
                            raise DataError(f"checksum mismatch (MD5 {digest}, expected {md5})")
                        break
                    except Exception as error:  # noqa: BLE001 - any failure means: try the next mirror
                        errors.append(f"{base}: {' '.join(str(error).split())}")
                else:
                    raise DataError(f"could not download {stem}.gz from any mirror ({'; '.join(errors)})")
            for stem in checksums:
                shutil.move(str(Path(staging) / (stem + ".gz")), target / (stem + ".gz"))
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return target


def load_mnist(root: Path, download: bool = True) -> tuple[ImageSet, ImageSet, str]:
    """(train, test, description of the source) from the first MNIST layout found under ``root``."""
    idx_folder = find_idx_folder(root) if root.is_dir() else None
    if idx_folder is not None:
        train, test = load_idx_folder(idx_folder)
        return train, test, str(idx_folder)
    png = _png_source(root)
    if png is not None:
        source, prefix = png
        return load_png_split(source, f"{prefix}/Train"), load_png_split(source, f"{prefix}/Test"), source.describe(prefix)
    looked = f"IDX files in {root}/mnist, PNG folders in {root}/MNIST/{{Train,Test}}, {root}/MNIST.zip"
    if not download:
        raise DataError(f"MNIST not found (looked for {looked}); set --data-dir or $VISIONTUNE_DATA")
    try:
        folder = download_mnist(root / "mnist")
    except (DataError, OSError) as error:
        raise DataError(f"MNIST not found (looked for {looked}) and the download failed: {error}. "
                        "Without network, put the files there or point --data-dir / $VISIONTUNE_DATA at them") from None
    train, test = load_idx_folder(folder)
    return train, test, str(folder)
