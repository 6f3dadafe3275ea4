"""Does test-time augmentation help on validation? One U-Net run, the best epoch per TTA mode.

    python reproduction/tta/tta_probe.py EPOCHS SEED WIDTH      # e.g. 60 0 16; needs $VISIONTUNE_DATA

Prints validation Dice of every epoch plainly and with 4 and 8 views, then, for each mode, its
best validation epoch and the test Dice of that epoch's model (with and without the views).
"""

from __future__ import annotations

import copy
import json
import sys
import time

from visiontune.config import TrainConfig
from visiontune.data import load_splits
from visiontune.engine import Trainer

MODES = ("none", "flip", "d4")


def main(epochs: int, seed: int, width: int) -> None:
    config = TrainConfig(task="warwick", model="unet", depth=4, width=width, batchnorm=True, dropout=0.0,
                         optimizer="adam", lr=7e-4, batch_size=4, loss="ce+dice", augment="flip,rot90",
                         epochs=epochs, seed=seed, precision="auto")
    trainer = Trainer(config, load_splits("warwick"), device="cpu", threads=2)
    print("precision", trainer.precision, flush=True)
    best = {mode: (-1.0, 0, None) for mode in MODES}  # (val Dice, epoch, weights)
    started = time.time()
    for epoch in range(1, epochs + 1):
        trainer.fit_epoch()
        line = []
        for mode in MODES:
            trainer.config.tta = mode  # evaluation reads the mode at call time
            value = trainer.evaluate("val")["val/dice"]
            line.append(f"{mode} {value:.4f}")
            if value > best[mode][0]:
                best[mode] = (value, epoch, copy.deepcopy(trainer.model.state_dict()))
        print(epoch, f"{time.time() - started:.0f}s", " ".join(line), flush=True)
    result = {}
    for mode, (value, epoch, state) in best.items():
        trainer.model.load_state_dict(state)
        trainer.config.tta = mode
        result[mode] = {"val": value, "epoch": epoch, "test": trainer.evaluate("test")["test/dice"]}
        trainer.config.tta = "none"
        result[mode]["test_same_epoch_no_tta"] = trainer.evaluate("test")["test/dice"]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(*(int(argument) for argument in sys.argv[1:4]))
