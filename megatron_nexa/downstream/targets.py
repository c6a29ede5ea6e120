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


def synthetic_ccs(smiles: list, seed: int = 0) -> np.ndarray:
    """Generated collision cross sections (Å²), for testing the CCS head: no CCS data ships here.

    ``CCS = 13.2 · M^0.44 · (1 + 0.25 · Fsp3 − 0.04 · aromatic rings) · (1 + 1 % noise)``: the mass trend
    of measured [M+H]+ CCS of small molecules (≈ 100 Å² at 100 Da, 160 at 300, 250 at 800) times a shape
    factor (flexible sp³ chains unfold, flat aromatics pack), so the precursor mass alone does not give it.
    NaN where a SMILES does not parse.
    """
    from rdkit import Chem, RDLogger
    from rdkit.Chem import Descriptors, rdMolDescriptors

    RDLogger.DisableLog("rdApp.*")
    noise = np.random.default_rng(seed).normal(0, 0.01, len(smiles))
    out = np.full(len(smiles), np.nan)
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s) if s else None
        if mol is None:
            continue
        shape = 1 + 0.25 * rdMolDescriptors.CalcFractionCSP3(mol) - 0.04 * rdMolDescriptors.CalcNumAromaticRings(mol)
        out[i] = 13.2 * Descriptors.ExactMolWt(mol) ** 0.44 * shape * (1 + noise[i])
    return out
