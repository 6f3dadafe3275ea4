"""Classifier families of the report: the fully connected FNN and the CNN family.

The CNN family generalises exercises 1.2-1.5: ``blocks`` convolution blocks whose feature maps
start at ``width`` and double per block, each block but the last followed by 2x2 max pooling,
then one linear layer. ``pool_first`` swaps pooling and activation (exercise 1.3). Both
families take any image size ``(height, width)`` (an int is a square); the CNN's blocks are
limited by it (``max_blocks``), since each pooling shrinks the feature map.
"""

from __future__ import annotations

import torch
from torch import nn

from visiontune.errors import ConfigError
from visiontune.models.layers import check_range, make_activation
from visiontune.models.registry import register_model

MAX_BLOCKS = 4


def _pool_stride(size: int) -> int:
    """Halve the feature map while it stays at least 7 pixels wide, else pool with stride 1.

    This reproduces the report's 4-block CNN (28 -> 14 -> 7 -> 6) and keeps 1-3 blocks exact.
    """
    return 2 if size // 2 >= 7 else 1


def _pooled(height: int, width: int) -> tuple[int, int]:
    """The feature map after one 2x2 max pooling, whose stride the shorter side decides (a
    square image pools as the report's did)."""
    if _pool_stride(min(height, width)) == 2:
        return height // 2, width // 2
    return max(0, height - 1), max(0, width - 1)


def feature_size(image_size: tuple[int, int], blocks: int) -> tuple[int, int]:
    """Height and width of the CNN's last feature map (``blocks - 1`` poolings); 0 where they run out."""
    height, width = image_size
    for _ in range(blocks - 1):
        height, width = _pooled(height, width)
    return height, width


def max_blocks(image_size: tuple[int, int]) -> int:
    """The most CNN blocks an image of ``(height, width)`` allows (each pooling must leave a pixel)."""
    return max([b for b in range(1, MAX_BLOCKS + 1) if min(feature_size(image_size, b)) >= 1], default=1)


def _size(image_size) -> tuple[int, int]:
    return (int(image_size), int(image_size)) if isinstance(image_size, int) else tuple(int(v) for v in image_size)


class ConvClassifier(nn.Module):
    """A stack of conv(-batchnorm)-activation-pool blocks and a linear classifier."""

    def __init__(
        self,
        blocks: int,
        width: int,
        activation: str,
        pool_first: bool,
        dropout: float,
        batchnorm: bool,
        in_channels: int,
        image_size: tuple[int, int],
        num_classes: int,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, (height, width_) = in_channels, image_size
        for index in range(blocks):
            out_channels = width * 2**index
            layers.append(nn.Conv2d(channels, out_channels, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(out_channels))
            if index < blocks - 1:
                pool = nn.MaxPool2d(kernel_size=2, stride=_pool_stride(min(height, width_)))
                order = [pool, make_activation(activation)] if pool_first else [make_activation(activation), pool]
                layers.extend(order)
                height, width_ = _pooled(height, width_)
                if dropout > 0:
                    layers.append(nn.Dropout2d(dropout))
            else:
                layers.append(make_activation(activation))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels * height * width_, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class FullyConnected(nn.Module):
    """The report's FNN: input -> hidden -> classes, one activation, optional dropout."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, activation: str, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(in_features, hidden), make_activation(activation)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(hidden, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_model("cnn", "classification", "CNN family: 1-4 conv blocks, width doubling per block (report 1.2-1.5)")
def cnn(
    blocks: int = 3,
    width: int = 8,
    activation: str = "relu",
    pool_first: bool = False,
    dropout: float = 0.0,
    batchnorm: bool = False,
    in_channels: int = 1,
    image_size: int | tuple[int, int] = 28,
    num_classes: int = 10,
) -> nn.Module:
    """The report's CNN family; the defaults are exercise 1.2's 8-16-32 network (21,578 weights)."""
    check_range("blocks", blocks, 1, MAX_BLOCKS)
    check_range("width", width, 1, 512)
    check_range("dropout", dropout, 0.0, 0.95)
    make_activation(activation)
    size = _size(image_size)
    if blocks > max_blocks(size):
        raise ConfigError(f"blocks={blocks} does not fit {size[0]}x{size[1]} images: each block's pooling shrinks "
                          f"the feature map, and at most {max_blocks(size)} leave a pixel")
    return ConvClassifier(blocks, width, activation, pool_first, dropout, batchnorm, in_channels, size, num_classes)


@register_model("fnn", "classification", "fully connected C·H·W-H-K network (report 1.1: 784-H-10)")
def fnn(
    hidden: int = 800,
    activation: str = "relu",
    dropout: float = 0.0,
    in_channels: int = 1,
    image_size: int | tuple[int, int] = 28,
    num_classes: int = 10,
) -> nn.Module:
    """The report's FNN with ``hidden`` units (default 800); C·H·W inputs."""
    check_range("hidden", hidden, 1, 100_000)
    check_range("dropout", dropout, 0.0, 0.95)
    make_activation(activation)
    height, width = _size(image_size)
    return FullyConnected(in_channels * height * width, hidden, num_classes, activation, dropout)
