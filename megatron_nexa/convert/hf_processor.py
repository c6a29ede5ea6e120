"""The export's processor: ``processing_nexa.py`` (this package's token vocabulary and peak-selection rule, then the
processor class of hf_templates/processing_tail.py.txt) and ``preprocessor_config.json`` (the training preprocessing
it applies), so that ``AutoProcessor.from_pretrained(dir, trust_remote_code=True)`` works with transformers alone and
turns spectra into the inputs ``megatron_nexa.embed`` would give the model."""
from megatron_nexa.config import ModelConfig
from megatron_nexa.convert.plain_sources import assemble

SOURCES = ["tokens.py", "data/peak_selection.py"]
SETTINGS = ("top_k", "mz_min", "mz_max", "precursor_tolerance", "max_precursor_mz")  # those that act on one spectrum
AUTO_MAP = {"AutoProcessor": "processing_nexa.NexaSpecProcessor",
            "AutoFeatureExtractor": "processing_nexa.NexaSpecProcessor"}


def processing_source() -> str:
    return assemble("The Nexa-Spec processor: MS/MS spectra to model inputs", SOURCES, "processing_tail.py.txt")


def processor_config(cfg: ModelConfig, preprocessing: dict | None, missing: str | None = None) -> dict:
    """The model's ``max_peaks`` and the settings of ``preprocessing`` that act on one spectrum (``min_peaks`` does
    not: as in ``embed``, every spectrum with a valid peak is processed). Without settings the file says why, and the
    processor warns and uses its defaults, which are the preprocessing defaults."""
    d = {"feature_extractor_type": "NexaSpecProcessor", "auto_map": AUTO_MAP, "max_peaks": cfg.max_peaks}
    if preprocessing:
        d.update({k: preprocessing[k] for k in SETTINGS if k in preprocessing})
    else:
        d["preprocessing_missing"] = missing or "no preprocessing settings were given to the export"
    return d
