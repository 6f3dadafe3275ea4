"""CUDA graphs (``cuda_graphs``): the captured step trains as the eager one does.

The GPU tests need a CUDA device and are skipped without one (this project's CI machine has
none); they ran on a lent GPU machine (README, Performance). On a CPU the setting must change
nothing, which CI checks.
"""

from __future__ import annotations

import pytest
import torch

from visiontune.config import TrainConfig
from visiontune.engine import Trainer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# SGD with momentum on digits (15 full batches and a remainder of 20 an epoch); Adam with a
# cosine schedule, CE+Dice and flips on glands (4 full batches and a remainder of 4): between
# them the warm-up, the capture, the replays, the eager last batch and the recapture after the
# learning rate changes.
CASES = {
    "digits-sgd": dict(task="mnist", model="cnn", width=8, batch_size=32, epochs=4, lr=0.05, optimizer="sgd",
                       momentum=0.9),
    "glands-adam-cosine": dict(task="warwick", model="unet", depth=2, width=8, batch_size=8, epochs=4, lr=3e-3,
                               optimizer="adam", lr_schedule="cosine", loss="ce+dice", augment="flip"),
}


def _splits(case, digits_splits, glands_splits):
    return digits_splits if CASES[case]["task"] == "mnist" else glands_splits


def _losses(trainer: Trainer, epochs: int) -> list[float]:
    return [trainer.fit_epoch()["train/loss"] for _ in range(epochs)]


def test_cuda_graphs_change_nothing_on_a_cpu(digits_splits):
    config = dict(CASES["digits-sgd"], precision="fp32")
    plain = Trainer(TrainConfig(**config), digits_splits, device="cpu")
    graphed = Trainer(TrainConfig(**config, cuda_graphs=True), digits_splits, device="cpu")
    assert not graphed.cuda_graphs
    assert _losses(graphed, 2) == _losses(plain, 2)


@needs_cuda
@pytest.mark.parametrize("case", sorted(CASES))
def test_graphed_training_matches_eager_training(case, digits_splits, glands_splits):
    splits = _splits(case, digits_splits, glands_splits)
    config = dict(CASES[case], precision="fp32")
    eager = Trainer(TrainConfig(**config), splits, device="cuda")
    graphed = Trainer(TrainConfig(**config, cuda_graphs=True), splits, device="cuda")
    eager_losses, graphed_losses = _losses(eager, 4), _losses(graphed, 4)
    assert graphed._graph is not None  # the graph really ran
    # Same kernels, same order: equal up to cuDNN's choice of algorithm (float rounding).
    assert graphed_losses == pytest.approx(eager_losses, rel=2e-2, abs=1e-3)
    metric = eager.kind.val_metric
    assert graphed.evaluate("val")[metric] == pytest.approx(eager.evaluate("val")[metric], abs=0.03)
    assert graphed_losses[-1] < graphed_losses[0]


@needs_cuda
def test_graphed_training_resumes_from_a_checkpoint(glands_splits):
    config = TrainConfig(**CASES["glands-adam-cosine"], precision="fp32", cuda_graphs=True)
    straight = Trainer(config, glands_splits, device="cuda")
    _losses(straight, 2)
    state = straight.state_dict()
    resumed = Trainer(config, glands_splits, device="cuda")
    resumed.load_state_dict(state)
    assert _losses(resumed, 2) == pytest.approx(_losses(straight, 2), rel=2e-2, abs=1e-3)


@needs_cuda
def test_graphed_bf16_training_with_dropout_learns(glands_splits):
    config = TrainConfig(**CASES["glands-adam-cosine"], precision="bf16", dropout=0.1, cuda_graphs=True)
    trainer = Trainer(config, glands_splits, device="cuda")
    losses = _losses(trainer, 4)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
