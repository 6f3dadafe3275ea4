"""Where trials keep the data (data.placement): one uint8 copy per machine, batches made float on
the device, the same numbers from every placement, the footprint checked before anything starts."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from visiontune.batches import DeviceBatches, HostBatches
from visiontune.config import TrainConfig
from visiontune.data import cache, placement
from visiontune.engine import Trainer
from visiontune.errors import DataError

CONFIGS = {
    "digits": dict(task="mnist", model="cnn", width=8, batch_size=32, lr=3e-3, augment="rotate,shift"),
    "glands": dict(task="warwick", model="fcn2", width=4, batch_size=8, lr=1e-2, augment="flip,rot90"),
}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "visiontune" / "datasets"


def run_epochs(splits, task: str, where: str, epochs: int = 2) -> tuple[list[float], float]:
    config = TrainConfig(**CONFIGS[task], epochs=epochs, precision="fp32", seed=5)
    trainer = Trainer(config, splits, device="cpu", placement=where)
    losses = [trainer.fit_epoch()["train/loss"] for _ in range(epochs)]
    return losses, trainer.evaluate("val")[trainer.kind.val_metric]


@pytest.mark.parametrize("task", ["digits", "glands"])
def test_every_placement_gives_the_same_losses_and_validation_figure(task, digits_splits, glands_splits):
    splits = digits_splits if task == "digits" else glands_splits
    on_disk = placement.spill(splits)
    assert isinstance(on_disk.train.stored_images, np.memmap) and on_disk.train.folder is not None
    reference = run_epochs(splits, task, "device")
    for data, where in ((splits, "host"), (on_disk, "disk")):
        losses, figure = run_epochs(data, task, where)
        assert losses == pytest.approx(reference[0], abs=1e-6) and figure == pytest.approx(reference[1], abs=1e-6)


def test_splits_share_one_stored_copy_and_batches_are_the_only_copies(digits_splits):
    train, val = digits_splits.train, digits_splits.val
    assert train.stored_images is val.stored_images  # carved by index, not copied
    images, targets = train.gather([4, 0, 2])
    stored = train.stored_rows([4, 0, 2])
    assert torch.equal(images, torch.from_numpy(train.stored_images[stored]))
    assert torch.equal(targets, torch.from_numpy(train.stored_targets[stored]))
    assert images.dtype == torch.uint8 and not np.shares_memory(images.numpy(), train.stored_images)
    batches = list(HostBatches(train, torch.device("cpu")).in_order(64))
    assert batches[0][0].dtype == torch.float32 and float(batches[0][0].max()) <= 1.0
    assert sum(len(b[0]) for b in batches) == len(train)


def test_an_in_memory_set_pickles_its_arrays_out_of_band_and_a_cached_one_as_its_folder(digits_splits):
    buffers: list = []
    pickle.dumps(digits_splits.train, protocol=5, buffer_callback=buffers.append)
    # the images and targets travel as buffers Ray's object store shares zero-copy on a node
    assert sum(memoryview(b).nbytes for b in buffers) >= digits_splits.train.stored_images.nbytes
    mapped = placement.spill(digits_splits).train
    text = pickle.dumps(mapped, protocol=5)
    assert len(text) < len(mapped) * 8 + 2000  # its row indices and folder, not its images
    received = pickle.loads(text)
    assert isinstance(received.stored_images, np.memmap) and torch.equal(received.images, digits_splits.train.images)


def test_the_plan_picks_device_host_or_disk_by_size_and_refuses_what_does_not_fit(digits_splits):
    size = placement.data_bytes(digits_splits)
    assert size == sum(part.nbytes for part in (digits_splits.train, digits_splits.test))  # train/val shared
    roomy = dict(available=int(100e9))
    assert placement.plan(digits_splits, **roomy).where == "host"
    assert placement.plan(digits_splits, data_memory_gb=size / 2e9, **roomy).where == "disk"
    gpu = placement.plan(digits_splits, gpus_per_trial=0.25, gpu_memory=int(24e9), **roomy)
    assert gpu.where == "device" and gpu.device_bytes == size
    small_gpu = placement.plan(digits_splits, gpus_per_trial=0.25, gpu_memory=size, **roomy)
    assert small_gpu.where == "host"  # streamed from the host, never a CUDA out-of-memory error
    with pytest.raises(DataError, match="--placement device: each trial would hold .* use --placement host") as big:
        placement.plan(digits_splits, placement="device", gpus_per_trial=0.25, gpu_memory=size, **roomy)
    assert "\n" not in str(big.value)  # asked for, a placement past a trial's GPU share is refused, not tried
    assert placement.plan(digits_splits, placement="device", gpus_per_trial=0.25, gpu_memory=4 * size,
                          **roomy).where == "device"
    four = placement.plan(digits_splits, trials_per_node=4, **roomy)
    assert four.memory_bytes == size + 4 * placement.TRIAL_PROCESS_BYTES
    assert placement.plan(digits_splits, placement="disk", trials_per_node=4, **roomy).memory_bytes == \
        4 * placement.TRIAL_PROCESS_BYTES  # the page cache holds the data; the kernel may drop it
    with pytest.raises(DataError, match="need .* of memory, but .* is available") as refused:
        placement.plan(digits_splits, trials_per_node=8, available=int(2e9))
    assert "\n" not in str(refused.value)


def _receive(folder: str, log: str, start) -> None:
    """In a process of another 'node' (its own cache folder): map the set, copying it once."""
    import os

    os.environ["XDG_CACHE_HOME"] = str(Path(log).parent / "node-cache")
    data = pickle.loads(Path(folder, "shipped.pickle").read_bytes())

    def fetch(key: str, target: Path) -> None:
        with open(log, "a") as stream:
            stream.write(f"{os.getpid()}\n")
        staging = target.with_name(f".{key}.{os.getpid()}")  # appears whole, as RunStore.download_folder does
        shutil.copytree(Path(folder) / key, staging)
        staging.rename(target)

    start.wait()
    received = placement.received(data, fetch)
    assert received.train.images.shape[0] == len(received.train)


def test_a_node_without_the_cached_data_copies_it_once_for_all_its_trials(digits_splits, tmp_path):
    spilled = placement.spill(digits_splits)
    storage = tmp_path / "storage"
    for part in placement.stores(spilled):
        shutil.copytree(part.folder, storage / Path(part.folder).name)
        shutil.rmtree(part.folder)  # the driver's copy is gone: this "node" must fetch
    (storage / "shipped.pickle").write_bytes(pickle.dumps(spilled))
    log = tmp_path / "fetches.log"
    context = multiprocessing.get_context("fork")
    start = context.Event()
    trials = [context.Process(target=_receive, args=(str(storage), str(log), start)) for _ in range(3)]
    for trial in trials:
        trial.start()
    start.set()
    for trial in trials:
        trial.join(60)
    assert [trial.exitcode for trial in trials] == [0, 0, 0]
    entries = len(placement.stores(spilled))
    assert len(log.read_text().splitlines()) == entries  # each entry copied once, not once per trial
    node_cache = tmp_path / "node-cache" / "visiontune" / "datasets"
    assert sorted(p.name for p in node_cache.iterdir() if p.is_dir() and not p.name.startswith(".")) == \
        sorted(Path(p.folder).name for p in placement.stores(spilled))
    copies = (node_cache / cache.COPIES_LOG).read_text().splitlines()
    assert sorted(line.split()[0] for line in copies) == sorted(Path(p.folder).name for p in placement.stores(spilled))


def test_an_entry_is_written_whole_or_not_at_all(private_cache):
    with pytest.raises(RuntimeError):
        with cache.EntryWriter("k") as writer:
            writer.array(cache.IMAGES, (4, 1, 2, 2), np.uint8)[:] = 7
            raise RuntimeError("interrupted")
    assert not private_cache.exists() or not any(private_cache.iterdir())
    with cache.EntryWriter("k") as writer:
        writer.put(cache.IMAGES, np.ones((4, 1, 2, 2), np.uint8))
        writer.put(cache.TARGETS, np.arange(4))
        folder = writer.commit({"what": "test"})
    arrays, meta, found = cache.load_entry("k")
    assert found == folder and meta["what"] == "test" and isinstance(arrays[cache.IMAGES], np.memmap)
    assert [p.name for p in private_cache.iterdir()] == ["k"]


def test_a_disk_placed_search_records_its_placement_and_trains(ray_address, tmp_path):
    from visiontune.search import SearchOptions, run_search

    lines: list[str] = []
    summary = run_search(SearchOptions(task="mnist", space="mnist-cnn", synthetic=True, trials=2, max_epochs=2,
                                       storage=str(tmp_path / "runs"), name="d", report=False,
                                       data_memory_gb=1e-6, searcher="random", scheduler="none"),
                         progress=lines.append)
    recorded = json.loads((tmp_path / "runs" / "d" / "search.json").read_text())["placement"]
    assert recorded["where"] == "disk" and recorded["trials_per_node"] == 2
    assert any(line.startswith("data:") and "memory-mapped cache on disk" in line for line in lines)
    assert summary["trials"] == 2 and summary["top"]  # trained from the mapped files, tested once


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the pinned side-stream prefetch needs a CUDA GPU")
def test_pinned_prefetch_on_cuda_gives_the_device_placements_batches(digits_splits):
    device = torch.device("cuda")
    order = torch.randperm(len(digits_splits.train), generator=torch.Generator().manual_seed(0))
    on_device = DeviceBatches(digits_splits.train, device).shuffled(order.to(device), 32)
    streamed = HostBatches(digits_splits.train, device).shuffled(order, 32)
    count = 0
    for (a, x), (b, y) in zip(on_device, streamed):
        assert b.device.type == "cuda" and torch.equal(a, b) and torch.equal(x, y)
        count += 1
    assert count == -(-len(digits_splits.train) // 32)


def test_a_search_given_its_data_trains_on_them_from_the_cache(ray_address, tmp_path, digits_splits):
    """``run_search(data=...)``: the GPU placement benchmark's generated set, never decoded from files."""
    import dataclasses

    from visiontune.search import SearchOptions, run_search

    mapped = placement.spill(digits_splits)  # cache-backed, as the benchmark writes its large set
    given = dataclasses.replace(mapped, train=mapped.train.subset(np.arange(64)))
    summary = run_search(SearchOptions(task="mnist", space="mnist-cnn", trials=1, max_epochs=1,
                                       storage=str(tmp_path / "runs"), name="g", report=False,
                                       searcher="random", scheduler="none"),
                         data=given, progress=lambda line: None)
    recorded = json.loads((tmp_path / "runs" / "g" / "search.json").read_text())
    assert recorded["data"]["sizes"] == {"train": 64, "val": len(digits_splits.val), "test": len(digits_splits.test)}
    assert recorded["placement"]["where"] == "host"  # mapped from the cache entry, one copy for the machine
    assert summary["trials"] == 1 and summary["top"]
