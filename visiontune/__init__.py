"""visiontune: hyperparameter search for image-analysis deep learning.

The package is organised by concern (see README and DESIGN.md):
``data`` loads and splits data sets, ``models`` builds networks from plain configs,
``engine`` holds the one training loop per task, ``cli`` is the command-line front.
Nothing here does work at import time: Ray workers import these modules.
"""

__version__ = "0.1.0"
