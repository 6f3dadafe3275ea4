"""A user's own images: every layout read, checked, split, described and cached (generated files)."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import idx_bytes, mnist_png_files, write_tree
from visiontune.cli import main
from visiontune.data import load_splits
from visiontune.data import placement
from visiontune.data.mnist import IMAGE_MAGIC, LABEL_MAGIC
from visiontune.errors import DataError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    """Each test its own per-user cache folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "visiontune" / "datasets"


def encode(array: np.ndarray, fmt: str = "PNG", palette: bool = False) -> bytes:
    if palette:  # a palette image whose indices are the array's values
        image = Image.frombytes("P", (array.shape[1], array.shape[0]), array.tobytes())
        image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    else:
        image = Image.fromarray(array)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


RNG = np.random.default_rng(0)


def grey(h: int = 20, w: int = 30) -> np.ndarray:
    return RNG.integers(0, 256, (h, w), dtype=np.uint8)


def colour(h: int = 20, w: int = 30) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def classification_files(prefix: str = "", counts=(10, 6, 4)) -> dict[str, bytes]:
    """Three classes of 20x30 images in four formats, grey and colour, with OS leftovers."""
    files = {}
    formats = [("png", "PNG"), ("jpg", "JPEG"), ("bmp", "BMP"), ("tif", "TIFF")]
    for label, count in zip(("cat", "ant", "bee"), counts):
        for index in range(count):
            suffix, fmt = formats[index % 4]
            array = grey() if index % 2 else colour()
            files[f"{prefix}{label}/{index}.{suffix}"] = encode(array, fmt)
    files[f"{prefix}cat/.DS_Store"] = b"\0"
    files[f"{prefix}ant/Thumbs.db"] = b"\0"
    files[f"{prefix}bee/notes.txt"] = b"not an image"
    return files


def segmentation_files(prefix: str = "", count: int = 10, sizes=((24, 32), (24, 32), (32, 40))) -> dict[str, bytes]:
    """Images with palette masks of 3 classes (0, 1, 2), some sizes differing, masks named *_mask."""
    files = {}
    for index in range(count):
        h, w = sizes[index % len(sizes)]
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[: h // 2, : w // 2] = 1
        mask[h // 2:, w // 2:] = 2
        files[f"{prefix}images/img{index}.png"] = encode(colour(h, w))
        files[f"{prefix}masks/img{index}_mask.png"] = encode(mask, palette=True)
    return files


def test_class_folders_without_a_split_are_read_checked_and_split_stratified(tmp_path):
    root = write_tree(tmp_path / "pets", classification_files())
    splits = load_splits(str(root), split_seed=3)
    card = splits.card
    assert card.kind == "classification" and card.classes == ["ant", "bee", "cat"] and card.name == "pets"
    assert card.channels == 3 and card.image_size == [20, 30]  # mixed grey and colour -> RGB; size kept
    assert tuple(splits.train.images.shape[1:]) == (3, 20, 30) and splits.train.images.dtype == torch.uint8
    assert card.skipped == {"system or hidden files": 2, "non-image files": 1}
    assert any("grey and" in choice and "RGB" in choice for choice in card.choices)
    sizes = splits.sizes()
    assert sum(sizes.values()) == 20 and sizes["test"] == 4 and sizes["val"] == 2  # 20% test, 10% of the rest
    # stratified: every class in every split in proportion (cat 10, ant 6, bee 4)
    assert card.counts["test"] == {"ant": 1, "bee": 1, "cat": 2}
    assert card.counts["train"]["cat"] + card.counts["val"]["cat"] + card.counts["test"]["cat"] == 10
    again = load_splits(str(root), split_seed=3)  # seeded: the same split (now from the cache)
    assert torch.equal(again.test.images, splits.test.images) and torch.equal(again.val.targets, splits.val.targets)
    assert card.split["how"].startswith("test carved: 20% of the images, stratified by class")


def test_train_val_test_folders_are_used_as_given_and_a_class_missing_from_test_is_reported(tmp_path):
    files = {**classification_files("train/"), **classification_files("val/", (2, 2, 2)),
             **{k: v for k, v in classification_files("test/", (3, 3, 3)).items() if "/bee/" not in k}}
    splits = load_splits(str(write_tree(tmp_path / "given", files)))
    assert splits.sizes() == {"train": 20, "val": 6, "test": 6}
    assert splits.card.counts["test"] == {"ant": 3, "bee": 0, "cat": 3}
    assert "test/ has no images of bee" in splits.card.choices
    assert "validation as given" in splits.card.split["how"] and "test as given" in splits.card.split["how"]


def test_segmentation_with_palette_masks_and_differing_sizes(tmp_path):
    splits = load_splits(str(write_tree(tmp_path / "cells", segmentation_files(count=10))))
    card = splits.card
    assert card.kind == "segmentation" and card.classes == ["background", "class 1", "class 2"]
    assert card.image_size == [24, 32]  # the median height and width
    assert tuple(splits.train.targets.shape[1:]) == (24, 32)
    values = torch.cat([s.targets.flatten() for s in (splits.train, splits.val, splits.test)]).unique().tolist()
    assert values == [0, 1, 2]  # nearest-neighbour resizing keeps class indices
    assert card.original_sizes == {"min": [24, 32], "median": [24, 32], "max": [32, 40]}
    assert sum(card.counts["train"].values()) == len(splits.train) * 24 * 32  # mask pixels per class


def test_split_segmentation_folders_with_binary_tiff_masks(tmp_path):
    files = {}
    for split, count in (("train", 6), ("test", 3)):
        for index in range(count):
            mask = np.where(RNG.random((16, 16)) > 0.5, 255, 0).astype(np.uint8)
            files[f"{split}/images/{index}.jpg"] = encode(colour(16, 16), "JPEG")
            files[f"{split}/masks/{index}_gt.tif"] = encode(mask, "TIFF")
    splits = load_splits(str(write_tree(tmp_path / "glands", files)))
    assert splits.sizes() == {"train": 5, "val": 1, "test": 3}
    assert set(splits.train.targets.unique().tolist()) == {0, 1}  # 0/255 read as 0/1


def test_a_zip_reads_like_the_folder_and_dataset_yaml_is_applied(tmp_path):
    files = {**classification_files("pets/"), "pets/dataset.yaml": b"name: my pets\nchannels: 1\nimage_size: 16x24\n"
             b"val_fraction: 0.25\naugmentations: [rotate]\n"}
    folder = write_tree(tmp_path / "unzipped", files) / "pets"
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as stream:
        for name, data in files.items():
            stream.writestr(name, data)
    from_folder, from_zip = load_splits(str(folder / "dataset.yaml")), load_splits(str(archive))
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(from_folder, part).images, getattr(from_zip, part).images)
    card = from_zip.card
    assert card.name == "my pets" and card.channels == 1 and card.image_size == [16, 24]
    assert card.augmentations == ["rotate"] and card.split["sizes"]["val"] == 4  # 25% of the 16 left after test


def test_the_cache_serves_a_second_load_and_a_changed_file_invalidates_it(tmp_path, private_cache):
    root = write_tree(tmp_path / "pets", classification_files())
    first = load_splits(str(root))
    entries = [path for path in private_cache.iterdir() if not path.name.startswith(".")]
    assert "decoded and cached" in first.card.choices and len(entries) == 1
    assert sorted(p.name for p in entries[0].iterdir()) == ["images.npy", "meta.json", "original_sizes.npy",
                                                          "targets.npy"]
    assert first.train.folder == str(entries[0])  # the splits map the entry's files: no copy in memory
    assert isinstance(first.train.stored_images, np.memmap)
    assert first.train.stored_images is first.val.stored_images is first.test.stored_images
    second = load_splits(str(root))
    assert any("read from the cache" in c for c in second.card.choices)
    assert torch.equal(first.train.images, second.train.images)
    (root / "cat" / "0.png").write_bytes(encode(np.zeros((20, 30), dtype=np.uint8)))
    third = load_splits(str(root))
    assert "decoded and cached" in third.card.choices and third.card.fingerprint != first.card.fingerprint


def test_a_data_set_the_disk_cannot_hold_is_refused_before_decoding(tmp_path, capsys, private_cache, monkeypatch):
    root = write_tree(tmp_path / "pets", classification_files())
    monkeypatch.setattr(placement, "_free_disk", lambda folder: 1000)
    code = main(["data", "check", str(root)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "GB free" in err and "--image-size" in err
    assert not private_cache.exists()


def test_data_check_over_the_memory_budget_says_the_disk_placement_serves_it(tmp_path, capsys, private_cache):
    root = write_tree(tmp_path / "pets", classification_files())
    assert main(["data", "check", str(root), "--data-memory-gb", "0.000001"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("data:"))
    assert "memory-mapped cache on disk" in line and "over the data memory budget" in line
    assert "needs memory" in line and "for 1 trial" in line and "disk" in line
    assert main(["data", "check", str(root)]) == 0  # within the default budget: shared memory
    assert "in shared host memory" in capsys.readouterr().out


def test_data_check_prints_the_fingerprint_and_the_choices(tmp_path, capsys):
    root = write_tree(tmp_path / "cells", segmentation_files(count=10))
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    for expected in ("segmentation", "3 classes", "train 7", "sizes: min 24x32, median 24x32, max 32x40",
                     "mean", "mask pixels", "choices:", "resized to 24x32"):
        assert expected in out, (expected, out)


def _bad(tmp_path: Path, files: dict[str, bytes]) -> Path:
    return write_tree(tmp_path / "bad", files)


def _truncated() -> bytes:
    return encode(colour())[:60]


@pytest.mark.parametrize("files, message", [
    ({"only/0.png": encode(grey()), "only/1.png": encode(grey())}, "found 1 class folder (only); classification needs at least two"),
    ({"a/0.png": encode(grey()), "b/readme.txt": b"x"}, "b: a class folder with no images"),
    ({"a/0.png": encode(grey()), "b/0.png": _truncated()}, "b/0.png: unreadable image"),
    ({"images/x.png": encode(colour()), "masks/y.png": encode(grey())}, "x.png: no mask for this image"),
    ({"images/x.png": encode(colour()), "masks/x.png": encode(np.zeros((20, 30), np.uint8)),
      "masks/z_mask.png": encode(grey())}, "z_mask.png: a mask with no image"),
    ({"images/x.png": encode(colour()), "masks/x.png": encode(np.full((20, 30), 3, np.uint8)),
      "dataset.yaml": b"classes: [background, cell]\n"}, "mask value 3 is outside the 2 classes"),
    ({"images/x.png": encode(colour()), "masks/x.png": encode(np.zeros((10, 10), np.uint8))},
     "mask is 10x10 but its image"),
    ({"a/0.png": encode(grey()), "b/0.png": encode(grey()), "dataset.yaml": b"kind: [oops\n"}, "not valid YAML"),
    ({"a/0.png": encode(grey()), "b/0.png": encode(grey()), "dataset.yaml": b"colour: true\n"}, "unknown key 'colour'"),
    ({"a/0.png": encode(grey()), "b/0.png": encode(grey()), "dataset.yaml": b"channels: [0, 16]\n"},
     "channels: expected a list of distinct channel indices"),
    ({"a/0.png": encode(grey()), "b/0.png": encode(grey()), "dataset.yaml": b"channels: [0, 5]\n"},
     "channels: [0, 5] in dataset.yaml names channel 5, but the images have 1 (0 to 0)"),
    ({"train/a/0.png": encode(grey()), "train/b/0.png": encode(grey()), "test/c/0.png": encode(grey())},
     "class folder c not in"),
    ({"loose.png": encode(grey())}, "cannot tell the kind of data set"),
])
def test_bad_input_is_a_one_line_error_and_nothing_is_written(tmp_path, capsys, private_cache, files, message):
    root = _bad(tmp_path, files)
    code = main(["data", "check", str(root)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err and message in err, err
    assert not private_cache.exists()


def test_the_course_mnist_layout_with_3000_training_images_loads_with_the_default_split(tmp_path):
    root = write_tree(tmp_path, mnist_png_files(per_digit=300))
    splits = load_splits("mnist", data_dir=root)
    assert splits.sizes() == {"train": 2700, "val": 300, "test": 3000}  # 10%: the fixed 5,000 does not fit
    assert any("10%" in choice for choice in splits.card.choices)


def test_built_in_tasks_get_their_card_from_the_same_mechanism(digits_splits, glands_splits):
    assert digits_splits.card.classes == [str(d) for d in range(10)] and digits_splits.card.channels == 1
    assert glands_splits.card.classes == ["background", "gland"] and glands_splits.card.image_size == [128, 128]
    assert "flip" not in digits_splits.card.augmentations and "flip" in glands_splits.card.augmentations
    record = digits_splits.describe()
    assert record["sizes"] == {"train": 500, "val": 100, "test": 200} and record["card"]["fingerprint"]
    json.dumps(record)  # plain data


def _write_fashion_mnist(root: Path) -> None:
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, array, magic in (("train-images-idx3-ubyte", RNG.integers(0, 256, (40, 28, 28)), IMAGE_MAGIC),
                               ("train-labels-idx1-ubyte", np.arange(40) % 10, LABEL_MAGIC),
                               ("t10k-images-idx3-ubyte", RNG.integers(0, 256, (10, 28, 28)), IMAGE_MAGIC),
                               ("t10k-labels-idx1-ubyte", np.arange(10), LABEL_MAGIC)):
        (raw / stem).write_bytes(idx_bytes(array, magic))


def test_fashion_mnist_and_cifar10_read_through_torchvision_from_local_files(tmp_path, monkeypatch, capsys):
    import hashlib

    import torchvision.datasets

    _write_fashion_mnist(tmp_path)
    fashion = load_splits("fashion-mnist", data_dir=tmp_path, download=False)
    assert fashion.sizes() == {"train": 36, "val": 4, "test": 10} and fashion.card.classes[0] == "T-shirt/top"
    # CIFAR-10's python pickles, written here; torchvision checks each file's MD5 against its list
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    sums = {}
    for name in names:
        batch = {"data": RNG.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": list(range(4))}
        (folder / name).write_bytes(pickle.dumps(batch))
        sums[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    meta_sum = hashlib.md5((folder / "batches.meta").read_bytes()).hexdigest()
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "train_list", [[n, sums[n]] for n in names[:5]])
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "test_list", [["test_batch", sums["test_batch"]]])
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                                                 "md5": meta_sum})
    assert main(["data", "check", "cifar10", "--data-dir", str(tmp_path), "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "cifar10: classification, 10 classes" in out and "3 channels, 32x32" in out
    cifar = load_splits("cifar10", data_dir=tmp_path, download=False)
    assert tuple(cifar.train.images.shape[1:]) == (3, 32, 32) and cifar.sizes()["test"] == 4


def test_a_missing_torchvision_set_without_downloads_is_a_one_line_error(tmp_path, capsys):
    assert main(["data", "check", "kmnist", "--data-dir", str(tmp_path), "--no-download"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "kmnist:" in err and "--no-download" in err


def test_gzipped_raw_files_are_not_needed_unpacked_for_the_default_mnist(tmp_path):
    """(The built-in MNIST reader is unchanged: gzipped IDX files in ROOT/mnist.)"""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for stem, array, magic in (("train-images-idx3-ubyte", RNG.integers(0, 256, (30, 28, 28)), IMAGE_MAGIC),
                               ("train-labels-idx1-ubyte", np.arange(30) % 10, LABEL_MAGIC),
                               ("t10k-images-idx3-ubyte", RNG.integers(0, 256, (10, 28, 28)), IMAGE_MAGIC),
                               ("t10k-labels-idx1-ubyte", np.arange(10), LABEL_MAGIC)):
        (folder / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(array, magic)))
    splits = load_splits("mnist", data_dir=tmp_path)
    assert splits.sizes() == {"train": 27, "val": 3, "test": 10}


def test_a_large_folder_decodes_in_worker_processes_to_the_same_arrays(tmp_path, monkeypatch, capsys):
    from visiontune.data import decode

    root = write_tree(tmp_path / "pets", classification_files())
    in_process = load_splits(str(root))
    monkeypatch.setattr(decode, "PARALLEL_FROM", 8)  # 20 files: a pool of processes, in chunks of 3
    monkeypatch.setattr(decode, "CHUNK", 3)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other-cache"))
    pooled = load_splits(str(root))
    assert "decoded and cached" in pooled.card.choices
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(in_process, part).images, getattr(pooled, part).images)
    assert "decoding images [" in capsys.readouterr().err  # the progress bar
    # A zip: each worker opens the archive itself. Sharing the parent's open archive (and so its
    # file offset) garbles concurrent reads: 200 files in chunks of 20 failed that way.
    archive = tmp_path / "digits.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for index in range(200):
            bundle.writestr(f"digits/{'ab'[index % 2]}/{index}.png", encode(grey(16, 16)))
    monkeypatch.setattr(decode, "PARALLEL_FROM", 10_000)
    serial = load_splits(str(archive))
    monkeypatch.setattr(decode, "PARALLEL_FROM", 8)
    monkeypatch.setattr(decode, "CHUNK", 20)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "zip-cache"))
    zipped = load_splits(str(archive))
    assert "decoded and cached" in zipped.card.choices
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(serial, part).images, getattr(zipped, part).images)
    monkeypatch.setattr(decode, "CHUNK", 3)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "third-cache"))
    (root / "bee" / "1.jpg").write_bytes(b"\xff\xd8\xff broken")  # a broken file, found by a worker
    with pytest.raises(DataError, match="bee/1.jpg: unreadable image"):
        load_splits(str(root))


def test_a_size_the_header_sample_missed_falls_back_to_reading_every_header(tmp_path, monkeypatch):
    from visiontune.data import user

    root = write_tree(tmp_path / "cells", segmentation_files(count=10))  # 3 of the 10 images are 32x40
    everything = load_splits(str(root))
    monkeypatch.setattr(user, "SAMPLE", 2)  # images 0 and 9: both 24x32, so one pass is tried first
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other-cache"))
    sampled = load_splits(str(root))
    assert torch.equal(everything.train.images, sampled.train.images)
    assert torch.equal(everything.test.targets, sampled.test.targets)
    assert sampled.card.choices == everything.card.choices


def test_the_one_pass_decoder_gives_pillows_pixels_for_every_png_kind_and_jpeg(tmp_path):
    """The plain-PNG fast path (chunks walked here, pixels by Pillow's C decoder, pasted into one
    sheet) and the fallback for everything else read what ``Image.open(...).convert`` reads."""
    from visiontune import image_files
    from visiontune.file_sources import FolderSource

    arrays = {"grey.png": grey(16, 12), "rgb.png": colour(16, 12), "photo.jpg": colour(16, 12),
              "rgba.png": RNG.integers(0, 256, (16, 12, 4), dtype=np.uint8)}
    files = {name: encode(array, "JPEG" if name.endswith("jpg") else "PNG") for name, array in arrays.items()}
    files["palette.png"] = encode(RNG.integers(0, 3, (16, 12), dtype=np.uint8), palette=True)
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 65536, (16, 12), dtype=np.uint16)).save(buffer, format="PNG")  # 16-bit grey
    files["deep.png"] = buffer.getvalue()
    root = write_tree(tmp_path / "mixed", files)
    names = sorted(set(files) - {"deep.png"})
    images, headers, uniform = image_files.uniform_images_chunk(FolderSource(root), names, 3, (16, 12), False)
    assert uniform and images.shape == (len(names), 3, 16, 12)
    for index, name in enumerate(names):
        with Image.open(root / name) as image:
            expected = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
        assert np.array_equal(images[index], expected), name
        assert tuple(headers[index][:2]) == (16, 12)
    single, _, uniform = image_files.uniform_images_chunk(FolderSource(root), ["grey.png"], 1, (16, 12), True)
    assert uniform and np.array_equal(single[0, 0], arrays["grey.png"])
    # 16 bits are kept, so not in the 8-bit one-pass way: the caller takes the general one
    _, _, uniform = image_files.uniform_images_chunk(FolderSource(root), ["grey.png", "deep.png"], 1, (16, 12), True)
    assert not uniform
    _, _, uniform = image_files.uniform_images_chunk(FolderSource(root), ["grey.png", "rgb.png"], 1, (16, 12), True)
    assert not uniform  # a colour file where all were taken for grey: the caller reads headers first
    corrupt = bytearray(files["rgb.png"])
    corrupt[60] ^= 0xFF  # inside the pixel data: the C decoder's error, as a one-line DataError
    (root / "rgb.png").write_bytes(bytes(corrupt))
    with pytest.raises(DataError, match="rgb.png: unreadable image"):
        image_files.uniform_images_chunk(FolderSource(root), ["rgb.png"], 3, (16, 12), False)


def test_a_folder_data_set_trains_through_its_card_with_no_task_name_looked_up(tmp_path):
    """The engine takes kind, classes, channels and size from the card: a 3-class colour set
    whose name is no built-in task trains, and its model has 3 input channels and 3 outputs."""
    from visiontune.config import config_from_dict
    from visiontune.engine import Trainer

    files = {f"{label}/{index}.png": encode(colour(16, 16)) for label in ("ant", "bee", "cat") for index in range(8)}
    splits = load_splits(str(write_tree(tmp_path / "insects", files)))
    assert splits.card.name == "insects" and splits.card.channels == 3 and splits.card.image_size == [16, 16]
    config = config_from_dict({"task": str(tmp_path / "insects"), "blocks": 2, "width": 4, "epochs": 1,
                               "precision": "fp32"}, card=splits.card)
    trainer = Trainer(config, splits, device="cpu")
    first = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 3 and trainer.model(splits.val.images.float() / 255).shape == (len(splits.val), 3)
    trainer.fit_epoch()
    assert set(trainer.evaluate("val")) >= {"val/loss", trainer.kind.val_metric}
    with pytest.raises(Exception, match="augmentation 'flip' does not suit insects"):
        config_from_dict({"task": "insects", "augment": "flip"}, card=splits.card)
