"""Reading PNG files (from folders or zip archives) with errors that name the file."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from visiontune.errors import DataError


class FileSource(Protocol):
    """A tree of files: a folder on disk or the inside of a zip archive."""

    def exists(self, relative: str) -> bool: ...
    def is_dir(self, relative: str) -> bool: ...
    def list_dir(self, relative: str) -> list[str]: ...
    def entries(self, relative: str) -> list[tuple[str, bool]]: ...
    def read_bytes(self, relative: str) -> bytes: ...
    def describe(self, relative: str) -> str: ...


class FolderSource:
    """Files under a folder on disk."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def exists(self, relative: str) -> bool:
        return (self.root / relative).exists()

    def is_dir(self, relative: str) -> bool:
        return (self.root / relative).is_dir()

    def list_dir(self, relative: str) -> list[str]:
        return sorted(p.name for p in (self.root / relative).iterdir())

    def entries(self, relative: str) -> list[tuple[str, bool]]:
        """(name, is a folder) of every entry of a folder, sorted; one directory read, no stat per file."""
        with os.scandir(os.path.join(self.root, relative)) as scan:
            return sorted((entry.name, entry.is_dir()) for entry in scan)

    def read_bytes(self, relative: str) -> bytes:
        try:
            return (self.root / relative).read_bytes()
        except OSError as error:
            raise DataError(f"{self.describe(relative)}: cannot read ({error.strerror or error})") from None

    def describe(self, relative: str) -> str:
        return str(self.root / relative) if relative else str(self.root)


class ZipSource:
    """Files inside a zip archive, addressed by their path inside it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.archive = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as error:
            raise DataError(f"{self.path}: not a readable zip archive ({error})") from None
        # macOS archivers add __MACOSX/ resource forks; they are never data.
        entries = [info for info in self.archive.infolist() if not info.filename.startswith("__MACOSX")]
        self.files = {info.filename for info in entries if not info.is_dir()}
        self.dirs = {info.filename.rstrip("/") for info in entries if info.is_dir()}
        for name in self.files:  # every ancestor of a file is a directory, listed or not
            parent = Path(name).parent
            while str(parent) not in (".", ""):
                self.dirs.add(str(parent))
                parent = parent.parent

    def exists(self, relative: str) -> bool:
        return relative in self.files or relative in self.dirs

    def is_dir(self, relative: str) -> bool:
        return relative in self.dirs

    def list_dir(self, relative: str) -> list[str]:
        prefix = relative.rstrip("/") + "/" if relative else ""  # "" lists the archive's top
        children = {n[len(prefix):].split("/")[0] for n in self.files | self.dirs if n.startswith(prefix)}
        return sorted(c for c in children if c)

    def entries(self, relative: str) -> list[tuple[str, bool]]:
        """(name, is a folder) of every entry of a folder inside the archive, sorted."""
        prefix = f"{relative.rstrip('/')}/" if relative else ""
        return [(name, f"{prefix}{name}" in self.dirs) for name in self.list_dir(relative)]

    def read_bytes(self, relative: str) -> bytes:
        try:
            return self.archive.read(relative)
        except (zipfile.BadZipFile, OSError, KeyError) as error:
            raise DataError(f"{self.describe(relative)}: cannot read from the archive ({error})") from None

    def describe(self, relative: str) -> str:
        return f"{self.path}:{relative}" if relative else str(self.path)


def decode_png(data: bytes, where: str) -> np.ndarray:
    """Decode PNG bytes into an array (H, W) or (H, W, C); a :class:`DataError` naming ``where``."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decode now: a truncated file fails here, not later
            return np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = str(error) or type(error).__name__
        raise DataError(f"{where}: unreadable PNG ({reason})") from None


def iter_pngs(source: FileSource, folder: str) -> Iterator[str]:
    """Relative paths of the ``.png`` files directly inside ``folder``, sorted."""
    for name in source.list_dir(folder):
        if name.lower().endswith(".png"):
            yield f"{folder}/{name}" if folder else name
