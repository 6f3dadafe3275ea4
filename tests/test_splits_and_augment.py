"""Seeded splits and on-device augmentation."""

import pytest
import torch

from visiontune.data import load_splits
from visiontune.data.augment import Augmenter, parse_augment
from visiontune.kinds import KINDS
from visiontune.data.splits import ImageSet, split_train_val
from visiontune.errors import ConfigError


def numbered_set(count: int) -> ImageSet:
    images = torch.arange(count, dtype=torch.uint8).view(count, 1, 1, 1).expand(count, 1, 2, 2).clone()
    return ImageSet(images, torch.arange(count))


def test_split_is_seeded_disjoint_and_complete():
    full = numbered_set(50)
    train_a, val_a = split_train_val(full, 10, seed=3)
    train_b, val_b = split_train_val(full, 10, seed=3)
    _, val_c = split_train_val(full, 10, seed=4)
    assert torch.equal(val_a.targets, val_b.targets) and torch.equal(train_a.targets, train_b.targets)
    assert not torch.equal(val_a.targets, val_c.targets)
    assert len(val_a) == 10 and len(train_a) == 40
    assert sorted(train_a.targets.tolist() + val_a.targets.tolist()) == list(range(50))
    # images travel with their labels
    assert torch.equal(val_a.images[:, 0, 0, 0].long(), val_a.targets)


def test_split_size_out_of_range_is_an_error():
    with pytest.raises(ConfigError, match="--val-size must be between 1 and 49"):
        split_train_val(numbered_set(50), 50, seed=0)


def test_load_splits_keeps_test_set_and_records_split():
    splits = load_splits("warwick", synthetic=True, val_size=5, split_seed=7)
    assert splits.sizes() == {"train": 43, "val": 5, "test": 16}
    assert splits.describe()["split_seed"] == 7
    again = load_splits("warwick", synthetic=True, val_size=5, split_seed=7)
    assert torch.equal(splits.val.images, again.val.images)


def augmenter(names, seed=0, **kwargs):
    return Augmenter(parse_augment(names, KINDS["segmentation"].augmentations, "segmentation"), torch.Generator().manual_seed(seed),
                     padding="reflection", **kwargs)


def test_geometric_augmentation_moves_image_and_mask_together():
    torch.manual_seed(0)
    masks = (torch.rand(16, 32, 32) > 0.7).long()
    # channel 0 of the image *is* the mask, so any mismatch between the two transforms shows
    images = torch.stack([masks.float(), torch.rand(16, 32, 32)], dim=1)
    out_images, out_masks = augmenter("flip,rot90")(images, masks)
    assert torch.equal(out_images[:, 0].long(), out_masks)
    assert not torch.equal(out_masks, masks)  # something did change
    assert (out_masks.sum((1, 2)) == masks.sum((1, 2))).all()  # flips and rotations keep area


def test_small_rotation_keeps_image_and_mask_aligned():
    masks = torch.zeros(8, 64, 64, dtype=torch.long)
    masks[:, 16:48, 20:44] = 1
    images = torch.stack([masks.float(), masks.float()], dim=1)
    out_images, out_masks = augmenter("rotate,shift", rotate_degrees=20, shift_pixels=4)(images, masks)
    agreement = ((out_images[:, 0] > 0.5).long() == out_masks).float().mean()
    assert agreement > 0.99  # bilinear image and nearest mask differ only on a few edge pixels
    assert not torch.equal(out_masks, masks)


def test_noise_and_stain_touch_the_image_only_and_are_seeded():
    masks = (torch.rand(4, 16, 16) > 0.5).long()
    images = torch.rand(4, 2, 16, 16)
    first = augmenter("noise,stain", seed=5)(images, masks)
    second = augmenter("noise,stain", seed=5)(images, masks)
    assert torch.equal(first[1], masks)
    assert not torch.equal(first[0], images)
    assert torch.equal(first[0], second[0])


def test_digit_augmentations_exclude_flips():
    assert parse_augment("rotate+shift", KINDS["classification"].augmentations, "classification") == ("rotate", "shift")
    with pytest.raises(ConfigError, match="does not suit classification"):
        parse_augment("flip", KINDS["classification"].augmentations, "classification")
    with pytest.raises(ConfigError, match="unknown augmentation 'blur'"):
        parse_augment("blur", KINDS["segmentation"].augmentations, "segmentation")
