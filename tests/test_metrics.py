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


def test_balanced_accuracy_and_macro_f1_by_hand():
    """Imbalanced: 8 of class 0 (all right), 2 of class 1 (one right), class 2 predicted once, never true."""
    target = torch.tensor([0] * 8 + [1, 1])
    predicted = torch.tensor([0] * 8 + [1, 2])
    accumulator = metrics.AccuracyAccumulator(3)
    accumulator.update(torch.nn.functional.one_hot(predicted, 3).float(), target)
    result = accumulator.aggregate()
    assert result["acc"] == pytest.approx(0.9)
    assert result["balanced_acc"] == pytest.approx((1.0 + 0.5) / 2)  # recall of the classes present
    # F1: class 0 2*8/(8+8) = 1; class 1 2*1/(2+1) = 2/3; class 2 (predicted, never true) 0
    assert result["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)


def test_three_class_dice_per_class_then_mean_and_two_classes_reduce_to_the_binary_formula():
    truth = torch.tensor([[[1, 1], [2, 0]], [[0, 0], [0, 2]]])
    prediction = torch.tensor([[[1, 0], [2, 2]], [[0, 0], [0, 0]]])
    # image 1: class 1 2*1/(1+2) = 2/3, class 2 2*1/(2+1) = 2/3; image 2: class 1 absent in both
    # (1.0), class 2 2*0/(0+1) = 0
    accumulator = metrics.DiceAccumulator(3, ["background", "gland", "lumen"])
    accumulator.update(torch.nn.functional.one_hot(prediction, 3).movedim(-1, 1).float(), truth)
    result = accumulator.aggregate()
    assert result["dice/gland"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert result["dice/lumen"] == pytest.approx((2 / 3 + 0.0) / 2)
    assert result["dice"] == pytest.approx((result["dice/gland"] + result["dice/lumen"]) / 2)
    assert result["dice_pooled"] == pytest.approx((2 * 1 + 2 * 1) / ((1 + 2) + (2 + 1) + (0 + 1)))
    assert torch.allclose(accumulator.per_image(), torch.tensor([2 / 3, 0.5]))
    # Two classes: exactly the report's binary per-image Dice, 2|A∩B| / (|A|+|B|)
    torch.manual_seed(1)
    binary_truth, binary_prediction = (torch.rand(6, 5, 7) > 0.5).long(), (torch.rand(6, 5, 7) > 0.5).long()
    a, b = binary_prediction.flatten(1).float(), binary_truth.flatten(1).float()
    by_formula = 2 * (a * b).sum(1) / (a.sum(1) + b.sum(1))
    assert torch.equal(metrics.dice_per_image(binary_prediction, binary_truth), by_formula)
    two = metrics.DiceAccumulator(2)
    two.update(logits_from_map(binary_prediction), binary_truth)
    assert set(two.aggregate()) == {"dice", "dice_pooled"} and two.aggregate()["dice"] == float(by_formula.mean())


def test_multi_class_soft_dice_loss_is_zero_when_perfect_and_matches_the_binary_loss_for_two_classes():
    from visiontune.losses import soft_dice_loss

    target = torch.randint(0, 4, (3, 6, 6))
    perfect = torch.nn.functional.one_hot(target, 4).movedim(-1, 1).float() * 50
    assert soft_dice_loss(perfect, target, eps=1e-6).item() == pytest.approx(0.0, abs=1e-4)
    binary = torch.randint(0, 2, (3, 6, 6))
    logits = torch.randn(3, 2, 6, 6)
    probability = logits.softmax(1)[:, 1]
    expected = 1 - ((2 * (probability * binary).flatten(1).sum(1) + 1) / (probability.flatten(1).sum(1)
                                                                          + binary.flatten(1).sum(1) + 1)).mean()
    assert soft_dice_loss(logits, binary).item() == pytest.approx(expected.item())
