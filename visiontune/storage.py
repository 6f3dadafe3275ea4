"""Where a search's run folder lives: a local folder, or a URI (s3://, gs://, file://).

Ray Tune writes its experiment state, trial results and checkpoints there itself; visiontune
adds its own small files (``search.json``, ``trials.csv``, ``test_results.json``, ...) through
:class:`RunStore`, which writes local files atomically and remote ones through pyarrow's
filesystems (the same layer Ray uses), so a search on a cluster keeps everything in one place.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

from visiontune import runs
from visiontune.errors import ConfigError


def is_uri(storage: str) -> bool:
    """True for ``scheme://...`` storage locations."""
    return "://" in storage


class RunStore:
    """Read and write the files of one run folder ``STORAGE/NAME``."""

    def __init__(self, storage: str, name: str) -> None:
        if not name or "/" in name or name in (".", ".."):
            raise ConfigError(f"--name must be a plain folder name, not {name!r}")
        self.name = name
        if is_uri(storage):
            import pyarrow.fs

            try:
                self.fs, root = pyarrow.fs.FileSystem.from_uri(storage)
            except Exception as error:  # pyarrow raises several types for bad or unsupported URIs
                raise ConfigError(f"--storage {storage}: not a usable storage URI ({error})") from None
            self.storage_path = storage.rstrip("/")
            self.root = f"{root.rstrip('/')}/{name}"
            self.location = f"{self.storage_path}/{name}"
            self.local_dir: Path | None = Path(self.root) if storage.startswith("file://") else None
        else:
            self.fs = None
            self.storage_path = str(Path(storage).expanduser().resolve())
            self.local_dir = Path(self.storage_path) / name
            self.root = str(self.local_dir)
            self.location = self.root

    def exists(self, relative: str = "") -> bool:
        """Whether the run folder (or a file in it) exists."""
        if self.fs is None:
            return (Path(self.root) / relative).exists()
        import pyarrow.fs

        info = self.fs.get_file_info(f"{self.root}/{relative}".rstrip("/"))
        return info.type != pyarrow.fs.FileType.NotFound

    def write_text(self, relative: str, text: str) -> None:
        """Write a file of the run folder (atomically where local)."""
        if self.fs is None:
            path = Path(self.root) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            runs.atomic_write_text(path, text)
            return
        self.write_bytes(relative, text.encode())

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a binary file of the run folder."""
        if self.fs is None:
            path = Path(self.root) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            return
        parent = f"{self.root}/{relative}".rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        with self.fs.open_output_stream(f"{self.root}/{relative}") as stream:
            stream.write(data)

    def read_text(self, relative: str) -> str:
        """Read a file of the run folder."""
        if self.fs is None:
            return (Path(self.root) / relative).read_text()
        with self.fs.open_input_stream(f"{self.root}/{relative}") as stream:
            return io.BytesIO(stream.read()).getvalue().decode()

    def list_dir(self, relative: str) -> list[str]:
        """Names of the entries of a folder of the run folder (empty if it does not exist)."""
        if self.fs is None:
            folder = Path(self.root) / relative
            return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(f"{self.root}/{relative}".rstrip("/"), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector))

    def delete_dir(self, relative: str) -> None:
        """Delete a folder of the run folder with everything in it."""
        if self.fs is None:
            shutil.rmtree(Path(self.root) / relative, ignore_errors=True)
        else:
            self.fs.delete_dir(f"{self.root}/{relative}")

    def file_size(self, relative: str) -> int | None:
        """Bytes of one file of the run folder; None if there is no such file."""
        if self.fs is None:
            path = Path(self.root) / relative
            return path.stat().st_size if path.is_file() else None
        import pyarrow.fs

        info = self.fs.get_file_info(f"{self.root}/{relative}")
        return info.size if info.type == pyarrow.fs.FileType.File else None

    def size(self, relative: str = "") -> int:
        """Bytes of the files below a folder of the run folder (the whole run folder by default)."""
        if self.fs is None:
            folder = Path(self.root) / relative
            return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(f"{self.root}/{relative}".rstrip("/"), recursive=True, allow_not_found=True)
        return sum(info.size or 0 for info in self.fs.get_file_info(selector) if info.type == pyarrow.fs.FileType.File)

    def upload_folder(self, local: Path, relative: str) -> None:
        """Copy a local folder into the run folder as ``relative`` (a data set's cache entry, which
        the nodes of a cluster copy from; ``data.placement.received``)."""
        if self.fs is None:
            target = Path(self.root) / relative
            if not target.exists():
                shutil.copytree(local, target)
            return
        import pyarrow.fs

        self.fs.create_dir(f"{self.root}/{relative}", recursive=True)
        pyarrow.fs.copy_files(str(local), f"{self.root}/{relative}", source_filesystem=pyarrow.fs.LocalFileSystem(),
                              destination_filesystem=self.fs)

    def download_folder(self, relative: str, local: Path) -> None:
        """Copy the run folder's ``relative`` folder to ``local``, which appears complete or not at all."""
        local.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=local.parent, prefix=f".{local.name}."))
        try:
            if self.fs is None:
                shutil.copytree(Path(self.root) / relative, staging, dirs_exist_ok=True)
            else:
                import pyarrow.fs

                pyarrow.fs.copy_files(f"{self.root}/{relative}", str(staging), source_filesystem=self.fs,
                                      destination_filesystem=pyarrow.fs.LocalFileSystem())
            staging.rename(local)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
