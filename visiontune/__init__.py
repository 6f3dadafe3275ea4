"""visiontune: hyperparameter search for image-analysis deep learning.

The package is organised by concern (see README and DESIGN.md):
``data`` loads and splits data sets, ``models`` builds networks from plain configs,
``engine`` holds the one training loop per task, ``cli`` is the command-line front.
Nothing here does work at import time: Ray workers import these modules.
"""

__version__ = "0.1.0"


def load_model(path, device: str = "auto", ensemble: int | str = 1):
    """The trained model of a ``train`` run folder, of a search's best trial by validation
    (``ensemble``: the mean of its best K; ``"cv"``: its cross-validation's fold ensemble), or of
    an exported folder, ready to ``predict(images)`` (paths, bytes or uint8 arrays); see
    :mod:`visiontune.trained`."""
    from visiontune.trained import load_model as load  # here: importing visiontune stays light

    return load(path, device=device, ensemble=ensemble)
