"""Metrics against cases computed by hand."""

import pytest
import torch

from visiontune import metrics


def logits_from_map(segmentation: torch.Tensor) -> torch.Tensor:
    """(N, H, W) 0/1 map -> (N, 2, H, W) logits whose argmax is that map."""
    return torch.stack([1 - segmentation.float(), segmentation.float()], dim=1)


def test_dice_per_image_two_by_two_by_hand():
    prediction = torch.tensor([[[1, 1], [0, 0]],   # A = 2 pixels
                               [[1, 0], [0, 0]],   # A = 1
                               [[0, 0], [0, 0]],   # both empty
                               [[1, 1], [1, 1]]])  # A = 4, B empty
    truth = torch.tensor([[[1, 0], [0, 0]],        # B = 1, overlap 1 -> 2*1/(2+1)
                          [[0, 1], [0, 0]],        # no overlap -> 0
                          [[0, 0], [0, 0]],        # both empty counts 1.0
                          [[0, 0], [0, 0]]])       # 0 / 4 -> 0
    expected = torch.tensor([2 / 3, 0.0, 1.0, 0.0])
    assert torch.allclose(metrics.dice_per_image(prediction, truth), expected)


def test_pooled_dice_weighs_pixels_not_images():
    prediction = torch.tensor([[[1, 1], [0, 0]], [[1, 0], [0, 0]]])
    truth = torch.tensor([[[1, 0], [0, 0]], [[0, 1], [0, 0]]])
    # overlap 1 + 0, |A| = 3, |B| = 2  ->  2 * 1 / 5
    assert metrics.pooled_dice(prediction, truth).item() == pytest.approx(0.4)


def test_segmentation_map_is_argmax_of_report_softmax():
    logits = torch.randn(3, 2, 4, 4)
    via_softmax = torch.softmax(logits, dim=1).argmax(dim=1)
    assert torch.equal(metrics.segmentation_map(logits), via_softmax)


def test_dice_accumulator_over_batches_equals_whole_set():
    torch.manual_seed(0)
    truth = (torch.rand(10, 8, 8) > 0.5).long()
    prediction = (torch.rand(10, 8, 8) > 0.4).long()
    accumulator = metrics.DiceAccumulator()
    for start in (0, 3, 7):
        stop = {0: 3, 3: 7, 7: 10}[start]
        accumulator.update(logits_from_map(prediction[start:stop]), truth[start:stop])
    result = accumulator.aggregate()
    assert result["dice"] == pytest.approx(metrics.dice_per_image(prediction, truth).mean().item())
    assert result["dice_pooled"] == pytest.approx(metrics.pooled_dice(prediction, truth).item())
    assert accumulator.per_image().shape == (10,)


def test_accuracy_and_confusion_matrix_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    target = torch.tensor([0, 1, 1, 2])  # right, right, wrong (pred 2), wrong (pred 0)
    assert metrics.accuracy(logits, target).item() == pytest.approx(0.5)
    matrix = metrics.confusion_matrix(logits.argmax(1), target, 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 0]]
    accumulator = metrics.AccuracyAccumulator(3)
    accumulator.update(logits[:2], target[:2])
    accumulator.update(logits[2:], target[2:])
    assert accumulator.aggregate()["acc"] == pytest.approx(0.5)
    assert torch.equal(accumulator.confusion(), matrix)
