#!/usr/bin/env python
"""Spectra files → versioned, sharded, indexed dataset (the same as the ``nexa-preprocess`` command).

    python tools/preprocess/preprocess_spectra.py GeMS_A*.hdf5 --out processed --name gems --version 3 \
        --split-key run --workers 64
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from megatron_nexa.cli.preprocess import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
