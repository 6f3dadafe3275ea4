"""The data options, declared once: which data a run reads and how it is split.

``train``, ``search``, ``data check``, ``reproduce`` and ``analyze --reseed`` all take these;
the command-line options are generated from the fields (``visiontune.options``), a search
records them in ``search.json`` and a reseed reads them back from there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from visiontune.options import known_values, option

GROUP = "data"
_DEFAULT_VAL = "mnist 5000, warwick 17; your own images 10%"


@dataclass(kw_only=True)
class DataOptions:
    """Where the data come from and how they are split; fixed for a whole run or search."""

    data_dir: str | None = option(None, "folder (or .zip) holding the data sets; default $VISIONTUNE_DATA, else "
                                        "~/.cache/visiontune", metavar="DIR", group=GROUP)
    synthetic: bool = option(False, "use the task's tiny generated stand-in data set instead (offline smoke runs)",
                             group=GROUP)
    val_size: int | None = option(None, f"validation samples carved from the training set (default {_DEFAULT_VAL})",
                                  metavar="N", group=GROUP)
    split_seed: int = option(0, "seed of the train/validation split, fixed across runs", metavar="S", group=GROUP)
    train_limit: int | None = option(None, "train on a seeded subset of N samples (quick runs)", metavar="N",
                                     group=GROUP)
    download: bool = option(True, "download a missing data set where there is internet (--no-download: never)",
                            group=GROUP)
    image_size: str | None = option(None, "your own images: resize every image to HxW (e.g. 128x96; default: "
                                          "kept where all share one size, else the median, at most 256 a side)",
                                    metavar="HxW", group=GROUP)
    data_memory_gb: float | None = option(None, "memory the decoded data may take on each machine; past it they are "
                                                "served from the memory-mapped cache on disk (default: half the "
                                                "available memory)", metavar="GB", group=GROUP)
    placement: str = option("auto", "where trials keep the data: device (the GPU, as uint8), host (shared memory), "
                                    "disk (the memory-mapped cache), or auto: the first that fits",
                            choices=("auto", "device", "host", "disk"), group=GROUP)

    def data_options(self) -> "DataOptions":
        """Just the data options (of a larger options object that includes them)."""
        return DataOptions(**known_values(DataOptions, asdict(self)))

    def load_splits(self, task: str):
        """The task's data, split as these options say (``data.load_splits``)."""
        from visiontune.data import load_splits

        return load_splits(task, data_dir=self.data_dir, synthetic=self.synthetic, val_size=self.val_size,
                           split_seed=self.split_seed, train_limit=self.train_limit, download=self.download,
                           image_size=self.image_size)
