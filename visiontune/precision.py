"""Numerics: fp32 or bf16 autocast, and the measured choice between them (``precision="auto"``)."""

from __future__ import annotations

import copy
import statistics
import time
from typing import Callable

import torch
from torch import nn

# "auto" precision keeps bf16 only when a probe finds it at least this much faster.
BF16_MIN_SPEEDUP = 1.1


def cpu_has_bf16_units() -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX tiles or AVX512-BF16)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(probe is not None and probe() for probe in probes)


def use_bf16(precision: str, device: torch.device, speedup: Callable[[], float]) -> bool:
    """fp32 or bf16 autocast, as configured; ``auto`` decides by device and measurement.

    Neither device gains for every model. On a CPU bf16 pays only where the CPU has bf16
    matrix units (AMX, AVX512-BF16) and the model is wide enough: measured 2.9x per step for
    a 16-wide U-Net, but 0.76x for the report's 8-wide CNN. On an H100 the report's CNN
    (batch 32) and the FCN2 (batch 16) ran at 0.85x and 0.87x of fp32 in bf16
    (benchmarks/results/loop_throughput-cuda-16threads.json): such small steps are bound by
    kernel launches, and autocast adds cast kernels. So ``auto`` times a few steps of a copy
    of the model both ways and keeps bf16 only when it is clearly faster.

    ``speedup`` measures fp32 step time over bf16 step time (:func:`bf16_speedup`); it runs only
    where bf16 could pay.
    """
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return False
    if device.type == "cpu" and not cpu_has_bf16_units():
        return False
    return speedup() >= BF16_MIN_SPEEDUP


def bf16_speedup(model: nn.Module, make_optimizer: Callable, loss_fn: Callable, images: torch.Tensor,
                 targets: torch.Tensor, device: torch.device, rounds: int = 3, steps: int = 2) -> float:
    """Step time in fp32 over step time in bf16, on a copy of ``model`` and one batch.

    The two take turns (after one warm-up step each) and the medians are compared, so a slow
    spell of a shared machine does not decide alone: with single timings the choice flipped
    between runs for models near the threshold. The copy, its own optimiser and restored RNG
    states leave the real run untouched.
    """
    rng_state = torch.get_rng_state()
    cuda_rng_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    model = copy.deepcopy(model)
    optimizer = make_optimizer(model.parameters())
    model.train()

    def synchronize() -> None:
        if device.type == "cuda":  # CUDA runs asynchronously: wait before reading the clock
            torch.cuda.synchronize(device)

    def timed(bf16: bool, count: int) -> float:
        synchronize()
        start = time.perf_counter()
        for _ in range(count):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(model(images), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize()
        return time.perf_counter() - start

    try:
        timed(False, 1)
        timed(True, 1)
        fp32, bf16 = [], []
        for _ in range(rounds):
            fp32.append(timed(False, steps))
            bf16.append(timed(True, steps))
        return statistics.median(fp32) / statistics.median(bf16)
    finally:
        torch.set_rng_state(rng_state)
        if cuda_rng_state is not None:  # dropout on the GPU draws from the device's generator
            torch.cuda.set_rng_state(cuda_rng_state, device)
