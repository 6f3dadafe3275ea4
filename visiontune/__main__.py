"""Allow ``python -m visiontune``."""

from visiontune.cli import main

# Guarded: processes spawned by the parallel retrains (analyze --jobs) import this module again.
if __name__ == "__main__":
    raise SystemExit(main())
