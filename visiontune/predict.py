"""``visiontune predict MODEL INPUT... --out DIR``: a trained model applied to files, folders and zips.

The model is the model layer's (``trained.load_model``: a train run, a search's best trial or
top K, its cross-validation's fold ensemble, or an exported folder); its card says how a file
becomes the model's input, exactly as training read it (``TrainedModel.preprocess``). Files are
found under the given inputs (``file_sources``), decoded in chunks (a large folder in the
loader's pool of processes), run through the model and written by one worker thread per core;
what a prediction becomes (a table row, a mask file) is the kind's (``kinds.Kind``). A single
labelled input in a training layout is also scored against its labels.
"""

from __future__ import annotations

import csv
import json
import os
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from visiontune import colours, image_files
from visiontune.errors import DataError
from visiontune.file_sources import FileSource, FolderSource, ZipSource
from visiontune.trained import TrainedModel, load_model

PREDICTIONS_CSV, AREAS_CSV, ERRORS_CSV, MASKS_DIR = "predictions.csv", "areas.csv", "errors.csv", "masks"
SCORES_FILE, OVERLAYS_DIR = "scores.json", "overlays"
SMALL_CHUNK = 16  # files per chunk where no process pool decodes (the pool's chunks: data.decode.CHUNK)


@dataclass
class InputFile:
    """One image to predict: where it is, how the tables name it, and its label where known."""

    source: FileSource
    path: image_files.ImageRef  # inside the source: a file, or one file per channel
    relative: str  # inside the input it was found under (its mask's file name comes from it)
    label: Any = None  # a labelled layout's target (class index or mask file), else None

    @property
    def name(self) -> str:
        return image_files.describe_ref(self.source, self.path)


def table_file(model: TrainedModel) -> str:
    """The table predict writes for the model's kind."""
    return AREAS_CSV if model.kind.writes_masks else PREDICTIONS_CSV


# -------------------------------------------------------------------------------------- inputs
def collect_inputs(paths: Iterable[str | os.PathLike], channel_files: int = 0
                   ) -> tuple[list[InputFile], dict[str, int]]:
    """Every image under the given files, folders (recursively) and zips, in order; skipped files
    counted by reason. ``channel_files``: an image is that many files, one per channel, named
    nnU-Net's way (CASE_0000.png, CASE_0001.png, ...), grouped by case."""
    found: list[InputFile] = []
    skipped: dict[str, int] = {}
    folders: dict[Path, FolderSource] = {}  # files given one by one share their folder's source (cases group by it)
    for given in paths:
        path = Path(given)
        if path.is_dir() or (path.suffix.lower() == ".zip" and path.is_file()):
            source: FileSource = FolderSource(path) if path.is_dir() else ZipSource(path)
            candidates = [(name, name) for name in source.all_files()]
        elif path.is_file():
            source = folders.setdefault(path.parent.resolve(), FolderSource(path.parent))
            candidates = [(path.name, path.name)]
        else:
            raise DataError(f"{path}: no such file or folder")
        for inside, relative in candidates:
            reason = image_files.skip_reason(os.path.basename(inside))
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
            else:
                found.append(InputFile(source, inside, relative))
    return (_cases(found, channel_files) if channel_files else found), skipped


def _cases(files: list[InputFile], channels: int) -> list[InputFile]:
    """Files named CASE_0000.png, CASE_0001.png, ... grouped into one input per case, its channel
    files in order; a case missing one of its ``channels`` files is a one-line error."""
    cases: dict[tuple[int, str, str], dict[int, InputFile]] = {}
    for file in files:
        stem, ending = os.path.splitext(file.path)
        case, _, number = stem.rpartition("_")
        if not (case and len(number) == 4 and number.isdigit()):
            raise DataError(f"{file.name}: the model reads one file per channel, named CASE_0000{ending} to "
                            f"CASE_{channels - 1:04d}{ending}; this name has no channel number")
        cases.setdefault((id(file.source), case, ending), {})[int(number)] = file
    grouped = []
    for (_, case, ending), found in cases.items():
        first = found[min(found)]
        if sorted(found) != list(range(channels)):
            missing = sorted(set(range(channels)) - set(found)) or sorted(set(found) - set(range(channels)))
            raise DataError(f"{first.name}: case {os.path.basename(case)} has channel files "
                            f"{', '.join(f'_{n:04d}' for n in sorted(found))}; the model reads {channels} "
                            f"(_0000 to _{channels - 1:04d}; {', '.join(f'_{n:04d}' for n in missing)} differ)")
        relative = first.relative[: -len(f"_0000{ending}")] + ending
        grouped.append(InputFile(first.source, tuple(found[n].path for n in range(channels)), relative))
    return grouped


def _mask_name(relative: str) -> str:
    """A mask's file name: the image's path inside its input, folders joined by "__", as PNG."""
    return os.path.splitext(relative)[0].replace("/", "__") + ".png"


def labelled_layout(inputs: Sequence[str], model: TrainedModel):
    """The training layout (``data.folders``) of a single labelled input of the model's kind, or
    None: predictions of such a folder are also scored against its labels."""
    from visiontune.data.folders import find_layout

    if len(inputs) != 1 or not (Path(inputs[0]).is_dir() or str(inputs[0]).lower().endswith((".zip", ".yaml"))):
        return None
    try:
        layout = find_layout(inputs[0])
    except DataError:
        return None
    if layout.kind != model.card.kind or not model.kind.scorable(layout.classes, model.card):
        return None
    return layout


def _layout_files(layout) -> list[InputFile]:
    """Every image of a labelled layout, with its label."""
    from visiontune.data.folders import IMAGES_DIR

    def inside(image: image_files.ImageRef) -> str:  # "test/images/a.png" -> "test/a.png": masks go in masks/
        relative = image if isinstance(image, str) else item_name(image)
        return "/".join(part for part in relative.split("/") if part != IMAGES_DIR)

    def item_name(channel_files: tuple[str, ...]) -> str:  # "imagesTs/c_0000.png", ... -> "imagesTs/c.png"
        stem, ending = os.path.splitext(channel_files[0])
        return stem.rpartition("_")[0] + ending

    return [InputFile(layout.source, item.image, inside(item.image), item.target) for item in layout.items]


# ------------------------------------------------------------------------------------- decoding
def network_workers(device: torch.device) -> int:
    """How many chunks go through the model at once. On a CPU, one per intra-op thread, each
    chunk on a single thread: the small convolutions of these models scale badly across threads
    (an FCN2 on 60 images of 128x128 on 2 cores: 0.11-0.13 s as one batch on 2 threads, 0.09 s
    as two halves on one thread each), and the decoding and writing of the chunks overlap too.
    On a GPU, two: one chunk decodes while the other's batch runs."""
    return max(1, torch.get_num_threads()) if device.type == "cpu" else 2


Decoded = tuple[list[int], np.ndarray, np.ndarray, list[tuple[int, str]]]  # indices, inputs, own sizes, errors


def _chunks(files: list[InputFile], step: int) -> Iterator[list[int]]:
    """Indices of ``files`` in chunks of at most ``step``, each from one source."""
    start = 0
    while start < len(files):
        end = start + 1
        while end < len(files) and end - start < step and files[end].source is files[start].source:
            end += 1
        yield list(range(start, end))
        start = end


def _decode_work(model: TrainedModel, files: list[InputFile]) -> Iterator[Callable[[], Decoded]]:
    """Callables, one per chunk of ``files``, each giving (indices into ``files``, uint8 model
    inputs, own (height, width), (index, error) of the unreadable): a large input decodes in the
    loader's pool of processes (``data.decode``), running ahead; otherwise each callable decodes
    its chunk where it is called."""
    from visiontune.data.decode import CHUNK, Decoder

    channels, size, pixel_type = model.card.decode_channels, tuple(model.card.image_size), model.card.pixel_type
    keep = model.card.keep_channels

    def model_inputs(indices: list[int], decoded) -> Decoded:
        images, sizes, kept, failed = decoded
        return ([indices[i] for i in kept], images[:, keep] if keep else images, sizes,
                [(indices[i], message) for i, message in failed])

    with Decoder(None, len(files)) as decoder:
        chunks = list(_chunks(files, CHUNK if decoder.pool is not None else SMALL_CHUNK))
        arguments = [(files[chunk[0]].source, [files[i].path for i in chunk], channels, size, pixel_type)
                     for chunk in chunks]
        if decoder.pool is not None:  # map submits every chunk at once: the pool runs ahead of the model
            results = decoder.pool.map(image_files.model_inputs_chunk, *zip(*arguments)) if chunks else []
            for chunk, decoded in zip(chunks, results):
                yield lambda chunk=chunk, decoded=decoded: model_inputs(chunk, decoded)
        else:
            for chunk, args in zip(chunks, arguments):
                yield lambda chunk=chunk, args=args: model_inputs(chunk, image_files.model_inputs_chunk(*args))


def _in_order(executor: Executor, work: Callable[[Any], Any], items: Iterable[Any], ahead: int):
    """``work(item)`` of each item, run in ``executor`` with at most ``ahead`` items in flight,
    yielded in order."""
    pending: deque = deque()
    for item in items:
        pending.append(executor.submit(work, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


# -------------------------------------------------------------------------------------- writing
def prediction_lines(out: Path, model: TrainedModel, limit: int = 10) -> list[str]:
    """The first ``limit`` predictions written into ``out``, one line each, for the terminal:
    the file and its class with its probability, or its mask and the pixels of each class."""
    with open(out / table_file(model), newline="") as stream:
        rows = list(csv.DictReader(stream))
    lines = [model.kind.terminal_line(row) for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more")
    return lines


def _overlay(file: InputFile, mask: np.ndarray) -> bytes:
    """The image in grey with each foreground class painted over it in its colour (half opaque)."""
    from PIL import Image

    grey = image_files.display_grey(file.source, file.path).astype(np.float32)
    picture = np.repeat(grey[..., None], 3, axis=2)
    for index in range(1, int(mask.max(initial=0)) + 1):
        inside = mask == index
        picture[inside] = 0.5 * picture[inside] + 0.5 * np.array(colours.rgb(colours.class_colour(index)), np.float32)
    return image_files.encode_png(Image.fromarray(picture.round().astype(np.uint8)))


def _write_csv(path: Path, header: list[str], rows: list[Sequence[Any]]) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(temporary, path)


class _Writer:
    """Runs decoded chunks through the model and writes each image's mask (and overlay)."""

    def __init__(self, model: TrainedModel, files: list[InputFile], out: Path, batch_size: int, overlay: bool) -> None:
        self.model, self.files, self.out, self.batch_size, self.overlay = model, files, out, batch_size, overlay
        if model.kind.writes_masks:
            (out / MASKS_DIR).mkdir(exist_ok=True)
            if overlay:
                (out / OVERLAYS_DIR).mkdir(exist_ok=True)

    def mask_file(self, index: int) -> str | None:
        return f"{MASKS_DIR}/{_mask_name(self.files[index].relative)}" if self.model.kind.writes_masks else None

    def __call__(self, decode: Callable[[], Decoded]) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, str]]]:
        indices, images, sizes, failed = decode()
        done = []
        for start in range(0, len(indices), self.batch_size):
            own = [tuple(int(v) for v in size) for size in sizes[start:start + self.batch_size]]
            results = self.model.results(self.model.probabilities(images[start:start + self.batch_size]), own)
            done.extend(zip(indices[start:start + self.batch_size], results))
        if self.model.kind.writes_masks:
            for index, result in done:
                file = self.files[index]
                (self.out / self.mask_file(index)).write_bytes(image_files.encode_png_array(result["mask"]))
                if self.overlay:
                    (self.out / OVERLAYS_DIR / _mask_name(file.relative)).write_bytes(_overlay(file, result["mask"]))
        return done, failed


def predict_files(model: TrainedModel, inputs: list[str], out: Path, batch_size: int = 256,
                  overlay: bool = False) -> dict[str, Any]:
    """Predict every image under ``inputs`` into ``out``; returns counts (predicted, errors,
    skipped) and, for a labelled folder, its ``scores``. Chunks of files are decoded, run through
    the model and written by ``network_workers`` threads at once (Pillow and torch let go of the
    GIL while they work); on a CPU each runs torch on one thread, restored afterwards."""
    layout = labelled_layout(inputs, model)
    if layout is not None:
        files, skipped = _layout_files(layout), dict(layout.skipped)
    else:
        files, skipped = collect_inputs(inputs, model.card.decode_channels if model.card.channel_files else 0)
    if not files:
        raise DataError(f"no image files in {', '.join(map(str, inputs))}")
    out.mkdir(parents=True, exist_ok=True)
    from visiontune.data.decode import ProgressBar

    writer, bar = _Writer(model, files, out, batch_size, overlay), ProgressBar(len(files), "predicting")
    failures: dict[int, str] = {}
    rows: dict[int, list[Any]] = {}
    kept: dict[int, dict[str, Any]] = {}
    workers, threads = network_workers(model.device), torch.get_num_threads()
    if model.device.type == "cpu":
        torch.set_num_threads(1)  # before the workers start: new threads take torch's setting then
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="visiontune-predict") as executor:
            for done, failed in _in_order(executor, writer, _decode_work(model, files), workers + 1):
                failures.update(failed)
                for index, result in done:
                    rows[index] = model.kind.table_row(files[index].name, result, writer.mask_file(index))
                    if layout is not None:
                        kept[index] = result
                bar.advance(len(done) + len(failed))
    finally:
        torch.set_num_threads(threads)
    _write_csv(out / table_file(model), model.kind.table_header(model.card.classes), [rows[i] for i in sorted(rows)])
    errors = [(files[index].name, failures[index]) for index in sorted(failures)]
    if errors:
        _write_csv(out / ERRORS_CSV, ["file", "error"], errors)
    counts: dict[str, Any] = {"predicted": len(rows), "errors": len(errors), "skipped": sum(skipped.values())}
    if layout is not None and kept:
        order = sorted(kept)
        truths = [layout.truth(files[i].label) for i in order]
        counts["scores"] = {"images": len(order), **model.kind.score(model.card, truths, [kept[i] for i in order])}
        (out / SCORES_FILE).write_text(json.dumps(counts["scores"], indent=2) + "\n")
    return counts


__all__ = ["collect_inputs", "load_model", "predict_files", "prediction_lines"]
