"""megatron_nexa: pretrain Nexa-Spec, an encoder-only transformer for MS/MS spectra."""
__version__ = "0.1.0"


def embed(spectra, model, batch_size: int = 64, device: str = "cpu", per_peak: bool = False, progress: bool = False):
    """[CLS] embeddings of spectra (paths, arrays or matchms Spectrum objects); see megatron_nexa.inference."""
    from megatron_nexa.inference import embed as _embed

    return _embed(spectra, model, batch_size=batch_size, device=device, per_peak=per_peak, progress=progress)
