"""Using a trained model: ``load_model(path)`` and ``visiontune predict MODEL INPUT... --out DIR``.

A model is read from a ``train`` run folder (``config.json``, ``best.pt``, the card in
``data.json``) or a search run folder (its best trial by validation: the configuration in
``trials.json``, the checkpoint of its best epoch, the card in ``search.json``). The card says
how a file becomes the model's input, exactly as training read it: decoded to grey or RGB
(``imageio``, the loader's own functions), the card's RGB channels kept, resized (bilinear) to
the training size, scaled to [0, 1]; nothing is re-derived. Segmentation masks are resized back
(nearest neighbour) to each image's own size.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from visiontune import imageio, metrics, record, runs, tta
from visiontune.config import TrainConfig, config_from_dict
from visiontune.data.card import DatasetCard
from visiontune.engine import resolve_device
from visiontune.errors import DataError, VisiontuneError
from visiontune.models import build_model
from visiontune.models.layers import fold_batchnorm

PREDICTIONS_CSV, AREAS_CSV, ERRORS_CSV, MASKS_DIR = "predictions.csv", "areas.csv", "errors.csv", "masks"
MODEL_CARD = "model.json"  # an exported model's card (visiontune.export)
SCORES_FILE, OVERLAYS_DIR = "scores.json", "overlays"
CV_ENSEMBLE = "cv"  # --ensemble cv: the fold models of the cross-validation's winner (analysis.crossval)


class Ensemble(nn.Module):
    """Mean class probabilities of member models, each over its own test-time augmentation views:
    what ``predict`` runs and ``export`` writes as one graph. Input: float images on [0, 1] at the
    training size; output: probabilities ``(N, K)`` or ``(N, K, H, W)``."""

    def __init__(self, members: list[nn.Module], tta_modes: list[str]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.views = [tta.tta_views(mode) for mode in tta_modes]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        total, count = None, 0
        for member, views in zip(self.members, self.views):
            for turns, flip in views:
                output = tta.unview(member(tta.view(images, turns, flip)).float().softmax(dim=1), turns, flip)
                total = output if total is None else total + output
                count += 1
        return total / count


@dataclass
class Predictor:
    """A trained model (one, an ensemble, or an exported graph) with the card it was trained on."""

    card: DatasetCard
    config: TrainConfig  # the (first member's) training configuration
    device: torch.device
    source: str  # where it was loaded from
    forward: Callable[[torch.Tensor], torch.Tensor]  # float images on [0, 1] -> class probabilities
    members: int = 1

    def preprocess(self, image: np.ndarray | str | os.PathLike | bytes, where: str = "image") -> np.ndarray:
        """One image (a file's path or bytes, or a uint8 array ``(H, W)``/``(H, W, C)``) as the
        model's uint8 input ``(C, H, W)`` at the training size."""
        decode_channels = 1 if self.card.channels == 1 else 3
        size = tuple(self.card.image_size)
        if isinstance(image, np.ndarray):  # through Pillow too, so that conversion and resizing are the loader's
            from PIL import Image

            array = np.ascontiguousarray(image, dtype=np.uint8)
            pixels = imageio.image_array(Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[2] == 1
                                                         else array), decode_channels, size)
        else:
            data = image if isinstance(image, bytes) else Path(image).read_bytes()
            pixels = imageio.decode_image(data, where if isinstance(image, bytes) else str(image), decode_channels, size)
        return pixels[self.card.keep_channels] if self.card.keep_channels else pixels

    @torch.inference_mode()
    def probabilities(self, batch: np.ndarray) -> torch.Tensor:
        """Class probabilities of a uint8 batch ``(N, C, H, W)`` (per pixel for segmentation)."""
        images = torch.from_numpy(batch).to(self.device).float().div_(255.0)
        return self.forward(images).float().cpu()

    def predict(self, images: Sequence[Any], batch_size: int = 256) -> list[dict[str, Any]]:
        """Predictions of images (paths, bytes or arrays): per image, ``class`` and ``probabilities``
        (classification) or ``mask`` at the image's own size and its class ``areas`` (segmentation)."""
        out = []
        for start in range(0, len(images), batch_size):
            # Each file read once: its bytes serve both its header (own size) and its pixels.
            given = images[start:start + batch_size]
            chunk = [image if isinstance(image, (np.ndarray, bytes)) else Path(image).read_bytes() for image in given]
            sizes = [_size_of(image) for image in chunk]
            batch = np.stack([self.preprocess(image, "image" if isinstance(name, (np.ndarray, bytes)) else str(name))
                              for image, name in zip(chunk, given)])
            out.extend(self.results(self.probabilities(batch), sizes))
        return out

    def results(self, probabilities: torch.Tensor, sizes: list[tuple[int, int] | None]) -> list[dict[str, Any]]:
        """Per image: the class and probabilities, or the mask (resized back to ``sizes``) and areas."""
        if self.card.kind == "classification":
            winners, values = probabilities.argmax(dim=1).tolist(), probabilities.tolist()  # one call per batch
            return [{"class": self.card.classes[w], "probabilities": v} for w, v in zip(winners, values)]
        results = []
        for map_, size in zip(metrics.segmentation_map(probabilities).numpy().astype(np.uint8), sizes):
            mask = imageio.resize_mask(map_, size)
            counts = np.bincount(mask.ravel(), minlength=self.card.num_classes)
            results.append({"mask": mask, "areas": {name: int(counts[i]) for i, name in enumerate(self.card.classes)}})
        return results


def _size_of(image: np.ndarray | bytes) -> tuple[int, int]:
    """An image's own (height, width), to give its mask back at that size."""
    if isinstance(image, np.ndarray):
        return int(image.shape[0]), int(image.shape[1])
    height, width, _ = imageio.image_header(image, "image")
    return height, width


# ------------------------------------------------------------------------------------ loading
def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise VisiontuneError(f"{path}: missing ({what})") from None
    except (OSError, json.JSONDecodeError) as error:
        raise VisiontuneError(f"{path}: cannot read {what} ({error})") from None


def best_checkpoint_file(trial_folder: Path, metric: str, best_epoch: int) -> Path | None:
    """The kept checkpoint with the best validation ``metric`` (the one the search evaluated on
    test): Ray keeps the best by the metric and the latest, and where two epochs tie it may keep
    the later, so the best epoch's own checkpoint is preferred and a tied one taken otherwise."""
    scores: dict[str, float] = {}
    try:
        for line in (trial_folder / record.RESULT_FILE).read_text().splitlines():
            report = json.loads(line) if line.strip() else {}
            if report.get("checkpoint_dir_name") and isinstance(report.get(metric), (int, float)):
                scores[report["checkpoint_dir_name"]] = float(report[metric])
    except (OSError, json.JSONDecodeError):
        return None
    kept = [name for name in scores if (trial_folder / name / record.STATE_FILE).is_file()]
    if not kept:
        return None
    best = max(scores[name] for name in kept)
    tied = [name for name in kept if scores[name] == best]
    for name in tied:
        if runs.load_checkpoint(trial_folder / name / record.STATE_FILE)["trainer"]["epoch"] == best_epoch:
            return trial_folder / name / record.STATE_FILE
    return trial_folder / tied[-1] / record.STATE_FILE


def _ranked_trial_states(folder: Path, metric: str, count: int) -> list[tuple[dict[str, Any], dict[str, torch.Tensor]]]:
    """(config, model weights) of a search's ``count`` best trials by validation (ranks 1.. of
    ``trials.csv``), each from the checkpoint of its best validation score."""
    try:
        with open(folder / record.TRIALS_CSV, newline="") as stream:
            ranked = sorted((row for row in csv.DictReader(stream) if row.get("best_epoch")),
                            key=lambda row: int(row["rank"]))
    except OSError as error:
        raise VisiontuneError(f"{folder / record.TRIALS_CSV}: cannot read ({error.strerror or error})") from None
    if len(ranked) < count:
        raise VisiontuneError(f"{folder}: {len(ranked)} trials with a validation result, fewer than the {count} "
                              "asked for")
    configs = {t["trial_id"]: t["config"] for t in _read_json(folder / record.TRIALS_JSON, "the trial summaries")}
    states = []
    for row in ranked[:count]:
        checkpoint = best_checkpoint_file(folder / row["path"], metric, int(float(row["best_epoch"])))
        if checkpoint is None:
            raise VisiontuneError(f"{folder / row['path']}: no checkpoint of trial {row['trial_id']}'s best epoch "
                                  "(deleted as outside the top-k, or the search is still running)")
        states.append((configs[row["trial_id"]], runs.load_checkpoint(checkpoint)["trainer"]["model"]))
    return states


def _run_members(folder: Path, ensemble: int | str) -> tuple[dict[str, Any], list[tuple[dict[str, Any], Any]]]:
    """(card as recorded, [(config, weights)]) of a train run folder, a search's top trials, or
    (``ensemble="cv"``) the fold models of the winner of its latest cross-validation."""
    if ensemble == CV_ENSEMBLE:
        if not (folder / record.SEARCH_FILE).is_file():
            raise VisiontuneError(f"{folder}: --ensemble cv needs a search run folder that analyze --cv has "
                                  "cross-validated")
        from visiontune.analysis.crossval import cv_members

        search = _read_json(folder / record.SEARCH_FILE, "the search's record")
        return (search.get("data") or {}).get("card"), cv_members(folder)[1]
    if (folder / record.SEARCH_FILE).is_file():
        search = _read_json(folder / record.SEARCH_FILE, "the search's record")
        return (search.get("data") or {}).get("card"), _ranked_trial_states(folder, search["metric"], ensemble)
    if (folder / record.BEST_CHECKPOINT).is_file():
        if ensemble != 1:
            raise VisiontuneError(f"{folder}: a train run holds one model; --ensemble needs a search run folder")
        card = (_read_json(folder / record.DATA_FILE, "the run's data record") or {}).get("card")
        config = _read_json(folder / record.CONFIG_FILE, "the run's configuration")
        return card, [(config, runs.load_checkpoint(folder / record.BEST_CHECKPOINT))]
    raise VisiontuneError(f"{folder}: holds neither {record.SEARCH_FILE} (a search), {record.BEST_CHECKPOINT} (a train "
                          f"run) nor {MODEL_CARD} (an exported model)")


def load_members(path: str | os.PathLike, ensemble: int | str = 1) -> tuple[DatasetCard, list[TrainConfig], list[nn.Module]]:
    """The card, configurations and models (eval mode, on the CPU) of a train run or a search's
    ``ensemble`` best trials."""
    folder = Path(path)
    if not folder.is_dir():
        raise VisiontuneError(f"{folder}: not a run folder (a train or search run's, or an exported model's)")
    if ensemble != CV_ENSEMBLE and (not isinstance(ensemble, int) or ensemble < 1):
        raise VisiontuneError(f"--ensemble must be a number of trials (at least 1) or 'cv', not {ensemble}")
    card_data, states = _run_members(folder, ensemble)
    if not card_data:
        raise VisiontuneError(f"{folder}: no data-set card recorded (a run from before visiontune recorded one)")
    card = DatasetCard.from_dict(card_data)
    configs, models = [], []
    for config_data, weights in states:
        config = config_from_dict(dict(config_data), f"{folder} configuration", card)
        model = build_model(config.model_name(card.kind), card.kind, **config.model_kwargs(card))
        model.load_state_dict(weights)
        configs.append(config)
        models.append(model.eval())
    return card, configs, models


def load_model(path: str | os.PathLike, device: str = "auto", ensemble: int | str = 1) -> Predictor:
    """The model of a ``train`` run folder, of a search's best trial by validation (``ensemble``:
    the mean of its best K; ``"cv"``: the fold models of its cross-validation's winner), or of a
    folder ``visiontune export`` wrote."""
    folder = Path(path)
    target = resolve_device(device)
    if (folder / MODEL_CARD).is_file():
        from visiontune.export import load_exported

        return load_exported(folder, target)
    card, configs, models = load_members(folder, ensemble)
    network = fold_batchnorm(Ensemble(models, [config.tta for config in configs]).eval()).to(target)
    convolutional = any(isinstance(module, nn.Conv2d) for module in network.modules())
    if convolutional:  # channels-last, as the Trainer evaluates: oneDNN and cuDNN run convolutions faster so
        network.to(memory_format=torch.channels_last)

    def forward(images: torch.Tensor) -> torch.Tensor:
        return network(images.contiguous(memory_format=torch.channels_last) if convolutional else images)
    return Predictor(card, configs[0], target, str(folder), forward, members=len(models))


# -------------------------------------------------------------------------------------- inputs
def collect_inputs(paths: Iterable[str | os.PathLike]) -> tuple[list[tuple[str, Any, str]], dict[str, int]]:
    """(name, path or bytes, path relative to its input) of every image under the given files,
    folders (recursively) and zips, in order; skipped files counted by reason."""
    found: list[tuple[str, Any, str]] = []
    skipped: dict[str, int] = {}

    def consider(name: str, source: Any, relative: str) -> None:
        reason = imageio.skip_reason(os.path.basename(name))
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
        else:
            found.append((name, source, relative))

    for given in paths:
        path = Path(given)
        if path.is_dir():
            # os.walk and strings: Path objects cost more than decoding a small image, per file
            top = str(path)
            walked = sorted(os.path.join(folder, name) for folder, _, names in os.walk(top) for name in names)
            for file in walked:
                consider(file, Path(file), os.path.relpath(file, top).replace(os.sep, "/"))
        elif path.suffix.lower() == ".zip" and path.is_file():
            with zipfile.ZipFile(path) as archive:
                for member in sorted(n for n in archive.namelist() if not n.endswith("/")):
                    consider(f"{path}:{member}", archive.read(member), member)
        elif path.is_file():
            consider(str(path), path, path.name)
        else:
            raise DataError(f"{path}: no such file or folder")
    return found, skipped


def _mask_name(relative: str) -> str:
    """A mask's file name: the image's path inside its input, folders joined by "__", as PNG."""
    return os.path.splitext(relative)[0].replace("/", "__") + ".png"


def labelled_layout(inputs: Sequence[str], predictor: Predictor):
    """The training layout (``data.folders``) of a single labelled input of the model's kind, or
    None: predictions of such a folder are also scored against its labels."""
    from visiontune.data.folders import find_layout

    if len(inputs) != 1 or not (Path(inputs[0]).is_dir() or str(inputs[0]).lower().endswith((".zip", ".yaml"))):
        return None
    try:
        layout = find_layout(inputs[0])
    except DataError:
        return None
    if layout.kind != predictor.card.kind:
        return None
    if layout.kind == "classification" and not set(layout.classes) <= set(predictor.card.classes):
        return None  # class folders the model does not know: predicted, not scored
    return layout


def _layout_files(layout) -> list[tuple[str, Any, str, Any]]:
    """(name, path or bytes, path inside the input, label) of every image of a labelled layout."""
    from visiontune.data.folders import IMAGES_DIR
    from visiontune.data.images import FolderSource

    def source(relative: str) -> Any:
        return layout.source.root / relative if isinstance(layout.source, FolderSource) else layout.source.read_bytes(relative)

    def inside(relative: str) -> str:  # "test/images/a.png" -> "test/a.png": the masks go in masks/ anyway
        return "/".join(part for part in relative.split("/") if part != IMAGES_DIR)

    return [(layout.source.describe(item.image), source(item.image), inside(item.image), item.target)
            for item in layout.items]


def score(predictor: Predictor, layout, labels: list[Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """The predictions of a labelled folder against its labels: accuracy, balanced accuracy, macro
    F1 and per-class recall, or per-image Dice per class (mean over images, then classes), per-class
    and pooled Dice, with the masks at each image's own size."""
    card = predictor.card
    if card.kind == "classification":
        accumulator = metrics.AccuracyAccumulator(card.num_classes, card.classes)
        truth = torch.tensor([card.classes.index(layout.classes[label]) for label in labels])
        predicted = torch.tensor([card.classes.index(result["class"]) for result in results])
        accumulator.update(torch.nn.functional.one_hot(predicted, card.num_classes).float(), truth)
    else:
        accumulator = metrics.DiceAccumulator(card.num_classes, card.classes)
        for label, result in zip(labels, results):
            where = layout.source.describe(label)
            mask = torch.from_numpy(imageio.decode_mask(layout.source.read_bytes(label), where, None)).long()[None]
            prediction = torch.from_numpy(result["mask"]).long()
            one_hot = torch.nn.functional.one_hot(prediction, card.num_classes).movedim(-1, 0)[None].float()
            accumulator.update(one_hot, mask)
    return {"images": len(results), **accumulator.aggregate()}


SMALL_CHUNK = 16  # files per chunk where no process pool decodes (the pool's chunks: data.decode.CHUNK)


def network_workers(device: torch.device) -> int:
    """How many chunks go through the model at once. On a CPU, one per intra-op thread, each
    chunk on a single thread: the small convolutions of these models scale badly across threads
    (an FCN2 on 60 images of 128x128 on 2 cores: 0.11-0.13 s as one batch on 2 threads, 0.09 s
    as two halves on one thread each), and the decoding and writing of the chunks overlap too.
    On a GPU, two: one chunk decodes while the other's batch runs."""
    return max(1, torch.get_num_threads()) if device.type == "cpu" else 2


def _decode_work(predictor: Predictor, files: list[tuple[str, Any, str, Any]]):
    """Callables, one per chunk of ``files``, each giving (indices into ``files``, uint8 model
    inputs, own (height, width), (index, error) of the unreadable): a large folder decodes in the
    loader's pool of processes (``data.decode``), running ahead; otherwise each callable decodes
    its chunk where it is called."""
    from visiontune.data.decode import CHUNK, Decoder
    from visiontune.data.images import FolderSource

    channels, size = (1 if predictor.card.channels == 1 else 3), tuple(predictor.card.image_size)
    keep = predictor.card.keep_channels

    def model_inputs(indices: list[int], decoded) -> tuple[list[int], np.ndarray, np.ndarray, list[tuple[int, str]]]:
        images, sizes, kept, failed = decoded
        return ([indices[i] for i in kept], images[:, keep] if keep else images, sizes,
                [(indices[i], message) for i, message in failed])

    def from_memory(indices: list[int]):
        images, sizes, kept, failed = [], [], [], []
        for position, index in enumerate(indices):
            name, data, _, _ = files[index]
            try:
                images.append(imageio.decode_image(data, name, channels, size))
                sizes.append(imageio.image_header(data, name)[:2])
                kept.append(position)
            except DataError as error:
                failed.append((position, str(error)))
        stacked = np.stack(images) if images else np.empty((0, channels, *size), np.uint8)
        return model_inputs(indices, (stacked, np.array(sizes).reshape(-1, 2), kept, failed))

    paths = [index for index, (_, source, _, _) in enumerate(files) if not isinstance(source, bytes)]
    in_memory = [index for index, (_, source, _, _) in enumerate(files) if isinstance(source, bytes)]
    spec = ("folder", "/")
    with Decoder(FolderSource(Path("/")), len(paths)) as decoder:
        step = CHUNK if decoder.pool is not None else SMALL_CHUNK
        chunks = [paths[start:start + step] for start in range(0, len(paths), step)]
        names = [[os.path.abspath(files[index][1]) for index in chunk] for chunk in chunks]
        if decoder.pool is not None:  # map submits every chunk at once: the pool runs ahead of the model
            for chunk, decoded in zip(chunks, decoder.pool.map(
                    imageio.model_inputs_chunk, [spec] * len(chunks), names, [channels] * len(chunks),
                    [size] * len(chunks))):
                yield lambda chunk=chunk, decoded=decoded: model_inputs(chunk, decoded)
        else:
            for chunk, chunk_names in zip(chunks, names):
                yield lambda chunk=chunk, chunk_names=chunk_names: model_inputs(
                    chunk, imageio.model_inputs_chunk(spec, chunk_names, channels, size))
    for start in range(0, len(in_memory), SMALL_CHUNK):
        yield lambda chunk=in_memory[start:start + SMALL_CHUNK]: from_memory(chunk)


def _in_order(executor, work: Callable[[Any], Any], items: Iterable[Any], ahead: int):
    """``work(item)`` of each item, run in ``executor`` with at most ``ahead`` items in flight,
    yielded in order."""
    from collections import deque

    pending: deque = deque()
    for item in items:
        pending.append(executor.submit(work, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def prediction_lines(out: Path, classification: bool, limit: int = 10) -> list[str]:
    """The first ``limit`` predictions written into ``out``, one line each, for the terminal:
    the file and its class with its probability, or its mask and the pixels of each class."""
    with open(out / (PREDICTIONS_CSV if classification else AREAS_CSV), newline="") as stream:
        rows = list(csv.DictReader(stream))
    lines = []
    for row in rows[:limit]:
        if classification:
            lines.append(f"{row['file']}: {row['class']} (p {float(row['p_' + row['class']]):.4f})")
        else:
            areas = ", ".join(f"{key.removeprefix('pixels_')} {value}" for key, value in row.items()
                              if key.startswith("pixels_"))
            lines.append(f"{row['file']}: {row['mask']} (pixels: {areas})")
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more")
    return lines


def predict_files(predictor: Predictor, inputs: list[str], out: Path, batch_size: int = 256,
                  overlay: bool = False) -> dict[str, Any]:
    """Predict every image under ``inputs`` into ``out``; returns counts (predicted, errors,
    skipped) and, for a labelled folder, its ``scores``. Chunks of files are decoded, run through
    the model and written by ``network_workers`` threads at once (Pillow and torch let go of the
    GIL while they work); on a CPU each runs torch on one thread, restored afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    from visiontune.data.decode import ProgressBar

    layout = labelled_layout(inputs, predictor)
    if layout is not None:
        files, skipped = _layout_files(layout), dict(layout.skipped)
    else:
        found, skipped = collect_inputs(inputs)
        files = [(name, source, relative, None) for name, source, relative in found]
    if not files:
        raise DataError(f"no image files in {', '.join(map(str, inputs))}")
    out.mkdir(parents=True, exist_ok=True)
    classification = predictor.card.kind == "classification"
    if not classification:
        (out / MASKS_DIR).mkdir(exist_ok=True)
        if overlay:
            (out / OVERLAYS_DIR).mkdir(exist_ok=True)

    def run_chunk(decode: Callable[[], Any]) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, str]]]:
        indices, images, sizes, failed = decode()
        done = []
        for start in range(0, len(indices), batch_size):
            own = [tuple(int(v) for v in size) for size in sizes[start:start + batch_size]]
            results = predictor.results(predictor.probabilities(
                np.ascontiguousarray(images[start:start + batch_size])), own)
            done.extend(zip(indices[start:start + batch_size], results))
        if not classification:
            for index, result in done:
                name, source, relative, _ = files[index]
                (out / MASKS_DIR / _mask_name(relative)).write_bytes(imageio.encode_png_array(result["mask"]))
                if overlay:
                    data = source if isinstance(source, bytes) else Path(source).read_bytes()
                    (out / OVERLAYS_DIR / _mask_name(relative)).write_bytes(_overlay(data, name, result["mask"]))
        return done, failed

    bar = ProgressBar(len(files), "predicting")
    failures: dict[int, str] = {}
    rows: dict[int, list[Any]] = {}
    kept: dict[int, dict[str, Any]] = {}
    workers = network_workers(predictor.device)
    threads = torch.get_num_threads()
    if predictor.device.type == "cpu":
        torch.set_num_threads(1)  # before the workers start: new threads take torch's setting then
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="visiontune-predict") as executor:
            for done, failed in _in_order(executor, run_chunk, _decode_work(predictor, files), workers + 1):
                failures.update(failed)
                for index, result in done:
                    name, _, relative, _ = files[index]
                    if classification:
                        rows[index] = [name, result["class"], *(f"{p:.6f}" for p in result["probabilities"])]
                    else:
                        rows[index] = [name, f"{MASKS_DIR}/{_mask_name(relative)}", *result["areas"].values()]
                    if layout is not None:
                        kept[index] = result if classification else {"mask": result["mask"]}
                bar.advance(len(done) + len(failed))
    finally:
        torch.set_num_threads(threads)
    classes = predictor.card.classes
    header = (["file", "class", *(f"p_{c}" for c in classes)] if classification
              else ["file", "mask", *(f"pixels_{c}" for c in classes)])
    _write_csv(out / (PREDICTIONS_CSV if classification else AREAS_CSV), header, [rows[i] for i in sorted(rows)])
    errors = [(files[index][0], failures[index]) for index in sorted(failures)]
    if errors:
        _write_csv(out / ERRORS_CSV, ["file", "error"], errors)
    counts: dict[str, Any] = {"predicted": len(rows), "errors": len(errors), "skipped": sum(skipped.values())}
    if layout is not None and kept:
        order = sorted(kept)
        counts["scores"] = score(predictor, layout, [files[i][3] for i in order], [kept[i] for i in order])
        (out / SCORES_FILE).write_text(json.dumps(counts["scores"], indent=2) + "\n")
    return counts


def _overlay(data: bytes, where: str, mask: np.ndarray) -> bytes:
    """The image in grey with each foreground class painted over it in its colour (half opaque)."""
    from PIL import Image

    from visiontune.analysis.plots import PALETTE

    grey = imageio.decode_image(data, where, 1, None)[0].astype(np.float32)
    picture = np.repeat(grey[..., None], 3, axis=2)
    for index in range(1, int(mask.max(initial=0)) + 1):
        colour = np.array([int(PALETTE[(index - 1) % len(PALETTE)][i:i + 2], 16) for i in (1, 3, 5)], np.float32)
        inside = mask == index
        picture[inside] = 0.5 * picture[inside] + 0.5 * colour
    return imageio.encode_png(Image.fromarray(picture.round().astype(np.uint8)))


def _write_csv(path: Path, header: list[str], rows: list[Sequence[Any]]) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(temporary, path)


__all__ = ["Predictor", "collect_inputs", "load_model", "predict_files"]
