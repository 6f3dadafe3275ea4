"""The MNIST and WARWICK loaders: every layout they accept, and a one-line error for bad input."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (idx_bytes, mnist_png_files, png_bytes, warwick_files, write_mnist_idx, write_tree,
                     write_zip)

from visiontune.data import load_splits
from visiontune.data.mnist import IDX_FILES, IMAGE_MAGIC, download_mnist, load_mnist
from visiontune.data.warwick import load_warwick
from visiontune.errors import DataError


# ------------------------------------------------------------------------------------ MNIST
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_gzipped_or_raw(tmp_path, gz):
    arrays = write_mnist_idx(tmp_path / "mnist", gz=gz)
    train, test, source = load_mnist(tmp_path, download=False)
    assert source == str(tmp_path / "mnist")
    assert train.images.shape == (30, 1, 28, 28) and test.images.shape == (10, 1, 28, 28)
    assert np.array_equal(train.images[:, 0].numpy(), arrays["train_images"])
    assert np.array_equal(test.targets.numpy(), arrays["test_labels"])


def test_mnist_idx_in_torchvision_raw_layout(tmp_path):
    write_mnist_idx(tmp_path / "MNIST" / "raw")
    train, _, source = load_mnist(tmp_path, download=False)
    assert len(train) == 30 and source.endswith("MNIST/raw")


def test_mnist_png_folders_and_zip_give_the_same_data(tmp_path):
    files = mnist_png_files(per_digit=2)
    train_f, test_f, _ = load_mnist(write_tree(tmp_path / "folder", files), download=False)
    write_zip(tmp_path / "zipped" / "MNIST.zip", files)
    train_z, test_z, source = load_mnist(tmp_path / "zipped", download=False)
    assert source.endswith("MNIST.zip:MNIST")
    assert len(train_f) == 20 and len(test_f) == 20
    assert torch.equal(train_f.images, train_z.images) and torch.equal(train_f.targets, train_z.targets)
    assert sorted(train_f.targets.tolist()) == sorted(list(range(10)) * 2)
    # the data dir may also be the zip itself
    train_d, _, _ = load_mnist(tmp_path / "zipped" / "MNIST.zip", download=False)
    assert torch.equal(train_d.images, train_z.images)


def test_mnist_wrong_magic_number(tmp_path):
    write_mnist_idx(tmp_path / "mnist")
    # an image file saved under the label file's name
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros((10, 28, 28), np.uint8), IMAGE_MAGIC)))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: wrong magic number 0x00000803, expected 0x00000801"):
        load_mnist(tmp_path, download=False)


def test_mnist_counts_disagree(tmp_path):
    write_mnist_idx(tmp_path / "mnist")
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(29, np.uint8), 0x801)))
    with pytest.raises(DataError, match="train has 30 images but 29 labels"):
        load_mnist(tmp_path, download=False)


def test_mnist_truncated_idx_and_truncated_gzip(tmp_path):
    write_mnist_idx(tmp_path / "mnist", gz=False)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte: holds .*truncated or corrupt"):
        load_mnist(tmp_path, download=False)
    write_mnist_idx(tmp_path / "gz" / "mnist", gz=True)
    path = tmp_path / "gz" / "mnist" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: cannot read"):
        load_mnist(tmp_path / "gz", download=False)


def test_mnist_missing_file_and_nothing_found(tmp_path):
    write_mnist_idx(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path, download=False)
    with pytest.raises(DataError, match="MNIST not found"):
        load_mnist(tmp_path / "empty", download=False)


def test_mnist_png_errors(tmp_path):
    files = mnist_png_files(per_digit=1)
    files["MNIST/Train/3/0.png"] = files["MNIST/Train/3/0.png"][:40]
    write_tree(tmp_path, files)
    with pytest.raises(DataError, match=r"MNIST/Train/3/0.png: unreadable PNG"):
        load_mnist(tmp_path, download=False)
    files = mnist_png_files(per_digit=1)
    files["MNIST/Test/7/0.png"] = png_bytes(np.zeros((20, 20), np.uint8))
    write_tree(tmp_path / "b", files)
    with pytest.raises(DataError, match=r"Test/7/0.png: is 20x20, expected 28x28"):
        load_mnist(tmp_path / "b", download=False)
    empty = {k: v for k, v in mnist_png_files(per_digit=1).items() if "/Test/" not in k}
    write_tree(tmp_path / "c", empty)
    (tmp_path / "c" / "MNIST" / "Test").mkdir()
    with pytest.raises(DataError, match="MNIST/Test: no PNG images"):
        load_mnist(tmp_path / "c", download=False)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def loopback_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_mnist_download_from_a_mirror_verifies_checksums(tmp_path, loopback_server, monkeypatch):
    served, url = loopback_server
    arrays = write_mnist_idx(served)
    checksums = {}
    for key, (stem, _) in IDX_FILES.items():
        checksums[stem] = hashlib.md5(gzip.decompress((served / f"{stem}.gz").read_bytes())).hexdigest()
    # unreachable first mirror (closed port on loopback), working second one
    download_mnist(tmp_path / "data" / "mnist", ["http://127.0.0.1:9/", url], checksums)
    train, _, _ = load_mnist(tmp_path / "data", download=False)
    assert np.array_equal(train.images[:, 0].numpy(), arrays["train_images"])


def test_mnist_download_with_bad_checksum_leaves_nothing(tmp_path, loopback_server):
    served, url = loopback_server
    write_mnist_idx(served)
    checksums = {stem: "0" * 32 for stem, _ in IDX_FILES.values()}
    target = tmp_path / "data" / "mnist"
    with pytest.raises(DataError, match="checksum mismatch"):
        download_mnist(target, [url], checksums)
    assert list(target.iterdir()) == []


def test_mnist_missing_offline_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONTUNE_MNIST_MIRRORS", "http://127.0.0.1:9/")
    with pytest.raises(DataError, match="MNIST not found .* and the download failed"):
        load_mnist(tmp_path, download=True)


# ---------------------------------------------------------------------------------- WARWICK
def test_warwick_folder_and_zip_give_the_same_data(tmp_path):
    files = warwick_files()
    train_f, test_f, source = load_warwick(write_tree(tmp_path / "folder", files))
    assert source.endswith("WARWICK")
    assert train_f.images.shape == (6, 2, 32, 32) and train_f.images.dtype == torch.uint8
    assert test_f.targets.shape == (3, 32, 32) and set(test_f.targets.unique().tolist()) <= {0, 1}
    write_zip(tmp_path / "zipped" / "WARWICK.zip", files)
    train_z, _, _ = load_warwick(tmp_path / "zipped")
    assert torch.equal(train_f.images, train_z.images) and torch.equal(train_f.targets, train_z.targets)
    train_d, _, _ = load_warwick(tmp_path / "zipped" / "WARWICK.zip")
    assert torch.equal(train_d.targets, train_z.targets)


def test_warwick_keeps_stain_channels_and_maps_labels(tmp_path):
    files = warwick_files(train=1, test=1, size=8)
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0], image[..., 1] = 10, 200
    label = np.zeros((8, 8), np.uint8)
    label[2:5, 2:5] = 255
    files["WARWICK/Train/image_01.png"], files["WARWICK/Train/label_01.png"] = png_bytes(image), png_bytes(label)
    train, _, _ = load_warwick(write_tree(tmp_path, files))
    assert train.images[0, 0].unique().tolist() == [10] and train.images[0, 1].unique().tolist() == [200]
    assert int(train.targets[0].sum()) == 9


def test_warwick_accepts_zero_one_labels(tmp_path):
    files = warwick_files(train=1, test=1, size=8)
    files["WARWICK/Test/label_01.png"] = png_bytes(np.eye(8, dtype=np.uint8))
    _, test, _ = load_warwick(write_tree(tmp_path, files))
    assert int(test.targets.sum()) == 8


def _bad_warwick(tmp_path: Path, change) -> Path:
    files = warwick_files(train=3, test=2, size=16)
    change(files)
    return write_tree(tmp_path, files)


@pytest.mark.parametrize("change, message", [
    (lambda f: f.update({"WARWICK/Train/image_02.png": f["WARWICK/Train/image_02.png"][:50]}),
     r"Train/image_02.png: unreadable PNG"),
    (lambda f: f.update({"WARWICK/Train/label_03.png": png_bytes(np.zeros((8, 8), np.uint8))}),
     r"Train/label_03.png: is 8x8 but its image is 16x16"),
    (lambda f: f.update({"WARWICK/Test/label_01.png": png_bytes(np.full((16, 16), 17, np.uint8))}),
     r"Test/label_01.png: label values must be 0/255 \(or 0/1\), found 17"),
    (lambda f: f.pop("WARWICK/Train/label_02.png"), r"Train/image_02.png: has no matching label_02.png"),
    (lambda f: f.pop("WARWICK/Test/image_02.png"), r"Test/label_02.png: has no matching image_02.png"),
    (lambda f: [f.pop(k) for k in list(f) if "/Test/" in k], r"WARWICK/Test: missing folder"),
    (lambda f: f.update({"WARWICK/Train/image_02.png": png_bytes(np.zeros((16, 16), np.uint8))}),
     r"Train/image_02.png: expected an RGB image"),
    (lambda f: f.update({"WARWICK/Test/image_02.png": png_bytes(np.zeros((24, 24, 3), np.uint8)),
                         "WARWICK/Test/label_02.png": png_bytes(np.zeros((24, 24), np.uint8))}),
     r"Test/image_02.png: is 24x24, expected 16x16 like the others"),
])
def test_warwick_bad_input_errors(tmp_path, change, message):
    root = _bad_warwick(tmp_path, change)
    with pytest.raises(DataError, match=message):
        load_warwick(root)


def test_warwick_empty_folder_and_not_found(tmp_path):
    (tmp_path / "WARWICK" / "Train").mkdir(parents=True)
    (tmp_path / "WARWICK" / "Test").mkdir()
    with pytest.raises(DataError, match=r"WARWICK/Train: no image_NN.png / label_NN.png files"):
        load_warwick(tmp_path)
    with pytest.raises(DataError, match="WARWICK not found"):
        load_warwick(tmp_path / "nothing-here")
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="broken.zip: not a readable zip archive"):
        load_warwick(tmp_path / "broken.zip")


# ------------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_real_mnist_splits(mnist_root):
    splits = load_splits("mnist", data_dir=mnist_root)
    assert splits.sizes() == {"train": 55000, "val": 5000, "test": 10000}
    assert splits.train.images.dtype == torch.uint8 and splits.train.images.shape[1:] == (1, 28, 28)
    # the split is a partition of the 60,000 training images: label counts add up
    counts = torch.bincount(torch.cat([splits.train.targets, splits.val.targets]), minlength=10)
    assert counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.mark.slow
def test_real_warwick_splits(warwick_root):
    splits = load_splits("warwick", data_dir=warwick_root)
    assert splits.sizes() == {"train": 68, "val": 17, "test": 60}
    assert splits.train.images.shape[1:] == (2, 128, 128)
    gland_fraction = splits.test.targets.float().mean().item()
    assert 0.3 < gland_fraction < 0.7  # "about half the pixels are gland"
