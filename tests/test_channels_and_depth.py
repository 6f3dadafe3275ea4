"""Images as microscopes keep them (generated files): 1 to 16 channels (TIFF pages or samples,
one file per channel as nnU-Net keeps them), 16-bit and floating-point pixels kept in their type,
normalised by the data set's statistics identically in training, predict and the exported graph."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from helpers import builtin_card, write_tree
from visiontune import image_files, record
from visiontune.cli import main
from visiontune.data import load_splits
from visiontune.data.normalisation import Normalise, fit
from visiontune.data.splits import ImageSet
from visiontune.errors import DataError
from visiontune.predict import AREAS_CSV, SCORES_FILE
from visiontune.trained import load_model

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "visiontune" / "datasets"


def tiff(array: np.ndarray, **options) -> bytes:
    """TIFF bytes; several planes as pages unless ``options`` say otherwise."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **({"photometric": "minisblack"} | options))
    return buffer.getvalue()


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def fluorescence(size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Four 16-bit channels, (4, H, W), and the mask of a square whose signal is in channel 2
    (900 counts above a background of 500: an 8-bit per-image stretch would flatten it); channel
    0 is bright noise up to several thousand counts."""
    mask = np.zeros((size, size), np.uint8)
    y, x = RNG.integers(2, size - 10, 2)
    mask[y:y + 8, x:x + 8] = 1
    image = RNG.normal(500, 60, (4, size, size))
    image[2] += 900.0 * mask
    image[0] += RNG.normal(0, 3000, (size, size)).clip(0)
    return image.clip(0, 65535).astype(np.uint16), mask


def fluorescence_files(train: int = 24, test: int = 8, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    files = {}
    for split, count in (("train", train), ("test", test)):
        for index in range(count):
            image, mask = fluorescence()
            files[f"{split}/images/f{index}.tif"] = tiff(image)  # four pages ("SYX")
            files[f"{split}/masks/f{index}.png"] = png(mask * 255)
    files.update(extra or {})
    return files


# ------------------------------------------------------------------------------------- reading
def test_tiff_pages_samples_and_alpha_are_read_as_the_channels_they_are():
    pages = RNG.integers(0, 65536, (5, 12, 10), dtype=np.uint16)
    data = tiff(pages, photometric="minisblack")
    assert image_files.image_header(data, "p.tif") == (12, 10, 5, 1)  # 16-bit: PIXEL_TYPES index 1
    assert np.array_equal(image_files.read_pixels(data, "p.tif"), pages)
    samples = RNG.integers(0, 65536, (12, 10, 6), dtype=np.uint16)
    data = tiff(samples, photometric="minisblack", planarconfig="contig")
    assert np.array_equal(image_files.read_pixels(data, "s.tif"), samples.transpose(2, 0, 1))
    # four 16-bit planes tagged "RGBA" (tifffile's default until now): all four are channels
    four = RNG.integers(0, 65536, (4, 12, 10), dtype=np.uint16)
    tagged = tiff(four, photometric="rgb", planarconfig="separate", extrasamples=["unassalpha"])
    assert np.array_equal(image_files.read_pixels(tagged, "f.tif"), four)
    # an 8-bit RGBA image loses its alpha, as a PNG does; without an alpha tag all four stay
    rgba = RNG.integers(0, 256, (12, 10, 4), dtype=np.uint8)
    alpha = tiff(rgba, photometric="rgb", extrasamples=["unassalpha"])
    assert np.array_equal(image_files.read_pixels(alpha, "a.tif"), rgba[..., :3].transpose(2, 0, 1))
    assert image_files.read_pixels(tiff(rgba, photometric="minisblack", planarconfig="contig"), "x.tif").shape[0] == 4
    floats = RNG.normal(0, 1, (2, 12, 10)).astype(np.float64)
    assert image_files.read_pixels(tiff(floats, photometric="minisblack"), "f.tif").dtype == np.float32
    signed = RNG.integers(-500, 500, (12, 10), dtype=np.int16)
    stored = image_files.read_pixels(tiff(signed), "i.tif")
    assert stored.dtype == np.float32 and np.array_equal(stored[0], signed.astype(np.float32))
    # LZW needs imagecodecs in tifffile; Pillow decodes it instead, to the same pixels
    rgb = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="TIFF", compression="tiff_lzw")
    assert np.array_equal(image_files.read_pixels(buffer.getvalue(), "lzw.tif"), rgb.transpose(2, 0, 1))
    deep = RNG.integers(0, 65536, (12, 10), dtype=np.uint16)
    assert np.array_equal(image_files.read_pixels(png(deep), "d.png")[0], deep)  # 16-bit grey PNG, every bit


@pytest.mark.parametrize("data, message", [
    (tiff(np.zeros((2, 3, 8, 8), np.uint16)), "a TIFF of shape (2, 3, 8, 8)"),
    (tiff(np.zeros((17, 8, 8), np.uint8), photometric="minisblack"), "17 channels; visiontune reads at most 16"),
    (tiff(np.zeros((8, 8, 3), np.uint16), photometric="rgb")[:200], "unreadable image"),
])
def test_tiffs_beyond_2d_and_16_channels_are_one_line_errors(data, message):
    with pytest.raises(DataError, match="x.tif: ") as raised:
        image_files.read_pixels(data, "x.tif")
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_conform_replicates_grey_converts_rgb_and_never_narrows_the_type():
    grey16 = RNG.integers(0, 65536, (1, 6, 6), dtype=np.uint16)
    assert np.array_equal(image_files.conform(grey16, 3, None, "uint16"), np.repeat(grey16, 3, axis=0))
    eight = RNG.integers(0, 256, (1, 6, 6), dtype=np.uint8)
    widened = image_files.conform(eight, 1, None, "float32")
    assert widened.dtype == np.float32 and np.array_equal(widened, eight.astype(np.float32))
    with pytest.raises(DataError, match="16-bit pixels, but the data set's images are 8-bit"):
        image_files.conform(grey16, 1, None, "uint8")
    with pytest.raises(DataError, match="4 channels, but the data set's images have 3"):
        image_files.conform(np.zeros((4, 6, 6), np.uint16), 3, None, "uint16")
    resized = image_files.conform(np.full((2, 6, 6), 40000, np.uint16), 2, (3, 3), "uint16")
    assert resized.dtype == np.uint16 and resized.shape == (2, 3, 3) and (resized == 40000).all()


# ------------------------------------------------------------------------------- normalisation
def test_zscore_statistics_are_exact_for_16_bit_and_match_numpy_for_float():
    images = RNG.gamma(2.0, 900.0, (30, 3, 16, 16)).clip(0, 65535).astype(np.uint16)
    data = ImageSet(images, np.zeros(30, np.int64)).subset(np.arange(4, 30))  # a split's rows only
    normalisation, mean, std = fit(data, None)
    assert normalisation["method"] == "zscore"
    values = images[4:].astype(np.float64)
    for c in range(3):
        plane = values[:, c].ravel()
        low, high = np.percentile(plane, [0.5, 99.5], method="inverted_cdf")
        clipped = plane.clip(low, high)
        assert (normalisation["low"][c], normalisation["high"][c]) == (low, high)
        assert normalisation["mean"][c] == pytest.approx(clipped.mean(), rel=1e-6)
        assert normalisation["std"][c] == pytest.approx(clipped.std(), rel=1e-6)
        assert (mean[c], std[c]) == (pytest.approx(plane.mean(), rel=1e-6), pytest.approx(plane.std(), rel=1e-6))
    floats = RNG.normal(3.0, 2.0, (10, 2, 8, 8)).astype(np.float32)
    normalisation, _, _ = fit(ImageSet(floats, np.zeros(10, np.int64)), None)
    for c in range(2):  # a small set is sampled whole: numpy's figures
        plane = floats[:, c].astype(np.float64).ravel()
        low, high = np.percentile(plane, [0.5, 99.5], method="inverted_cdf")
        assert normalisation["low"][c] == pytest.approx(low, rel=1e-6)
        assert normalisation["std"][c] == pytest.approx(plane.clip(low, high).std(), rel=1e-5)
    module = Normalise(normalisation, 2)
    x = torch.from_numpy(floats[:3])
    expected = (np.clip(floats[:3], np.array(normalisation["low"])[None, :, None, None],
                        np.array(normalisation["high"])[None, :, None, None])
                - np.array(normalisation["mean"])[None, :, None, None]) / np.array(normalisation["std"])[None, :, None, None]
    assert np.allclose(module(x).numpy(), expected, atol=1e-5)
    with pytest.raises(DataError, match="normalise: scale applies to 8- and 16-bit images"):
        fit(ImageSet(floats, np.zeros(10, np.int64)), "scale")


def test_8_bit_images_keep_pixel_over_255_so_the_built_in_numbers_stay():
    for task in ("mnist", "warwick"):
        card = builtin_card(task)
        assert card.pixel_type == "uint8" and card.normalisation == {"method": "scale", "divisor": 255.0}
    x = torch.arange(256, dtype=torch.float32).reshape(1, 1, 16, 16)
    assert torch.equal(Normalise()(x), torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).float().div_(255.0))


# --------------------------------------------------------------------------------- end to end
def test_a_16_bit_four_channel_set_trains_and_predict_and_exports_reproduce_its_test_dice(tmp_path, capsys):
    root = write_tree(tmp_path / "cells", fluorescence_files())
    assert main(["data", "check", str(root)]) == 0
    shown = capsys.readouterr().out
    assert "4 channels" in shown and "16-bit images: stored as uint16" in shown and "clip to the 0.5th-99.5th" in shown
    splits = load_splits(str(root))
    assert splits.train.stored_images.dtype == np.uint16 and splits.card.channels == 4
    assert splits.card.normalisation["method"] == "zscore"
    run = tmp_path / "run"
    assert main(["train", str(root), "--epochs", "30", "--lr", "0.01", "--precision", "fp32", "--out", str(run),
                 "--quiet"]) == 0
    recorded = json.loads((run / record.RESULT_FILE).read_text())["test/dice"]
    assert recorded > 0.6  # it learned the square in channel 2
    assert main(["predict", str(run), str(root / "test"), "--out", str(tmp_path / "pred")]) == 0
    assert json.loads((tmp_path / "pred" / SCORES_FILE).read_text())["dice"] == pytest.approx(recorded, abs=1e-6)
    model = load_model(run)
    image = tifffile.imread(root / "test" / "images" / "f0.tif")
    by_array = model.predict([image.transpose(1, 2, 0)])[0]["mask"]  # an (H, W, C) array, as a file is
    assert np.array_equal(by_array, model.predict([root / "test" / "images" / "f0.tif"])[0]["mask"])
    for fmt in ("onnx", "pt2"):
        out = tmp_path / f"export-{fmt}"
        assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
        card = json.loads((out / record.MODEL_CARD).read_text())
        assert card["preprocessing"]["dtype"] == "uint16" and card["preprocessing"]["normalise"]["in_graph"]
        pred = tmp_path / f"pred-{fmt}"
        assert main(["predict", str(out), str(root / "test"), "--out", str(pred)]) == 0
        assert json.loads((pred / SCORES_FILE).read_text())["dice"] == pytest.approx(recorded, abs=1e-4)
    # the pt2 graph on raw pixel values, outside visiontune's model layer: the same probabilities
    graph = torch.export.load(str(tmp_path / "export-pt2" / "model.pt2")).module()
    pixels = torch.from_numpy(image.astype(np.float32))[None]
    assert torch.allclose(graph(pixels), model.forward(pixels), atol=1e-5)


def test_channels_in_dataset_yaml_select_and_reorder_a_tiffs_channels(tmp_path):
    files = fluorescence_files(train=6, test=2, extra={"dataset.yaml": b"channels: [2, 0]\n"})
    root = write_tree(tmp_path / "picked", files)
    splits = load_splits(str(root))
    card = splits.card
    assert card.channels == 2 and card.decode_channels == 4 and card.keep_channels == [2, 0]
    first = tifffile.imread(root / "test" / "images" / "f0.tif")
    assert np.array_equal(splits.test.images[0].numpy(), first[[2, 0]])
    assert len(card.normalisation["mean"]) == 2


@pytest.mark.parametrize("files, message", [
    ({"train/images/a.tif": tiff(np.zeros((4, 8, 8), np.uint16)), "train/masks/a.png": png(np.zeros((8, 8), np.uint8)),
      "train/images/b.tif": tiff(np.zeros((2, 8, 8), np.uint16), photometric="minisblack"),
      "train/masks/b.png": png(np.zeros((8, 8), np.uint8))},
     "channels, but"),
    ({"a/1.tif": tiff(np.zeros((4, 8, 8), np.uint16)), "b/1.tif": tiff(np.zeros((4, 8, 8), np.uint16)),
      "dataset.yaml": b"channels: 3\n"}, "4 channels; channels: 3 in dataset.yaml converts grey and RGB images only"),
    ({"a/1.tif": tiff(np.zeros((4, 8, 8), np.uint16)), "b/1.tif": tiff(np.zeros((4, 8, 8), np.uint16)),
      "dataset.yaml": b"channels: [0, 4]\n"}, "names channel 4, but the images have 4 (0 to 3)"),
    ({"a/1.tif": tiff(np.ones((2, 8, 8), np.float32)), "b/1.tif": tiff(np.ones((2, 8, 8), np.float32)),
      "dataset.yaml": b"normalise: scale\n"}, "normalise: scale applies to 8- and 16-bit images"),
    ({"a/1.png": png(np.zeros((8, 8), np.uint8)), "b/1.png": png(np.zeros((8, 8), np.uint8)),
      "dataset.yaml": b"normalise: minmax\n"}, "normalise: expected scale or zscore, not 'minmax'"),
    ({"a/1.png": png(np.zeros((8, 8), np.uint8)), "b/1.tif": tiff(np.zeros((2, 3, 8, 8), np.uint16))},
     "a TIFF of shape (2, 3, 8, 8)"),
])
def test_broken_channel_and_depth_variants_are_one_line_errors(tmp_path, capsys, private_cache, files, message):
    code = main(["data", "check", str(write_tree(tmp_path / "broken", files))])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not private_cache.exists() or not any(private_cache.iterdir())  # nothing half-written


# ------------------------------------------------------------------------- nnU-Net, per channel
def nnunet_channel_files(cases: int = 10, tests: int = 3) -> dict[str, bytes]:
    """nnU-Net v2 cases of two 16-bit channel files each (the nucleus in channel 1), labels with an
    ``ignore`` value (2) on each nucleus' rim."""
    files = {}
    for split, count in (("Tr", cases), ("Ts", tests)):
        for index in range(count):
            mask = np.zeros((16, 16), np.uint8)
            y, x = RNG.integers(1, 9, 2)
            mask[y:y + 6, x:x + 6] = 2
            mask[y + 1:y + 5, x + 1:x + 5] = 1
            background = RNG.normal(1000, 80, (16, 16))
            nucleus = background + 1500.0 * (mask > 0)
            case = f"case{split}{index:03d}"
            files[f"images{split}/{case}_0000.png"] = png(background.astype(np.uint16))
            files[f"images{split}/{case}_0001.png"] = png(nucleus.astype(np.uint16))
            files[f"labels{split}/{case}.png"] = png(mask)
    files["dataset.json"] = json.dumps({"channel_names": {"0": "membrane", "1": "DAPI"},
                                        "labels": {"background": 0, "nucleus": 1, "ignore": 2},
                                        "numTraining": cases, "file_ending": ".png"}).encode()
    return files


def test_nnunet_cases_of_one_file_per_channel_with_an_ignore_label_train_and_predict(tmp_path, capsys):
    root = write_tree(tmp_path / "Dataset902_Nuclei", nnunet_channel_files())
    splits = load_splits(str(root))
    card = splits.card
    assert card.channels == 2 and card.channel_files and card.classes == ["background", "nucleus"]
    assert card.pixel_type == "uint16" and card.normalisation["method"] == "zscore"
    first = np.stack([np.asarray(Image.open(root / "imagesTs" / f"caseTs000_000{c}.png")) for c in (0, 1)])
    assert np.array_equal(splits.test.images[0].numpy(), first)  # channel files stacked in order
    truth = np.asarray(Image.open(root / "labelsTs" / "caseTs000.png"))
    assert np.array_equal(splits.test.targets[0].numpy(), np.where(truth == 2, image_files.IGNORE_LABEL, truth))
    assert set(card.counts["train"]) == {"background", "nucleus"}  # the ignored rim is no class
    run = tmp_path / "run"
    assert main(["train", str(root), "--epochs", "2", "--precision", "fp32", "--out", str(run), "--quiet"]) == 0
    new = write_tree(tmp_path / "new", nnunet_channel_files(cases=4, tests=0))
    assert main(["predict", str(run), str(new), "--out", str(tmp_path / "scored")]) == 0  # its labels score it
    assert json.loads((tmp_path / "scored" / SCORES_FILE).read_text())["images"] == 4
    plain = new / "imagesTr"  # unlabelled channel files: grouped by case
    assert main(["predict", str(run), str(plain), "--out", str(tmp_path / "plain")]) == 0
    with open(tmp_path / "plain" / AREAS_CSV, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 4 and all("caseTr00" in row["file"] for row in rows)
    one_by_one = sorted(str(path) for path in plain.glob("*.png"))  # as a shell's imagesTr/*.png gives them
    assert main(["predict", str(run), *one_by_one, "--out", str(tmp_path / "listed")]) == 0
    with open(tmp_path / "listed" / AREAS_CSV, newline="") as stream:
        assert list(csv.DictReader(stream)) == rows  # the same four cases, named alike, the same areas
    (plain / "caseTr003_0001.png").unlink()
    capsys.readouterr()
    assert main(["predict", str(run), str(plain), "--out", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "case caseTr003 has channel files _0000; the model reads 2" in err, err


@pytest.mark.parametrize("change, message", [
    (lambda f: f.pop("imagesTr/caseTr001_0001.png"), "caseTr001_0000.png: this case has no _0001.png file, but other "
                                                     "cases have one file per channel (_0000 to _0001)"),
    (lambda f: [f.pop(f"imagesTr/caseTr00{i}_0001.png") for i in range(4)],  # every case one grey file
     "1 channel, but channels: 2 in dataset.yaml says every image has 2"),
    (lambda f: f.update({"imagesTr/caseTr002_0001.png": png(np.zeros((16, 16, 3), np.uint8))}),
     "caseTr002_0001.png: a channel file with 3 channels"),
    (lambda f: f.update({"imagesTr/caseTr002_0001.png": png(np.zeros((12, 16), np.uint16))}),
     "a case's channel files must share one size"),
    (lambda f: f.update({"imagesTr/caseTr002_0002.png": png(np.zeros((16, 16), np.uint16))}),
     "caseTr002_0002.png: a channel file beyond the 2 channel_names"),
])
def test_broken_per_channel_nnunet_cases_are_one_line_errors(tmp_path, capsys, private_cache, change, message):
    files = nnunet_channel_files(cases=4, tests=0)
    change(files)
    code = main(["data", "check", str(write_tree(tmp_path / "broken", files))])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and message in err, err
    assert not private_cache.exists() or not any(private_cache.iterdir())


@pytest.mark.slow
def test_a_search_over_a_16_bit_multichannel_folder_ranks_trials_and_its_best_predicts(ray_address, tmp_path):
    root = write_tree(tmp_path / "cells", fluorescence_files(train=16, test=4))
    storage = tmp_path / "runs"
    assert main(["search", str(root), "--trials", "2", "--max-epochs", "2", "--storage", str(storage),
                 "--name", "cells", "--no-report"]) == 0
    run = storage / "cells"
    assert json.loads((run / "search.json").read_text())
    model = load_model(run)
    assert model.card.channels == 4 and model.card.pixel_type == "uint16"
    assert main(["predict", str(run), str(root / "test"), "--out", str(tmp_path / "pred")]) == 0
    assert json.loads((tmp_path / "pred" / SCORES_FILE).read_text())["images"] == 4
