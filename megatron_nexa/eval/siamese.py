"""An MS2DeepScore-style Siamese network (Huber et al. 2021) trained on the evaluation's training spectra: the
supervised structural-similarity baseline, taught to predict the Tanimoto similarity of two spectra's structures
from the cosine of their embeddings.

As in MS2DeepScore: one dense base network embeds each spectrum of a pair (two layers of 500 units with dropout
0.2, a 200-dimensional embedding), the loss is the squared error between the embeddings' cosine and the
structures' Tanimoto, and each epoch pairs every training structure with a partner drawn from a uniformly chosen
Tanimoto bin (ten bins of 0.1), so that the rare similar pairs are not drowned by dissimilar ones; each structure
of a pair brings one of its spectra, drawn at random. Unlike MS2DeepScore the input is the evaluation's binned
spectrum (1 Da bins, √intensity) rather than 0.1 Da bins, and there is no data augmentation: it trains in seconds
on a CPU. Tanimoto is on the evaluation's Morgan fingerprints, not MS2DeepScore's Daylight ones.
"""
import contextlib

import numpy as np
import torch
import torch.nn.functional as F

BINS = 10


class SiameseBase(torch.nn.Module):
    def __init__(self, n_in: int, hidden: int = 500, out: int = 200, dropout: float = 0.2):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                                       torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                                       torch.nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def tanimoto_matrix(bits: np.ndarray) -> np.ndarray:
    """``[n, n]`` Tanimoto of binary fingerprints (both empty: 1)."""
    b = torch.from_numpy(np.asarray(bits, np.float32))
    inter = b @ b.T
    counts = b.sum(1)
    union = counts[:, None] + counts[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter)).numpy()


def train_siamese(x: np.ndarray, bits: np.ndarray, keys: np.ndarray, epochs: int = 30, seed: int = 0,
                  pairs_per_structure: int = 4, batch_size: int = 256, lr: float = 1e-3, hidden: int = 500,
                  out: int = 200) -> SiameseBase:
    """``x[i]`` a training spectrum's input, ``bits[i]`` its structure's fingerprint, ``keys[i]`` its structure;
    spectra without a structure are left out by the caller."""
    if len(x) != len(bits) or len(x) != len(keys):
        raise ValueError(f"{len(x)} inputs, {len(bits)} fingerprints and {len(keys)} structure keys")
    if epochs < 1:
        raise ValueError(f"the Siamese model needs at least one epoch, got {epochs}")
    unique, first, inverse = np.unique(np.asarray(keys).astype(str), return_index=True, return_inverse=True)
    if len(unique) < 2:
        raise ValueError("the Siamese model needs training spectra of at least two structures")
    sim = tanimoto_matrix(bits[first])
    bin_of = np.minimum((sim * BINS).astype(np.int64), BINS - 1)
    members = [np.flatnonzero(inverse == s) for s in range(len(unique))]
    present = [np.unique(row) for row in bin_of]  # the Tanimoto bins each structure has partners in
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = SiameseBase(x.shape[1], hidden, out)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    inputs = torch.from_numpy(np.asarray(x, np.float32))
    model.train()
    with _one_thread():
        _epochs(model, opt, inputs, sim, bin_of, present, members, rng, epochs, pairs_per_structure, batch_size)
    return model.eval()


@contextlib.contextmanager
def _one_thread():
    """Batches of 256 through a 500-unit network are too small to share: on a 2-core machine shared with other
    work, one intra-op thread trained an epoch of 2,947 structures in 4 s and two threads in 11 to 20 s. The caller's
    thread count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _epochs(model, opt, inputs, sim, bin_of, present, members, rng, epochs, pairs_per_structure, batch_size):
    for _ in range(epochs):
        anchors = np.repeat(np.arange(len(members)), pairs_per_structure)
        rng.shuffle(anchors)
        partners = np.array([_partner(bin_of[a], present[a], rng) for a in anchors])
        left = np.array([rng.choice(members[a]) for a in anchors])
        right = np.array([rng.choice(members[p]) for p in partners])
        target = torch.from_numpy(sim[anchors, partners].astype(np.float32))
        for start in range(0, len(anchors), batch_size):
            sl = slice(start, start + batch_size)
            opt.zero_grad(set_to_none=True)
            score = F.cosine_similarity(model(inputs[left[sl]]), model(inputs[right[sl]]), dim=1)
            F.mse_loss(score, target[sl]).backward()
            opt.step()


def _partner(bins: np.ndarray, present: np.ndarray, rng: np.random.Generator) -> int:
    """A structure in a uniformly drawn Tanimoto bin of ``bins`` (the anchor's row, whose bins are ``present``);
    the nearest non-empty bin when that one is empty."""
    want = rng.integers(BINS)
    chosen = present[np.argmin(np.abs(present - want))]
    return int(rng.choice(np.flatnonzero(bins == chosen)))


def siamese_embeddings(model: SiameseBase, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    if len(x) == 0:
        return np.zeros((0, model.net[-1].out_features), np.float32)
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(np.asarray(x[i:i + batch_size], np.float32))).numpy()
                               for i in range(0, len(x), batch_size)])
