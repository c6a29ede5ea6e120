"""spec2vec (Huber et al. 2021) trained on the evaluation's training spectra: the unsupervised spectral embedding
practitioners compare against, fitted on exactly the spectra the heads see and never on a test lab or structure.

Documents are spec2vec's ``SpectrumDocument`` words (``peak@<m/z to 2 decimals>``) of each spectrum after the
processing its authors use: intensities scaled to a maximum of 1, m/z below 1,000, peaks under 0.001 of the
maximum dropped. Word2Vec is spec2vec's setting (CBOW, 300 dimensions, a window of 500 so that a spectrum is one
context, 5 negative samples, learning rate 0.025 decaying to 0.00025), on one worker thread so that a seed gives
the same model. A spectrum's vector is spec2vec's ``calc_vector`` (word vectors weighted by intensity^0.5) over the
words the model knows: the training spectra are a small vocabulary, and spec2vec's default of returning zeros
when 10 % of the weight is unknown would blank most test spectra rather than compare them.
"""
import numpy as np

INTENSITY_POWER = 0.5
N_DECIMALS = 2


def _document(mz: np.ndarray, intensity: np.ndarray, precursor_mz: float):
    from matchms import Spectrum

    from megatron_nexa.compat.spec2vec import SpectrumDocument

    mz, intensity = np.asarray(mz, np.float64), np.asarray(intensity, np.float64)
    keep = (mz < 1000.0) & (intensity > 0)
    mz, intensity = mz[keep], intensity[keep]
    if len(mz) == 0:
        return None
    intensity = intensity / intensity.max()
    keep = intensity >= 0.001
    return SpectrumDocument(Spectrum(mz=mz[keep], intensities=intensity[keep], metadata={"precursor_mz": precursor_mz}),
                            n_decimals=N_DECIMALS)


def train_spec2vec(items: list[tuple], epochs: int = 30, seed: int = 0, vector_size: int = 300):
    """A gensim ``Word2Vec`` over the documents of ``items`` (``(mz, intensity, precursor_mz)``)."""
    from gensim.models import Word2Vec

    if epochs < 1:
        raise ValueError(f"spec2vec needs at least one epoch, got {epochs}")
    documents = [d.words for d in (_document(*it) for it in items) if d is not None]
    if not documents:
        raise ValueError("spec2vec: no training spectrum has a peak below m/z 1,000")
    return Word2Vec(documents, vector_size=vector_size, window=500, min_count=1, sg=0, negative=5, epochs=epochs,
                    alpha=0.025, min_alpha=0.00025, workers=1, seed=seed)


def spec2vec_vectors(model, items: list[tuple]) -> np.ndarray:
    """``[len(items), vector_size]``; zeros for a spectrum with no peak the model knows (similarity 0 to all)."""
    from megatron_nexa.compat.spec2vec import calc_vector

    out = np.zeros((len(items), model.wv.vector_size), np.float64)
    for row, it in enumerate(items):
        doc = _document(*it)
        if doc is not None and any(w in model.wv.key_to_index for w in doc.words):
            out[row] = calc_vector(model, doc, intensity_weighting_power=INTENSITY_POWER,
                                   allowed_missing_percentage=100)
    return out
