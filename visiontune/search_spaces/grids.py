"""The report's grid studies as data spaces (run them with ``--searcher grid``).

Each is a plain dict in the format of ``declarative.py``: fixed values and lists of values.
The settings are the report's own where it gives them.
"""

from __future__ import annotations

GRIDS: dict[str, dict] = {
    "mnist-report-blocks": {
        "task": "mnist",
        "description": "report 1.5: 1-4 convolution blocks, Adam 1e-3, batch 32",
        "params": {"model": "cnn", "blocks": [1, 2, 3, 4], "width": 8, "optimizer": "adam", "lr": 0.001,
                   "batch_size": 32},
    },
    "mnist-report-width": {
        "task": "mnist",
        "description": "report 1.5: 8/16/32/64 feature maps in the first block, Adam 1e-3, batch 32",
        "params": {"model": "cnn", "width": [8, 16, 32, 64], "optimizer": "adam", "lr": 0.001, "batch_size": 32},
    },
    "warwick-report-batch": {
        "task": "warwick",
        "description": "report table 1: FCN2 with flips, Adam 1e-3, batch sizes 8-128",
        "params": {"model": "fcn2", "augment": "flip", "optimizer": "adam", "lr": 0.001,
                   "batch_size": [8, 16, 32, 64, 128]},
    },
    "warwick-report-lr": {
        "task": "warwick",
        "description": "report table 2: FCN2 with flips, batch 64, Adam learning rates 1e-2 to 1e-5",
        "params": {"model": "fcn2", "augment": "flip", "optimizer": "adam", "batch_size": 64,
                   "lr": [0.01, 0.001, 0.0001, 0.00001]},
    },
}
