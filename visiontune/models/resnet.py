"""A small residual family (He et al., 2016) for colour images, where the report's plain CNNs
stop improving early: a 3x3 stem, ``stages`` stages of ``blocks`` basic blocks (two 3x3
convolutions with batchnorm and an identity or 1x1 shortcut), width doubling per stage, each
stage after the first halving the feature map while it is at least 8 pixels on its shorter
side, then global average pooling and one linear layer. Any image size works.
"""

from __future__ import annotations

import torch
from torch import nn

from visiontune.models.layers import check_range, make_activation
from visiontune.models.registry import register_model


class BasicBlock(nn.Module):
    """conv-BN-act-conv-BN plus the shortcut, then the activation."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, activation: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), make_activation(activation),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels))
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out_channels else nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)))
        # Not in place after the sum: the shortcut's input may be the block's input itself.
        self.activation = nn.ReLU() if activation == "relu" else make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """Stem, residual stages, global average pooling, dropout, linear classifier."""

    def __init__(self, stages: int, blocks: int, width: int, activation: str, dropout: float, in_channels: int,
                 image_size: tuple[int, int], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                   make_activation(activation)]
        channels, side = width, min(image_size)
        for stage in range(stages):
            out_channels = width * 2**stage
            stride = 2 if stage > 0 and side >= 8 else 1
            side = (side + 1) // 2 if stride == 2 else side
            for index in range(blocks):
                layers.append(BasicBlock(channels, out_channels, stride if index == 0 else 1, activation))
                channels = out_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("resnet", "classification", "small ResNet: stages of residual blocks, width doubling per stage")
def resnet(
    stages: int = 3,
    blocks: int = 2,
    width: int = 16,
    activation: str = "relu",
    dropout: float = 0.0,
    in_channels: int = 3,
    image_size: int | tuple[int, int] = 32,
    num_classes: int = 10,
) -> nn.Module:
    """A ResNet of ``stages`` stages with ``blocks`` basic blocks each; the defaults (3 stages of 2
    blocks from 16 maps: 175,258 weights for 10 classes) are the CIFAR ResNet-14 (n = 2) of He et
    al.'s section 4.2."""
    check_range("stages", stages, 1, 4)
    check_range("blocks", blocks, 1, 4)
    check_range("width", width, 1, 256)
    check_range("dropout", dropout, 0.0, 0.95)
    make_activation(activation)
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    return ResNet(stages, blocks, width, activation, dropout, in_channels, size, num_classes)
