"""Allow ``python -m visiontune``."""

from visiontune.cli import main

raise SystemExit(main())
