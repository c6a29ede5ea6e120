"""Supervised targets from spectrum metadata: Morgan fingerprints (RDKit) and per-LC-system RT."""
import numpy as np


def morgan_fingerprints(smiles: list, n_bits: int = 2048, radius: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``[n, n_bits]`` uint8 bits and a validity mask (missing or unparseable SMILES → invalid, all zeros).
    Each distinct SMILES is computed once."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdFingerprintGenerator

    RDLogger.DisableLog("rdApp.*")
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    cache: dict = {}
    out = np.zeros((len(smiles), n_bits), np.uint8)
    valid = np.zeros(len(smiles), bool)
    for i, s in enumerate(smiles):
        if not s:
            continue
        if s not in cache:
            mol = Chem.MolFromSmiles(s)
            cache[s] = None if mol is None else generator.GetFingerprintAsNumPy(mol).astype(np.uint8)
        if cache[s] is not None:
            out[i], valid[i] = cache[s], True
    return out, valid


class RTScaler:
    """RT is only comparable within one LC system: standardise per system with training statistics."""

    def __init__(self, systems: np.ndarray, rt: np.ndarray, min_count: int = 5):
        self.stats = {}
        for s in np.unique(systems):
            values = rt[(systems == s) & np.isfinite(rt)]
            if len(values) >= min_count and values.std() > 0:
                self.stats[s] = (float(values.mean()), float(values.std()))
        self.index = {s: i for i, s in enumerate(sorted(self.stats))}

    def known(self, systems: np.ndarray, rt: np.ndarray) -> np.ndarray:
        return np.array([s in self.stats for s in systems]) & np.isfinite(rt)

    def transform(self, systems, rt) -> np.ndarray:
        return np.array([(r - self.stats[s][0]) / self.stats[s][1] for s, r in zip(systems, rt)], np.float32)

    def scale(self, systems) -> np.ndarray:
        return np.array([self.stats[s][1] for s in systems], np.float32)

    def inverse(self, systems, z) -> np.ndarray:
        return np.array([self.stats[s][0] + self.stats[s][1] * v for s, v in zip(systems, z)], np.float32)

    def codes(self, systems) -> np.ndarray:
        return np.array([self.index[s] for s in systems], np.int64)
