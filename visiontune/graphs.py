"""A training step captured as one CUDA graph and replayed batch after batch.

The report's models are small: a training step of its 8-16-32 CNN launches about 60 kernels
from Python, each far shorter than its launch, so on a GPU the step is bound by the host
(benchmarks/results/gpu-check/). A CUDA graph records the kernels of one step (forward, loss,
backward, optimiser step, metric sums) once and replays them with a single launch.

The captured step reads its batch from static input tensors, so a replay first copies the
batch in. Shapes are fixed by the capture: only full batches replay; the engine runs the last,
smaller batch of an epoch eagerly. Values that the graph reads as constants (the learning rate)
make the engine capture again when they change.
"""

from __future__ import annotations

from typing import Callable

import torch

WARMUP_STEPS = 3  # eager steps on a side stream before capture (cuDNN and optimiser lazy set-up)


class GraphedStep:
    """``step(images, targets)`` recorded once; calling the object replays it on a new batch."""

    def __init__(self, step: Callable[[torch.Tensor, torch.Tensor], None], images: torch.Tensor,
                 targets: torch.Tensor, pool=None) -> None:
        self.images = images.clone()  # clone keeps the memory format (channels-last)
        self.targets = targets.clone()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            step(self.images, self.targets)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        """Run the recorded step on this batch (same shapes as the captured one)."""
        self.images.copy_(images)
        self.targets.copy_(targets)
        self.graph.replay()


def on_side_stream(function: Callable[[], None]) -> None:
    """Run ``function`` on a fresh CUDA stream, ordered after and before the current one.

    Warm-up steps before a capture run like this, as PyTorch's CUDA-graph notes advise, so the
    lazy set-up they trigger is not tied to the default stream.
    """
    current = torch.cuda.current_stream()
    side = torch.cuda.Stream()
    side.wait_stream(current)
    with torch.cuda.stream(side):
        function()
    current.wait_stream(side)
