"""spec2vec 0.9 against the matchms this package pins: the one module it imports that matchms no longer has.

spec2vec 0.9.1 (its newest release) imports ``matchms.Spikes`` only to annotate ``SpectrumDocument.peaks``; matchms
renamed that class ``Fragments`` (``matchms.Fragments``), and 0.33 dropped the old module. Importing this module
registers ``matchms.Spikes`` as an alias of ``matchms.Fragments`` when it is missing, then imports spec2vec, so
``spec2vec`` works unchanged. Nothing in spec2vec calls the class, so the alias changes no result.
"""
import sys
import types

from megatron_nexa.compat import require

SUPPORTED = ">=0.9,<0.10"
VERSION = require("spec2vec", SUPPORTED)
MATCHMS_SUPPORTED = ">=0.27,<0.34"
MATCHMS_VERSION = require("matchms", MATCHMS_SUPPORTED)


def _alias_spikes() -> None:
    try:
        import matchms.Spikes  # noqa: F401  (older matchms: nothing to do)
    except ModuleNotFoundError:
        from matchms.Fragments import Fragments

        alias = types.ModuleType("matchms.Spikes", "alias of matchms.Fragments for spec2vec 0.9 (megatron_nexa.compat)")
        alias.Spikes = Fragments
        sys.modules["matchms.Spikes"] = alias


_alias_spikes()

from spec2vec import SpectrumDocument, calc_vector  # noqa: E402  (after the alias, which spec2vec's import needs)

__all__ = ["SpectrumDocument", "calc_vector", "VERSION"]
