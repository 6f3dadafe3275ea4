"""The training engine on tiny synthetic data: it learns, it is seeded, it resumes exactly."""

from __future__ import annotations

import pytest
import torch
from helpers import builtin_card

from visiontune.config import TrainConfig
from visiontune.engine import Trainer, TrainingDiverged
from visiontune.losses import soft_dice_loss


def digits_config(**overrides) -> TrainConfig:
    values = dict(task="mnist", model="cnn", width=8, batch_size=32, epochs=3, lr=3e-3, precision="fp32")
    values.update(overrides)
    return TrainConfig(**values)


def glands_config(**overrides) -> TrainConfig:
    values = dict(task="warwick", model="fcn2", width=4, batch_size=8, epochs=3, lr=1e-2, precision="fp32")
    values.update(overrides)
    return TrainConfig(**values)


def test_classifier_learns_synthetic_digits(digits_splits):
    trainer = Trainer(digits_config(), digits_splits, device="cpu")
    before = trainer.evaluate("val")["val/acc"]
    losses = [trainer.fit_epoch()["train/loss"] for _ in range(3)]
    after = trainer.evaluate("val")["val/acc"]
    assert losses[-1] < losses[0]
    assert after > 0.8 > before + 0.3  # chance is 0.1


def test_segmenter_beats_all_gland_floor_on_synthetic_glands(glands_splits):
    trainer = Trainer(glands_config(epochs=5, width=8, batch_size=4, lr=3e-3), glands_splits, device="cpu")
    for _ in range(5):
        trainer.fit_epoch()
    dice = trainer.evaluate("val")["val/dice"]
    truth = glands_splits.val.targets.long()
    all_gland = (2 * truth.flatten(1).sum(1) / (truth[0].numel() + truth.flatten(1).sum(1))).mean().item()
    assert dice > max(0.8, all_gland + 0.15)


def test_same_seed_same_run_different_seed_different_run(digits_splits):
    def run(seed: int):
        trainer = Trainer(digits_config(seed=seed, augment="rotate,shift"), digits_splits, device="cpu")
        return [trainer.fit_epoch()["train/loss"] for _ in range(2)]

    assert run(1) == run(1)
    assert run(1) != run(2)


@pytest.mark.parametrize("make_config", [
    lambda: digits_config(optimizer="sgd", momentum=0.9, lr=0.05, lr_schedule="cosine", augment="rotate"),
    lambda: glands_config(augment="flip,rot90,noise", loss="ce+dice", dropout=0.1),
])
def test_resume_from_state_dict_continues_exactly(make_config, digits_splits, glands_splits):
    """Two epochs straight equal one epoch, a save/restore into a fresh trainer, and one more."""
    config = make_config()
    splits = digits_splits if config.task == "mnist" else glands_splits
    straight = Trainer(config, splits, device="cpu")
    straight.fit_epoch()
    second = straight.fit_epoch()

    first_half = Trainer(config, splits, device="cpu")
    first_half.fit_epoch()
    state = first_half.state_dict()
    assert state["bf16"] is False
    torch.manual_seed(12345)  # disturb global RNG: the state must carry what matters
    resumed = Trainer(config, splits, device="cpu")
    resumed.load_state_dict(state)
    assert resumed.epoch == 1
    assert resumed.fit_epoch() == second
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_l1_penalty_shrinks_weights(digits_splits):
    def weight_norm(**overrides) -> float:
        trainer = Trainer(digits_config(optimizer="sgd", lr=0.05, **overrides), digits_splits, device="cpu")
        trainer.fit_epoch()
        return sum(p.abs().sum().item() for p in trainer.model.parameters())

    assert weight_norm(regularizer="l1", reg_weight=1e-2) < 0.8 * weight_norm()


def test_l2_is_weight_decay(digits_splits):
    trainer = Trainer(digits_config(optimizer="sgd", regularizer="l2", reg_weight=0.01), digits_splits, device="cpu")
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.01
    plain = Trainer(digits_config(optimizer="adam"), digits_splits, device="cpu")
    assert plain.optimizer.param_groups[0]["weight_decay"] == 0.0


def test_diverging_loss_raises(digits_splits):
    trainer = Trainer(digits_config(optimizer="sgd", lr=1e6, activation="relu"), digits_splits, device="cpu")
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        for _ in range(3):
            trainer.fit_epoch()


def test_bf16_autocast_trains_on_cpu(digits_splits):
    trainer = Trainer(digits_config(precision="bf16"), digits_splits, device="cpu")
    assert trainer.use_bf16
    metrics = trainer.fit_epoch()
    assert metrics["train/loss"] < 2.3  # below chance-level cross-entropy ln(10)


def test_soft_dice_loss_is_zero_for_perfect_and_one_for_disjoint():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    perfect = torch.stack([(1 - target) * 50.0, target * 50.0], dim=1).float()
    disjoint = torch.stack([target * 50.0, (1 - target) * 50.0], dim=1).float()
    assert soft_dice_loss(perfect, target, eps=1e-6).item() == pytest.approx(0.0, abs=1e-4)
    assert soft_dice_loss(disjoint, target, eps=1e-6).item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("config_of", [digits_config, glands_config])
def test_auto_precision_gives_the_same_run_as_the_precision_it_chose(config_of, digits_splits, glands_splits):
    """The bf16 probe trains a copy: the real run equals one configured with the chosen precision."""
    splits = digits_splits if config_of is digits_config else glands_splits
    auto = Trainer(config_of(precision="auto"), splits, device="cpu")
    assert auto.precision in ("fp32", "bf16")
    fixed = Trainer(config_of(precision=auto.precision), splits, device="cpu")
    for a, b in zip(auto.model.state_dict().values(), fixed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert auto.fit_epoch() == fixed.fit_epoch()


def test_tta_views_are_the_symmetries_of_the_square_and_invert_exactly():
    from visiontune.tta import tta_views
    from visiontune.tta import unview as _unview
    from visiontune.tta import view as _view

    image = torch.arange(2 * 4 * 4, dtype=torch.float).reshape(1, 2, 4, 4)
    for mode, count in (("none", 1), ("flip", 4), ("d4", 8)):
        views = [_view(image, turns, flip) for turns, flip in tta_views(mode)]
        assert len({tuple(v.flatten().tolist()) for v in views}) == count  # all distinct
        for (turns, flip), view in zip(tta_views(mode), views):
            assert torch.equal(_unview(view, turns, flip), image)


def test_tta_averages_view_probabilities_mapped_back(glands_splits):
    """d4 evaluation equals the hand-computed mean of the 8 views' softmax, mapped back: in the
    model layer (what predict, export and the test figures run) and in the Trainer's validation."""
    from visiontune.metrics import DiceAccumulator
    from visiontune.trained import TrainedModel

    trainer = Trainer(glands_config(tta="d4"), glands_splits, device="cpu")
    trainer.fit_epoch()
    trainer.model.eval()
    images = glands_splits.val.images.float() / 255
    outputs = []
    for turns in range(4):
        for flip in (False, True):
            view = torch.rot90(images.flip(-1) if flip else images, turns, (-2, -1))
            with torch.no_grad():
                probability = torch.rot90(trainer.model(view).softmax(1), -turns, (-2, -1))
            outputs.append(probability.flip(-1) if flip else probability)
    expected = torch.stack(outputs).mean(0)
    model = TrainedModel.from_weights(glands_splits.card, [(trainer.config, trainer.model.state_dict(), False)], "cpu")
    assert torch.allclose(model.probabilities(glands_splits.val.images[:3]), expected[:3], atol=1e-5)
    accumulator = DiceAccumulator(2, glands_splits.card.classes)
    accumulator.update(expected, glands_splits.val.targets)
    assert trainer.evaluate("val")["val/dice"] == pytest.approx(accumulator.aggregate()["dice"], abs=1e-6)
    # and it is not the plain prediction: a trained FCN is not invariant to rotations
    plain = TrainedModel.from_weights(glands_splits.card, [(glands_config(tta="none"), trainer.model.state_dict(),
                                                            False)], "cpu")
    assert not torch.allclose(plain.probabilities(glands_splits.val.images[:3]), expected[:3], atol=1e-3)


def test_tta_is_refused_for_classification():
    from visiontune.errors import ConfigError

    with pytest.raises(ConfigError, match="tta must be one of none for classification"):
        digits_config(tta="d4").validate(builtin_card("mnist"))
