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

from megatron_nexa.downstream.targets import morgan_fingerprints


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


@dataclass
class CandidateSets:
    """The candidates of each query, found once and then scored for any number of predictors."""

    rows: np.ndarray  # which queries (input order) have a parseable structure that the library holds
    pools: list  # per such query: library rows within ``ppm`` of its structure's mass
    truth: list  # per such query: the library row of its structure
    unit_bits: np.ndarray  # the library's fingerprints, L2-normalised


def candidate_sets(query_smiles, library: Library, ppm: float = 10.0) -> CandidateSets:
    keys, mass = structure_keys(query_smiles)
    rows, pools, truth = [], [], []
    for i, (key, m) in enumerate(zip(keys, mass)):
        if not key:
            continue
        pool = np.flatnonzero(np.abs(library.mass - m) <= m * ppm * 1e-6)
        own = pool[library.keys[pool] == key]
        if len(own) == 0:  # the query's structure is not in the library
            continue
        rows.append(i)
        pools.append(pool)
        truth.append(int(own[0]))
    bits = library.bits.astype(np.float64)
    unit = bits / np.maximum(np.linalg.norm(bits, axis=1, keepdims=True), 1e-12)
    return CandidateSets(np.array(rows, dtype=np.int64), pools, truth, unit)


def rank_candidates(pred: np.ndarray, sets: CandidateSets) -> dict:
    """Rank of each query's true structure among its candidates (1 = top), by cosine with ``pred``
    (``[n_queries, n_bits]``, input order). Returns ``ranks`` and ``candidates`` (pool sizes)."""
    ranks = []
    for row, pool, truth in zip(sets.rows, sets.pools, sets.truth):
        p = pred[row].astype(np.float64)
        scores = sets.unit_bits[pool] @ (p / max(np.linalg.norm(p), 1e-12))
        true_score = scores[pool == truth][0]
        ranks.append(int((scores >= true_score).sum()))  # ties count against the query (many isomers share bits)
    return {"ranks": np.array(ranks), "candidates": np.array([len(pool) for pool in sets.pools])}


def hits(ranks: np.ndarray, candidates: np.ndarray, ks=(1, 5, 20)) -> dict:
    """hit@k of the ranking, and what a random ranking of the same candidate sets scores (its expectation)."""
    out = {f"hit@{k}": float((ranks <= k).mean()) for k in ks}
    out |= {f"random hit@{k}": float((np.minimum(k, candidates) / candidates).mean()) for k in ks}
    return out | {"queries": int(len(ranks)), "mean candidates": float(candidates.mean())}
