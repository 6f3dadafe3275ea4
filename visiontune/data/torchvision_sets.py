"""torchvision's data sets by name: ``fashion-mnist``, ``kmnist``, ``cifar10``.

Read through torchvision's own dataset classes, from the data folder in their layouts
(``ROOT/FashionMNIST/raw/``, ``ROOT/KMNIST/raw/``, ``ROOT/cifar-10-batches-py/``); where they
are missing and downloads are allowed, torchvision downloads them and checks their checksums.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from visiontune.data.splits import ImageSet
from visiontune.errors import DataError

# name -> torchvision class name, and the folder it keeps its files in (below the data root)
SETS = {"fashion-mnist": ("FashionMNIST", "FashionMNIST/raw"), "kmnist": ("KMNIST", "KMNIST/raw"),
        "cifar10": ("CIFAR10", "cifar-10-batches-py")}


def _as_image_set(dataset) -> ImageSet:
    data = dataset.data
    images = torch.as_tensor(np.asarray(data), dtype=torch.uint8)
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    return ImageSet(images, torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64))


def load_torchvision_set(name: str, root: Path, download: bool = True) -> tuple[ImageSet, ImageSet, list[str], str]:
    """(train, test, class names, source) of one of torchvision's data sets."""
    import torchvision.datasets

    class_name, folder = SETS[name]
    dataset_class = getattr(torchvision.datasets, class_name)
    try:
        train = dataset_class(str(root), train=True, download=download)
        test = dataset_class(str(root), train=False, download=download)
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
        raise DataError(f"{name}: {' '.join(str(error).split())} in {root / folder}"
                        + ("" if download else " (downloads are off: --no-download)")) from None
    except OSError as error:  # no network, refused connection, ...
        raise DataError(f"{name}: not in {root / folder}, and downloading it failed ({error})") from None
    return _as_image_set(train), _as_image_set(test), [str(c) for c in train.classes], str(root / folder)
