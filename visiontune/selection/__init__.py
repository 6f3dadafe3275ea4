"""Selection: what trains more configurations of a finished search, to choose among them better.

- ``grid``: :func:`grid.run_grid`, the one way to run given configurations (rows) as a grid
  search of the search service (``search.run_search``), inside the run folder: GPU fractions,
  clusters, retries, resume and bounded disk apply; a finished grid is read, not rerun;
- ``reseed``: the top-k retrained with more seeds, ranked by the mean (``analyze --reseed``);
- ``crossval``: the top-k on K folds of train+validation, ranked by the out-of-fold metric, the
  fold ensembles tested once, the refit (``analyze --cv``, ``search --cv``);
- ``studies`` and ``reproduce``: the report's experiments as grids (``visiontune reproduce``).

Each writes its record into the run folder (``reseed/reseed.json``, ``cv/cv.json``, the studies'
tables); ``analysis`` renders those records and trains nothing. The scores come from the model
layer (``trained``), as the search's own test figures do.

This module is imported when the command line starts: it holds constants only.
"""

DEFAULT_FOLDS = 5  # nnU-Net's: `--cv` without a number
QUICK_TOP = 2  # analyze --cv --quick: the top 2 configurations ...
QUICK_EPOCH_SHARE = 3  # ... for a third of the search's epochs
