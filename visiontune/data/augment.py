"""On-device, on-the-fly augmentation of training batches, after the split.

Every transform acts on a whole batch at once on the training device, with a per-sample random
draw from the trainer's seeded generator, and applies the same geometric transform to image and
mask. No transform needs a host synchronisation (no boolean indexing), so it costs a few
kernels per step on a GPU.

Names (comma-separated in a config's ``augment``):
    flip    random horizontal and vertical flips (segmentation)
    rot90   random multiples of 90 degrees (segmentation)
    rotate  small random rotation within +-``rotate_degrees``
    shift   random translation within +-``shift_pixels``
    noise   additive Gaussian noise with standard deviation ``noise_std`` (image only)
    stain   per-channel stain-intensity jitter, scale and offset within +-``stain_jitter`` (image only)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from visiontune.errors import ConfigError

AUGMENTATIONS = ("flip", "rot90", "rotate", "shift", "noise", "stain")


def parse_augment(spec: str, permitted: Sequence[str], what: str) -> tuple[str, ...]:
    """Parse ``"flip,rot90"`` (or ``"none"``/``""``) into names that ``what`` (a kind of task, or a
    data set whose card says so) permits: flips and right-angle rotations change what a digit means
    (6 and 9, 2 and 5), and stain jitter only makes sense for stained tissue (``kinds``)."""
    text = (spec or "").strip().lower()
    if text in ("", "none"):
        return ()
    names = tuple(dict.fromkeys(name.strip() for name in text.replace("+", ",").split(",") if name.strip()))
    for name in names:
        if name not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation {name!r}; choose from {', '.join(AUGMENTATIONS)} or 'none'")
        if name not in permitted:
            raise ConfigError(f"augmentation {name!r} does not suit {what}; use {', '.join(permitted) or 'none'}")
    return names


@dataclass
class Augmenter:
    """Applies the configured transforms to a batch; see the module docstring for the names."""

    names: tuple[str, ...]
    generator: torch.Generator
    rotate_degrees: float = 15.0
    shift_pixels: float = 2.0
    noise_std: float = 0.05
    stain_jitter: float = 0.1
    padding: str = "zeros"  # "zeros" for digits on black, "reflection" for tissue

    def __bool__(self) -> bool:
        return bool(self.names)

    def _uniform(self, shape: tuple[int, ...], low: float, high: float, device: torch.device) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=device) * (high - low) + low

    def _coin(self, count: int, device: torch.device) -> torch.Tensor:
        return torch.rand(count, generator=self.generator, device=device) < 0.5

    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augment ``images (N, C, H, W)`` float and, identically, ``masks (N, H, W)`` if given."""
        if not self.names:
            return images, masks
        count, device = images.shape[0], images.device
        if "flip" in self.names:
            for dim in (-1, -2):
                flip = self._coin(count, device)
                images = torch.where(flip.view(-1, 1, 1, 1), images.flip(dim), images)
                if masks is not None:
                    masks = torch.where(flip.view(-1, 1, 1), masks.flip(dim), masks)
        if "rot90" in self.names and images.shape[-1] == images.shape[-2]:
            turns = torch.randint(0, 4, (count,), generator=self.generator, device=device)
            rotated_images, rotated_masks = images, masks
            for k in (1, 2, 3):
                pick = turns == k
                rotated_images = torch.where(pick.view(-1, 1, 1, 1), torch.rot90(images, k, (-2, -1)), rotated_images)
                if masks is not None:
                    rotated_masks = torch.where(pick.view(-1, 1, 1), torch.rot90(masks, k, (-2, -1)), rotated_masks)
            images, masks = rotated_images, rotated_masks
        if "rotate" in self.names or "shift" in self.names:
            images, masks = self._affine(images, masks)
        if "stain" in self.names:
            scale = self._uniform((count, images.shape[1], 1, 1), 1 - self.stain_jitter, 1 + self.stain_jitter, device)
            offset = self._uniform((count, images.shape[1], 1, 1), -self.stain_jitter / 2, self.stain_jitter / 2, device)
            images = images * scale + offset
        if "noise" in self.names:
            noise = torch.randn(images.shape, generator=self.generator, device=device, dtype=images.dtype)
            images = images + noise * self.noise_std
        return images, masks

    def _affine(self, images: torch.Tensor, masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Random rotation and/or shift, one shared sampling grid for image and mask."""
        count, device = images.shape[0], images.device
        height, width = images.shape[-2:]
        zeros = torch.zeros(count, device=device)
        degrees = self.rotate_degrees if "rotate" in self.names else 0.0
        angle = self._uniform((count,), -degrees, degrees, device) * (math.pi / 180) if degrees else zeros
        pixels = self.shift_pixels if "shift" in self.names else 0.0
        # affine_grid works in normalised coordinates where the image spans [-1, 1].
        shift_x = self._uniform((count,), -pixels, pixels, device) * (2 / width) if pixels else zeros
        shift_y = self._uniform((count,), -pixels, pixels, device) * (2 / height) if pixels else zeros
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode=self.padding, align_corners=False)
        if masks is not None:
            warped = F.grid_sample(masks[:, None].to(images.dtype), grid, mode="nearest",
                                   padding_mode=self.padding, align_corners=False)
            masks = warped[:, 0].round().to(masks.dtype)
        return images, masks
