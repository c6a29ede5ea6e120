"""megatron_nexa: pretrain Nexa-Spec, an encoder-only transformer for MS/MS spectra."""
__version__ = "0.1.0"


def embed(spectra, model, **options):
    """Embeddings of spectra (paths, arrays or matchms Spectrum objects): ``[CLS]``, or the mean of the peak
    tokens with ``pooling="mean"``; options and behaviour as ``megatron_nexa.inference.embed``."""
    from megatron_nexa.inference import embed as _embed

    return _embed(spectra, model, **options)
