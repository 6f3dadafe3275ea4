"""Trees of files: a folder on disk or the inside of a zip archive, read the same way.

Every reader of image files goes through a :class:`FileSource`: the data loaders (built-in sets
and a user's layouts), the decoding processes (a source pickles as its location and opens its
archive afresh in each process), the data cache (file stamps) and ``visiontune predict`` (every
file under a folder or zip). Paths inside a source are relative, "/"-separated strings.

Imports neither torch nor the data package: the decoding processes import this module.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from visiontune.errors import DataError


class FileSource:
    """A tree of files addressed by relative paths (``""`` is its top)."""

    def exists(self, relative: str) -> bool:
        raise NotImplementedError

    def is_dir(self, relative: str) -> bool:
        raise NotImplementedError

    def entries(self, relative: str) -> list[tuple[str, bool]]:
        """(name, is a folder) of every entry of a folder, sorted."""
        raise NotImplementedError

    def read(self, relative: str, limit: int = -1) -> bytes:
        """The bytes of a file (its first ``limit`` bytes); a one-line ``DataError`` naming it."""
        raise NotImplementedError

    def describe(self, relative: str) -> str:
        """A file of the source as messages and tables name it."""
        raise NotImplementedError

    def stamps(self, files: list[str]) -> list[tuple[str, int, int]]:
        """(name, size, modification time or a zip member's CRC) of each file: what the data
        cache keys an entry by."""
        raise NotImplementedError

    def all_files(self, relative: str = "") -> list[str]:
        """Every file below a folder (recursively), sorted."""
        raise NotImplementedError

    def list_dir(self, relative: str) -> list[str]:
        """The names in a folder, sorted."""
        return [name for name, _ in self.entries(relative)]

    def read_bytes(self, relative: str) -> bytes:
        """The whole file."""
        return self.read(relative)

    def files_in(self, folder: str, suffixes: tuple[str, ...]) -> list[str]:
        """Relative paths of the files directly inside ``folder`` whose names end in ``suffixes``
        (any case), sorted."""
        prefix = f"{folder}/" if folder else ""
        return [prefix + name for name, is_dir in self.entries(folder)
                if not is_dir and name.lower().endswith(suffixes)]


class FolderSource(FileSource):
    """Files under a folder on disk."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def exists(self, relative: str) -> bool:
        return (self.root / relative).exists()

    def is_dir(self, relative: str) -> bool:
        return (self.root / relative).is_dir()

    def entries(self, relative: str) -> list[tuple[str, bool]]:
        # one directory read, no stat per file
        with os.scandir(os.path.join(self.root, relative)) as scan:
            return sorted((entry.name, entry.is_dir()) for entry in scan)

    def read(self, relative: str, limit: int = -1) -> bytes:
        try:
            # Unbuffered: one read of the whole file, without copying it through a buffer first.
            with open(os.path.join(self.root, relative), "rb", buffering=0) as stream:
                return stream.read(limit) if limit >= 0 else stream.readall()
        except OSError as error:
            raise DataError(f"{self.describe(relative)}: cannot read ({error.strerror or error})") from None

    def describe(self, relative: str) -> str:
        return str(self.root / relative) if relative else str(self.root)

    def stamps(self, files: list[str]) -> list[tuple[str, int, int]]:
        root, out = str(self.root), []
        for name in files:
            stat = os.stat(os.path.join(root, name))
            out.append((name, stat.st_size, stat.st_mtime_ns))
        return out

    def all_files(self, relative: str = "") -> list[str]:
        # os.walk and strings: Path objects cost more than decoding a small image, per file
        top = os.path.join(self.root, relative)
        found = (os.path.relpath(os.path.join(folder, name), self.root).replace(os.sep, "/")
                 for folder, _, names in os.walk(top) for name in names)
        return sorted(found)


class ZipSource(FileSource):
    """Files inside a zip archive, addressed by their path inside it.

    Pickled (for a decoding process) it carries only its path: each process opens the archive
    itself, since processes sharing one open archive share its file offset, and reads racing
    through one offset find garbage ("Bad magic number").
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._archive: zipfile.ZipFile | None = None
        self._pid = -1
        names = [info for info in self.archive.infolist() if not info.filename.startswith("__MACOSX")]
        # macOS archivers add __MACOSX/ resource forks; they are never data.
        self.files = {info.filename for info in names if not info.is_dir()}
        self.dirs = {info.filename.rstrip("/") for info in names if info.is_dir()}
        for name in self.files:  # every ancestor of a file is a folder, listed or not
            parent = Path(name).parent
            while str(parent) not in (".", ""):
                self.dirs.add(str(parent))
                parent = parent.parent

    @property
    def archive(self) -> zipfile.ZipFile:
        """The open archive, opened anew in a process that did not open it (forked or unpickled)."""
        if self._archive is None or self._pid != os.getpid():
            try:
                self._archive, self._pid = zipfile.ZipFile(self.path), os.getpid()
            except (zipfile.BadZipFile, OSError) as error:
                raise DataError(f"{self.path}: not a readable zip archive ({error})") from None
        return self._archive

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_archive": None, "_pid": -1}

    def exists(self, relative: str) -> bool:
        return relative in self.files or relative in self.dirs

    def is_dir(self, relative: str) -> bool:
        return relative in self.dirs

    def entries(self, relative: str) -> list[tuple[str, bool]]:
        prefix = relative.rstrip("/") + "/" if relative else ""  # "" lists the archive's top
        children = {n[len(prefix):].split("/")[0] for n in self.files | self.dirs if n.startswith(prefix)}
        return [(name, f"{prefix}{name}" in self.dirs) for name in sorted(c for c in children if c)]

    def read(self, relative: str, limit: int = -1) -> bytes:
        try:
            with self.archive.open(relative) as stream:
                return stream.read(limit)
        except (zipfile.BadZipFile, OSError, KeyError) as error:
            raise DataError(f"{self.describe(relative)}: cannot read from the archive ({error})") from None

    def describe(self, relative: str) -> str:
        return f"{self.path}:{relative}" if relative else str(self.path)

    def stamps(self, files: list[str]) -> list[tuple[str, int, int]]:
        infos = [self.archive.getinfo(name) for name in files]
        return [(name, info.file_size, info.CRC) for name, info in zip(files, infos)]

    def all_files(self, relative: str = "") -> list[str]:
        prefix = relative.rstrip("/") + "/" if relative else ""
        return sorted(name for name in self.files if name.startswith(prefix))


def source_for(path: str | os.PathLike) -> FileSource:
    """A folder or a ``.zip`` as a source."""
    path = Path(path)
    return ZipSource(path) if path.is_file() and path.suffix.lower() == ".zip" else FolderSource(path)
