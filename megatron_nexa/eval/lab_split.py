"""The lab-and-structure-disjoint test: whole labs held out of training, on top of the structure split.

A structure-disjoint test still shares instruments, LC systems and acquisition habits with training; a model
used in another lab meets none of them. So ``nexa-eval`` holds out whole labs: no spectrum of a held-out lab is
trained on (heads, spec2vec, the Siamese model), and the test rows of the held-out labs form a second test set,
new in both structure (the dataset's own split) and lab. The test rows of the other labs are the
structure-disjoint set, scored by the same heads, so the two columns differ by the lab alone.

A spectrum's lab is defined in ``data/labs.py`` (MassBank's contributor); a spectrum without one is never held
out. Which labs are held out is fixed by their names and the seed: labs are taken in the order of a keyed
hash of their names, each one that keeps the held-out share of all spectra within ``fraction``. An encoder pretrained
on a dataset's whole training split has seen the held-out labs' training spectra (never their test structures);
one pretrained on a version preprocessed with ``--exclude-labs`` has not.
"""
import hashlib
from dataclasses import dataclass

import numpy as np

from megatron_nexa.data.labs import labs_of, merge_sublabs, unknown_lab_names


class LabError(ValueError):
    """A held-out lab that the data does not have, or a fraction outside [0, 1)."""


@dataclass(frozen=True)
class LabSplit:
    held_out: tuple[str, ...]  # held-out labs, sorted
    spectra: dict  # lab -> its spectra in each split ("train", "val", "test"), held-out labs only
    train: np.ndarray  # rows of the train split not in a held-out lab
    test: np.ndarray  # rows of the test split not in a held-out lab (structure-disjoint)
    lab_test: np.ndarray  # rows of the test split in a held-out lab (lab- and structure-disjoint)


def choose_labs(labs: np.ndarray, fraction: float, seed: int = 0) -> tuple[str, ...]:
    """Labs to hold out: in keyed-hash order of their names, each whose spectra keep the held-out total within
    ``fraction`` of all spectra. The same names, counts and seed give the same labs."""
    if not 0 <= fraction < 1:
        raise LabError(f"the held-out lab fraction must be in [0, 1), got {fraction}")
    names, counts = np.unique(np.asarray([n for n in labs if n], dtype=str), return_counts=True)
    key = str(seed).encode()
    order = sorted(range(len(names)), key=lambda i: hashlib.blake2b(names[i].encode(), digest_size=8, key=key).digest())
    budget, taken, chosen = fraction * len(labs), 0, []
    for i in order:
        if taken + counts[i] <= budget:
            chosen.append(str(names[i]))
            taken += int(counts[i])
    return tuple(sorted(chosen))


def split_by_lab(run_ids: dict[str, np.ndarray], fraction: float = 0.15, held_out: list[str] | None = None,
                 seed: int = 0) -> LabSplit:
    """``run_ids[split]`` for "train", "val" and "test". ``held_out`` names the labs (after merging) instead of
    ``fraction``; a name that is no lab of the data is an error that lists the labs."""
    labs = merge_sublabs_across({k: run_ids[k] for k in ("train", "val", "test")})
    every = np.concatenate([labs[k] for k in ("train", "val", "test")])
    if held_out is None:
        chosen = choose_labs(every, fraction, seed)
    else:
        known = set(every) - {""}
        if set(held_out) - known:
            raw = set().union(*(labs_of(v) for v in run_ids.values()))
            raise LabError(f"{'; '.join(unknown_lab_names(held_out, raw))}; the data's labs are "
                           f"{', '.join(sorted(known))}")
        chosen = tuple(sorted(set(held_out)))
    held = {k: np.isin(v.astype(str), list(chosen)) if chosen else np.zeros(len(v), bool) for k, v in labs.items()}
    spectra = {lab: {k: int((labs[k] == lab).sum()) for k in labs} for lab in chosen}
    return LabSplit(chosen, spectra, np.flatnonzero(~held["train"]), np.flatnonzero(~held["test"]),
                    np.flatnonzero(held["test"]))


def merge_sublabs_across(run_ids: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`labs_of` and :func:`merge_sublabs` over several splits at once, so a lab means the same in each."""
    names = list(run_ids)
    labs = [labs_of(run_ids[k]) for k in names]
    merged = merge_sublabs(np.concatenate(labs)) if labs else np.zeros(0, object)
    bounds = np.cumsum([0] + [len(v) for v in labs])
    return {k: merged[bounds[i]:bounds[i + 1]] for i, k in enumerate(names)}
