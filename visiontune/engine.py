"""The training engine: one fit/evaluate loop per task kind, shared by everything that trains.

``visiontune train``, every search trial and every retraining of a best configuration go
through :class:`Trainer`, so a number in a ranked table and a number from ``train`` come from
the same code. The data stay uint8 where their placement keeps them (``data.placement``: on the
device, in shared host memory or memory-mapped from disk) and batches are taken by index
(``batches``; no per-sample Dataset/DataLoader) and made float on the device one at a time; the
inner loop never synchronises with the host, losses are summed on the device and read once per
epoch.

Typical use::

    trainer = Trainer(config, splits)
    for epoch in range(config.epochs):
        train_metrics = trainer.fit_epoch()      # {"train/loss": ..., "train/acc": ...}
        val_metrics = trainer.evaluate("val")    # {"val/loss": ..., "val/acc": ...}
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from visiontune import inference, metrics, precision
from visiontune.config import TrainConfig
from visiontune.data.augment import Augmenter, parse_augment
from visiontune.data.card import DatasetCard
from visiontune.batches import split_batches
from visiontune.data.normalisation import Normalise
from visiontune.data.splits import DataSplits
from visiontune.errors import VisiontuneError
from visiontune.graphs import WARMUP_STEPS, GraphedStep, on_side_stream
from visiontune.kinds import Kind
from visiontune.models import build_model, count_parameters

class TrainingDiverged(VisiontuneError):
    """The training loss became NaN or infinite."""


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; explicit names are checked."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VisiontuneError("--device cuda was asked for, but no CUDA GPU is available here")
    return device


def make_optimizer(config: TrainConfig, parameters, capturable: bool = False) -> torch.optim.Optimizer:
    """SGD (lr, momentum) or Adam/AdamW (lr, betas); L2 is the optimizer's weight decay.

    ``capturable``: Adam/AdamW keep their step count on the device, so a CUDA graph can hold
    the optimiser step (``cuda_graphs``); SGD's step needs no such flag (no host-side state).
    """
    decay = config.reg_weight if config.regularizer == "l2" else 0.0
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=decay)
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer_class(parameters, lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=decay,
                           capturable=capturable)


class Trainer:
    """Trains one configuration on one task and evaluates it; see the module docstring."""

    def __init__(
        self,
        config: TrainConfig,
        data: DataSplits,
        device: str | torch.device | None = "auto",
        threads: int | None = None,
        placement: str | None = None,
    ) -> None:
        self.card: DatasetCard = data.card  # the task, as the data set describes itself
        self.kind: Kind = self.card.kind_spec
        config.validate(self.card)
        self.config = config
        self.device = resolve_device(device)
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(config.seed)
        self.model: nn.Module = build_model(config.model_name(self.card.kind), self.card.kind,
                                            **config.model_kwargs(self.card))
        # Channels-last suits oneDNN (CPU) and cuDNN alike for every convolutional model here:
        # measured 1.3x per training step for a U-Net on one CPU core, and 1.34x for the report's
        # 8-16-32 CNN at batch 32 on two (benchmarks/loop_throughput.py), same numbers otherwise.
        self.channels_last = any(isinstance(module, nn.Conv2d) for module in self.model.modules())
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.num_parameters = count_parameters(self.model)
        # CUDA graphs replay each full training step with one launch (visiontune.graphs); on a
        # CPU the setting has no effect.
        self.cuda_graphs = bool(config.cuda_graphs) and self.device.type == "cuda"
        self._graph: GraphedStep | None = None
        self._graph_lrs: list[float] = []
        self._warmup_left = WARMUP_STEPS
        self._graph_sums: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.optimizer = make_optimizer(config, self.model.parameters(), capturable=self.cuda_graphs)
        self.scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.epochs)
                          if config.lr_schedule == "cosine" else None)
        self.loss_fn = self.kind.loss(config.loss)
        # One generator drives batch order and augmentation: a run is reproducible from its seed.
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.augmenter = Augmenter(
            parse_augment(config.augment, self.card.augmentations, self.card.name), self.generator,
            rotate_degrees=config.rotate_degrees, shift_pixels=config.shift_pixels,
            noise_std=config.noise_std, stain_jitter=config.stain_jitter,
            padding=self.kind.padding,
        )
        # Train and validation only: the test split is the model layer's (trained.TrainedModel),
        # looked at once, after training.
        # Kept where the placement says (data.placement; default: on a GPU, on the CPU shared),
        # made float one batch at a time.
        self.placement = placement or ("device" if self.device.type == "cuda" else "host")
        normalise = Normalise.from_card(self.card)  # the card's: the model layer and exports apply the same
        self.splits = {name: split_batches(getattr(data, name), self.device, self.placement, normalise)
                       for name in ("train", "val")}
        self.epoch = 0  # epochs completed
        self.use_bf16 = precision.use_bf16(config.precision, self.device, lambda: precision.bf16_speedup(
            self.model, lambda params: make_optimizer(config, params, capturable=self.cuda_graphs), self.loss_fn,
            *next(iter(self.splits["train"].in_order(config.batch_size))), self.device))
        self.precision = "bf16" if self.use_bf16 else "fp32"  # what "auto" chose, for the record

    # ----------------------------------------------------------------------------- training
    def _autocast(self, cache: bool = True):
        if not self.use_bf16:
            return nullcontext()
        # A CUDA graph capture needs the cast cache off (cached casts would outlive the capture).
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=cache)

    def _l1_penalty(self) -> torch.Tensor:
        return torch.stack([p.abs().sum() for p in self.model.parameters()]).sum()

    def fit_epoch(self) -> dict[str, float]:
        """Train one epoch over the shuffled training split; returns ``train/...`` metrics.

        Raises :class:`TrainingDiverged` when the epoch's loss is not finite.
        """
        self.model.train()
        data = self.splits["train"]
        count, batch_size = len(data), self.config.batch_size
        order = torch.randperm(count, generator=self.generator, device=self.device)
        sums = self._epoch_sums()
        for images, targets in data.shuffled(order, batch_size):
            if self.augmenter and self.kind.augment_targets:
                images, targets = self.augmenter(images, targets)  # same transform on the mask
            elif self.augmenter:
                images, _ = self.augmenter(images)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            if self.cuda_graphs and images.shape[0] == batch_size:
                self._graphed_step(images, targets, sums)
            else:
                # With a graph captured, its gradient tensors must stay where they are: zero
                # them in place instead of dropping them.
                self.optimizer.zero_grad(set_to_none=self._graph is None)
                self._train_step(images, targets, sums)
        if self.scheduler is not None:
            self.scheduler.step()
        self.epoch += 1
        mean_loss = float(sums[0]) / count  # the one host synchronisation of the epoch
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(f"training diverged in epoch {self.epoch}: the loss is {mean_loss}")
        return {metrics.TRAIN_LOSS: mean_loss, self.kind.train_metric: self.kind.epoch_figure(sums, count)}

    def _epoch_sums(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Zeroed running sums (loss, hits or Dice numerator, Dice denominator) on the device.

        They stay on the device and are read once at the end of the epoch. Under CUDA graphs
        they are the same tensors every epoch, since the captured step adds into them.
        """
        fresh = (torch.zeros((), device=self.device), torch.zeros((), device=self.device, dtype=self.kind.hits_dtype()),
                 torch.zeros((), device=self.device))
        if not self.cuda_graphs:
            return fresh
        if self._graph_sums is None:
            self._graph_sums = fresh
        for tensor in self._graph_sums:
            tensor.zero_()
        return self._graph_sums

    def _train_step(self, images: torch.Tensor, targets: torch.Tensor,
                    sums: tuple[torch.Tensor, torch.Tensor, torch.Tensor], cache: bool = True) -> None:
        """Forward, backward and optimiser step on one batch (gradients already cleared), then
        add its loss and hits to ``sums`` without reading them on the host."""
        with self._autocast(cache):
            logits = self.model(images)
            loss = self.loss_fn(logits, targets)
        l1 = self.config.regularizer == "l1"
        objective = loss + self.config.reg_weight * self._l1_penalty() if l1 else loss
        objective.backward()
        self.optimizer.step()
        with torch.no_grad():
            # Integer counts and add_(alpha=) avoid a type-promoting copy per step (5% of a
            # small CNN's step).
            sums[0].add_(loss.detach(), alpha=images.shape[0])
            self.kind.add_step(logits, targets, sums, self.card.num_classes)

    def _graphed_step(self, images: torch.Tensor, targets: torch.Tensor,
                      sums: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        """One full batch under ``cuda_graphs``: a few eager warm-up steps, then capture, replay.

        The optimiser's learning rate is a constant inside the graph, so a schedule that changed
        it since the capture makes this capture the step again (once an epoch at most).
        """
        if self._warmup_left > 0:
            def warmup() -> None:
                self.optimizer.zero_grad(set_to_none=True)
                self._train_step(images, targets, sums)
            on_side_stream(warmup)
            self._warmup_left -= 1
            return
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self._graph is None or lrs != self._graph_lrs:
            pool = self._graph.graph.pool() if self._graph is not None else None
            self._graph = None
            # Gradients are unset during the capture, so the graph writes them afresh at each
            # replay instead of adding to what the last step left.
            self.optimizer.zero_grad(set_to_none=True)
            self._graph = GraphedStep(lambda i, t: self._train_step(i, t, sums, cache=False), images, targets, pool)
            self._graph_lrs = lrs
        self._graph(images, targets)

    # --------------------------------------------------------------------------- evaluation
    @torch.inference_mode()
    def evaluate(self, split: str = "val") -> dict[str, float]:
        """Loss and metrics of ``split`` (``val``, or ``train``), named ``<split>/loss``,
        ``<split>/acc`` or ``<split>/dice``, through the one inference code (``inference``: the
        configured test-time augmentation, the precision the run trains in)."""
        self.model.eval()
        batches = self.splits[split].in_order(self.kind.eval_rows(self.card))
        evaluation = inference.Evaluation(self.card, self.loss_fn)
        inference.evaluate_batches(lambda images: inference.view_outputs(
            self.model, images, self.config.tta, self.use_bf16, self.channels_last), batches, evaluation)
        return evaluation.metrics(split)

    # ------------------------------------------------------------------- state and resuming
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: weights, optimizer, schedule, epoch and RNG states.

        Only tensors and plain values, so it loads with ``torch.load(..., weights_only=True)``.
        """
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "torch_rng": torch.get_rng_state(),
            "generator": self.generator.get_state(),
            "bf16": self.use_bf16,  # what "auto" chose: a resumed run keeps the same numerics
        }
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; training continues exactly where it stopped."""
        self._graph = None  # a captured step would still point at the optimiser state replaced here
        self._warmup_left = WARMUP_STEPS
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        if "bf16" in state:
            self.use_bf16 = bool(state["bf16"])
            self.precision = "bf16" if self.use_bf16 else "fp32"
        torch.set_rng_state(state["torch_rng"])
        self.generator.set_state(state["generator"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)

