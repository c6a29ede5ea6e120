"""Two-stage structure annotation (card §9): predicted fingerprint → rank candidate structures → top k.

As in MassSpecGym's retrieval task, each query's candidates are the library structures whose exact mass
lies within ``ppm`` of the query structure's mass (the precursor mass, adduct removed); the query's own
structure is always among them. Structures are compared by InChIKey first block (the 2-D skeleton), so
stereoisomers count as one candidate. Candidates are scored by the cosine between the predicted bit
probabilities and each candidate's Morgan fingerprint; a candidate scoring the same as the true structure
ranks above it (isomers often share every bit).
"""
from dataclasses import dataclass

import numpy as np

from megatron_nexa.finetune.targets import morgan_fingerprints


@dataclass
class Library:
    keys: np.ndarray  # [m] InChIKey first blocks, unique
    smiles: np.ndarray  # [m] one SMILES per key
    mass: np.ndarray  # [m] monoisotopic neutral mass (Da)
    bits: np.ndarray  # [m, n_bits] uint8 Morgan fingerprints


def structure_keys(smiles) -> tuple[np.ndarray, np.ndarray]:
    """InChIKey first block and exact mass per SMILES (``""`` and NaN where RDKit cannot parse it)."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem.Descriptors import ExactMolWt

    RDLogger.DisableLog("rdApp.*")
    cache: dict = {}
    keys, mass = np.empty(len(smiles), dtype=object), np.full(len(smiles), np.nan)
    for i, s in enumerate(smiles):
        if s not in cache:
            mol = Chem.MolFromSmiles(s) if s else None
            cache[s] = ("", np.nan) if mol is None else (Chem.MolToInchiKey(mol).split("-")[0], ExactMolWt(mol))
        keys[i], mass[i] = cache[s]
    return keys, mass


def build_library(smiles, n_bits: int) -> Library:
    unique = sorted({s for s in smiles if s})
    keys, mass = structure_keys(unique)
    first = {}
    for i, k in enumerate(keys):
        if k and k not in first:
            first[k] = i
    idx = np.array(sorted(first.values()), dtype=np.int64)
    chosen = np.array(unique, dtype=object)[idx]
    return Library(keys[idx], chosen, mass[idx], morgan_fingerprints(list(chosen), n_bits)[0])


def rank_candidates(pred: np.ndarray, query_smiles, library: Library, ppm: float = 10.0) -> dict:
    """Rank of each query's true structure among its mass-filtered candidates (1 = top).

    Returns ``ranks`` and ``candidates`` (how many each query had), for queries whose structure parses.
    """
    keys, mass = structure_keys(query_smiles)
    bits = library.bits.astype(np.float64)
    bits /= np.maximum(np.linalg.norm(bits, axis=1, keepdims=True), 1e-12)
    ranks, counts = [], []
    for p, key, m in zip(pred.astype(np.float64), keys, mass):
        if not key:
            continue
        pool = np.flatnonzero(np.abs(library.mass - m) <= m * ppm * 1e-6)
        truth = pool[library.keys[pool] == key]
        if len(truth) == 0:  # the query's structure is not in the library
            continue
        scores = bits[pool] @ (p / max(np.linalg.norm(p), 1e-12))
        true_score = scores[pool == truth[0]][0]
        ranks.append(int((scores >= true_score).sum()))  # ties count against the query (many isomers share bits)
        counts.append(len(pool))
    return {"ranks": np.array(ranks), "candidates": np.array(counts)}


def hits(ranks: np.ndarray, candidates: np.ndarray, ks=(1, 5, 20)) -> dict:
    """hit@k of the ranking, and what a random ranking of the same candidate sets scores (its expectation)."""
    out = {f"hit@{k}": float((ranks <= k).mean()) for k in ks}
    out |= {f"random hit@{k}": float((np.minimum(k, candidates) / candidates).mean()) for k in ks}
    return out | {"queries": int(len(ranks)), "mean candidates": float(candidates.mean())}
