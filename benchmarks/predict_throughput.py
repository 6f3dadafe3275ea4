"""Prediction throughput: ``visiontune predict`` against a plain per-image loop, and ONNX Runtime
against PyTorch, in one run.

MNIST's 10,000 test images and WARWICK's 60 test images are written as PNG files in a
temporary folder; a small model is trained for each (a CNN on 5,000 MNIST images for one epoch,
an FCN2 for five epochs: throughput does not depend on how well they learned). Then, each way
repeated ``--repeats`` times, interleaved, each after a half-second pause (so that threads still
spinning from the way before do not slow it), medians reported:

- ``visiontune predict``: ``predict.predict_files`` over the folder (batches of 256, writing
  ``predictions.csv`` or the mask PNGs and ``areas.csv``);
- a plain loop: each file opened with PIL, converted, made a tensor and run through the same
  model, as built (no channels-last), one image at a time (``torch.inference_mode``), the
  result kept in a list;
- the network alone on the preprocessed images in batches of 256: ONNX Runtime (CPU) against
  PyTorch, the same exported graph.

Target: ``visiontune predict`` at least 3x the plain loop.

    python benchmarks/predict_throughput.py
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import describe, git_revision, machine, save  # noqa: E402

SETTLE_S = 0.5  # seconds of pause before each timed way


def write_pngs(folder: Path, images) -> list[Path]:
    """uint8 (N, C, H, W) images as PNG files: grey, or the two WARWICK stains in R and G."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    paths = []
    for index, image in enumerate(images.numpy()):
        if image.shape[0] == 1:
            picture = image[0]
        else:
            picture = np.zeros((*image.shape[1:], 3), dtype=np.uint8)
            picture[..., :image.shape[0]] = image.transpose(1, 2, 0)
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        path = folder / f"{index:05d}.png"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def plain_loop(predictor, model, paths: list[Path]) -> list:
    """What a user would write: PIL per file, one image at a time through the model as built."""
    import numpy as np
    import torch
    from PIL import Image

    keep = predictor.card.keep_channels
    outputs = []
    with torch.inference_mode():
        for path in paths:
            with Image.open(path) as image:
                array = np.asarray(image.convert("L" if predictor.card.channels == 1 else "RGB"), dtype=np.float32)
            array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)[keep or slice(None)]
            outputs.append(model(torch.from_numpy(np.ascontiguousarray(array) / 255.0)[None]).argmax(1))
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each way [3]")
    parser.add_argument("--data-dir", help="folder holding mnist/ and WARWICK/ (default $VISIONTUNE_DATA)")
    args = parser.parse_args(argv)
    import numpy as np
    import onnxruntime
    import torch

    from visiontune.config import config_from_dict
    from visiontune.data import load_splits
    from visiontune.export import export_model
    from visiontune.inference import Ensemble
    from visiontune.models import build_model
    from visiontune.predict import predict_files
    from visiontune.trained import load_model
    from visiontune.train import train_one

    info = machine()
    results = {}
    with tempfile.TemporaryDirectory(prefix="vt-predict-") as folder:
        root = Path(folder)
        for name, task, settings, limit in (
                ("MNIST", "mnist", {"model": "cnn", "epochs": 1}, 5000),
                ("WARWICK", "warwick", {"model": "fcn2", "epochs": 5}, None)):
            splits = load_splits(task, data_dir=args.data_dir, download=False, train_limit=limit)
            config = config_from_dict({"task": task, "precision": "fp32", **settings}, "benchmark", splits.card)
            train_one(config, splits, root / f"{name}-run", progress=lambda line: None)
            paths = write_pngs(root / f"{name}-png", splits.test.images)
            predictor = load_model(root / f"{name}-run", device="cpu")
            # the plain loop's network: as built and loaded by hand, no batchnorm folding, no channels-last
            network = build_model(config.model_name(splits.card.kind), splits.card.kind,
                                  **config.model_kwargs(splits.card))
            network.load_state_dict(torch.load(root / f"{name}-run" / "best.pt", weights_only=True))
            plain_model = Ensemble([network.eval()], [config.tta]).eval()
            onnx_folder = export_model(root / f"{name}-run", "onnx", root / f"{name}-onnx")
            session = onnxruntime.InferenceSession(str(onnx_folder / "model.onnx"), providers=["CPUExecutionProvider"])
            batch = splits.test.images.float().div(255.0)
            times: dict[str, list[float]] = {"visiontune predict": [], "plain per-image loop": [],
                                             "network, PyTorch": [], "network, ONNX Runtime": []}
            def network_pytorch() -> None:
                with torch.inference_mode():
                    for start in range(0, len(batch), 256):
                        predictor.forward(batch[start:start + 256])

            def network_onnx() -> None:
                for start in range(0, len(batch), 256):
                    session.run(None, {"images": np.ascontiguousarray(batch[start:start + 256].numpy())})

            ways = {"visiontune predict": lambda: predict_files(predictor, [str(root / f"{name}-png")],
                                                                root / f"{name}-out-{len(times['visiontune predict'])}"),
                    "plain per-image loop": lambda: plain_loop(predictor, plain_model, paths),
                    "network, PyTorch": network_pytorch, "network, ONNX Runtime": network_onnx}
            for _ in range(args.repeats):
                for way, run in ways.items():
                    # A pause first: ONNX Runtime's and OpenMP's threads spin for a while after
                    # their work, and would otherwise slow whichever way comes next.
                    time.sleep(SETTLE_S)
                    started = time.perf_counter()
                    run()
                    times[way].append(time.perf_counter() - started)
            medians = {way: statistics.median(values) for way, values in times.items()}
            rates = {way: len(paths) / seconds for way, seconds in medians.items()}
            results[name] = {"images": len(paths), "seconds": times, "medians": medians, "images_per_s": rates,
                             "predict_over_plain": rates["visiontune predict"] / rates["plain per-image loop"],
                             "onnx_over_pytorch": rates["network, ONNX Runtime"] / rates["network, PyTorch"]}
            print(f"{name} ({len(paths)} images): " + ", ".join(f"{way} {rate:,.0f}/s" for way, rate in rates.items())
                  + f"; predict {results[name]['predict_over_plain']:.1f}x the plain loop, ONNX Runtime "
                  f"{results[name]['onnx_over_pytorch']:.2f}x PyTorch", flush=True)
    path = save("predict_throughput", {"machine": info, "revision": git_revision(), "repeats": args.repeats,
                                       "results": results})
    print(f"SUMMARY prediction throughput on {describe(info)}: "
          + "; ".join(f"{n} predict {r['predict_over_plain']:.1f}x plain (target 3x: "
                      f"{'met' if r['predict_over_plain'] >= 3 else 'NOT met'})" for n, r in results.items())
          + f" -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
