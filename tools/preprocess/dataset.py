#!/usr/bin/env python
"""verify / inspect / stats of a dataset version (the same as the ``nexa-dataset`` command)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from megatron_nexa.cli.dataset import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
