"""Does test-time augmentation help on validation? One U-Net run, best epoch per TTA mode."""
import copy, json, sys, time
import torch
from visiontune.config import TrainConfig
from visiontune.data import load_splits
from visiontune.engine import Trainer

epochs = int(sys.argv[1]); seed = int(sys.argv[2]); width = int(sys.argv[3])
config = TrainConfig(task="warwick", model="unet", depth=4, width=width, batchnorm=True, dropout=0.0,
                     optimizer="adam", lr=7e-4, batch_size=4, loss="ce+dice", augment="flip,rot90",
                     epochs=epochs, seed=seed, precision="auto")
splits = load_splits("warwick")
trainer = Trainer(config, splits, device="cpu", threads=2)
print("precision", trainer.precision, flush=True)
best = {m: (-1.0, 0, None) for m in ("none", "flip", "d4")}
t0 = time.time()
for epoch in range(1, epochs + 1):
    trainer.fit_epoch()
    line = []
    for mode in best:
        trainer.config.tta = mode
        value = trainer.evaluate("val")["val/dice"]
        line.append(f"{mode} {value:.4f}")
        if value > best[mode][0]:
            best[mode] = (value, epoch, copy.deepcopy(trainer.model.state_dict()))
    print(epoch, f"{time.time()-t0:.0f}s", " ".join(line), flush=True)
result = {}
for mode, (value, epoch, state) in best.items():
    trainer.model.load_state_dict(state)
    trainer.config.tta = mode
    result[mode] = {"val": value, "epoch": epoch, "test": trainer.evaluate("test")["test/dice"]}
    # also: the plain model of this epoch evaluated without TTA
    trainer.config.tta = "none"
    result[mode]["test_same_epoch_no_tta"] = trainer.evaluate("test")["test/dice"]
print(json.dumps(result, indent=1))
