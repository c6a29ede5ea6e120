"""Fingerprint → candidate ranking: mass filter, stereoisomers as one structure, ties, random baseline."""
import numpy as np
import pytest

from megatron_nexa.downstream.candidates import build_library, candidate_sets, hits, rank_candidates, structure_keys
from megatron_nexa.downstream.targets import morgan_fingerprints

ETHANOL, ETHER, PROPANOL = "CCO", "COC", "CCCO"
L_ALA, D_ALA = "C[C@H](N)C(=O)O", "C[C@@H](N)C(=O)O"


def test_library_merges_stereoisomers_and_drops_unparseable():
    lib = build_library([ETHANOL, ETHER, PROPANOL, L_ALA, D_ALA, "not a smiles", ""], n_bits=256)
    assert len(lib.keys) == 4 and len(set(lib.keys)) == 4
    keys, mass = structure_keys([ETHANOL, ETHER])
    assert mass[0] == pytest.approx(46.0419, abs=1e-3) and mass[0] == pytest.approx(mass[1])


def test_candidates_are_filtered_by_mass_and_ranked_by_fingerprint():
    lib = build_library([ETHANOL, ETHER, PROPANOL], n_bits=256)
    bits = morgan_fingerprints([ETHANOL, ETHER], 256)[0].astype(float)
    ethanol = candidate_sets([ETHANOL], lib)
    right = rank_candidates(bits[:1], ethanol)  # predicts ethanol's own bits
    wrong = rank_candidates(bits[1:], ethanol)  # predicts the ether's bits
    assert list(right["candidates"]) == [2]  # ethanol and its isomer; propanol is 14 Da heavier
    assert list(right["ranks"]) == [1] and list(wrong["ranks"]) == [2]
    h = hits(np.array([1, 2]), np.array([2, 2]), ks=(1, 5))
    assert h["hit@1"] == 0.5 and h["hit@5"] == 1.0 and h["random hit@1"] == 0.5 and h["random hit@5"] == 1.0


def test_ties_count_against_the_query():
    lib = build_library([L_ALA, ETHANOL, ETHER], n_bits=256)
    flat = np.zeros((1, 256))  # no information: every candidate scores the same
    assert list(rank_candidates(flat, candidate_sets([ETHANOL], lib))["ranks"]) == [2]
