"""Segmenter families: the report's FCN (2.1), its FCN2 (2.2) and a U-Net.

All three are one encoder-decoder class with switches, so a variant is a few keyword
arguments: ``depth`` pooling levels, feature maps starting at ``width`` and doubling per
level, transposed convolutions back to full resolution, a 1x1 classification layer.
FCN2 adds batchnorm and a conv-batchnorm-ReLU after each transposed convolution; the U-Net
concatenates the encoder's features at each level (skip connections) and uses two
convolutions per level. Input ``(N, C, H, W)`` of any height and width: where they are not
multiples of ``2**depth`` the model pads the input (reflecting its border) to the next multiple
and crops the logits back, so non-square and non-power-of-two images work. Output logits
``(N, K, H, W)`` for K classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visiontune.models.layers import check_range, conv_block
from visiontune.models.registry import register_model


class EncoderDecoder(nn.Module):
    """Fully convolutional encoder-decoder with optional decoder convolutions and skips."""

    def __init__(
        self,
        depth: int,
        width: int,
        batchnorm: bool,
        dropout: float,
        decoder_convs: bool,
        skips: bool,
        convs_per_level: int,
        in_channels: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.skips = skips
        channels = [width * 2**level for level in range(depth + 1)]

        def level_convs(c_in: int, c_out: int) -> nn.Sequential:
            layers = conv_block(c_in, c_out, batchnorm, dropout)
            for _ in range(convs_per_level - 1):
                layers += conv_block(c_out, c_out, batchnorm, dropout)
            return nn.Sequential(*layers)

        self.encoder = nn.ModuleList()
        previous = in_channels
        for level in range(depth + 1):
            self.encoder.append(level_convs(previous, channels[level]))
            previous = channels[level]
        self.pool = nn.MaxPool2d(2, 2)

        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in range(depth, 0, -1):
            self.upsample.append(nn.ConvTranspose2d(channels[level], channels[level - 1], 2, stride=2))
            if skips:
                self.decoder.append(level_convs(2 * channels[level - 1], channels[level - 1]))
            elif decoder_convs:
                self.decoder.append(level_convs(channels[level - 1], channels[level - 1]))
            else:
                self.decoder.append(nn.Identity())
        self.head = nn.Conv2d(channels[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        factor = 2**self.depth
        pad_h, pad_w = -height % factor, -width % factor
        if pad_h or pad_w:
            # Reflection where the image is large enough for it, else the border pixel repeated.
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        features = []
        for level, block in enumerate(self.encoder):
            x = block(x)
            if level < self.depth:
                features.append(x)
                x = self.pool(x)
        for upsample, block in zip(self.upsample, self.decoder):
            x = upsample(x)
            skip = features.pop()
            if self.skips:
                x = torch.cat([x, skip], dim=1)
            x = block(x)
        logits = self.head(x)
        return logits[..., :height, :width] if pad_h or pad_w else logits


def _check(depth: int, width: int, dropout: float) -> None:
    check_range("depth", depth, 1, 5)
    check_range("width", width, 1, 256)
    check_range("dropout", dropout, 0.0, 0.95)


@register_model("fcn", "segmentation", "report 2.1 FCN: conv-ReLU-pool encoder, transposed-conv decoder")
def fcn(
    depth: int = 2, width: int = 8, batchnorm: bool = False, dropout: float = 0.0,
    in_channels: int = 2, num_classes: int = 2,
) -> nn.Module:
    """The report's FCN; defaults are exercise 2.1's 8-16-32 network."""
    _check(depth, width, dropout)
    return EncoderDecoder(depth, width, batchnorm, dropout, False, False, 1, in_channels, num_classes)


@register_model("fcn2", "segmentation", "report 2.2 FCN2: FCN + batchnorm + conv-BN-ReLU after each transposed conv")
def fcn2(
    depth: int = 2, width: int = 8, batchnorm: bool = True, dropout: float = 0.0,
    in_channels: int = 2, num_classes: int = 2,
) -> nn.Module:
    """The report's best network (exercise 2.2)."""
    _check(depth, width, dropout)
    return EncoderDecoder(depth, width, batchnorm, dropout, True, False, 1, in_channels, num_classes)


@register_model("unet", "segmentation", "U-Net: two convs per level and skip connections (beyond the report)")
def unet(
    depth: int = 3, width: int = 16, batchnorm: bool = True, dropout: float = 0.0,
    in_channels: int = 2, num_classes: int = 2,
) -> nn.Module:
    """A compact U-Net (Ronneberger et al., 2015); depth 3 from 16 maps by default."""
    _check(depth, width, dropout)
    return EncoderDecoder(depth, width, batchnorm, dropout, False, True, 2, in_channels, num_classes)
