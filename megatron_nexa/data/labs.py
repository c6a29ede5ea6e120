"""Which lab a spectrum comes from, so that whole labs can be kept out of a dataset or of training.

A spectrum's lab is the part of its run id before the first ``:``: MassBank's LC_SYSTEM is
``<contributor>:<hash of the chromatography fields>``, so a lab takes all its LC systems with it. A run id without
``:`` is its own lab; a spectrum without one has no known lab. A lab whose name is another lab's followed by ``_``
(MassBank's ``Eawag_Additional_Specs``, beside ``Eawag``) is the same lab.
"""
import difflib

import numpy as np


def labs_of(run_ids) -> np.ndarray:
    """Each spectrum's lab: its run id up to the first ``:``, "" where there is none."""
    return np.array([(r or "").split(":", 1)[0] for r in run_ids], dtype=object)


def merge_sublabs(labs: np.ndarray) -> np.ndarray:
    """``A_more`` → ``A`` where ``A`` is a lab too (the shortest such ``A``)."""
    names = sorted({n for n in labs if n}, key=len)
    parent = {}
    for name in names:
        parent[name] = next((p for p in names if len(p) < len(name) and name.startswith(p + "_")), name)
    return np.array([parent.get(n, n) for n in labs], dtype=object)


def matching_lab(spectrum_labs: np.ndarray, labs) -> np.ndarray:
    """For each spectrum, given its lab (:func:`labs_of`), the one of ``labs`` it belongs to ("" for none): its lab
    is that name, or that name followed by ``_``. Needs no other spectrum, so preprocessing workers can apply it
    chunk by chunk; for names that are labs of the data it agrees with :func:`merge_sublabs` over the whole data."""
    wanted = sorted(set(labs), key=len)
    names, inverse = np.unique(np.asarray(spectrum_labs).astype(str), return_inverse=True)
    hit = np.array([next((w for w in wanted if n and (n == w or n.startswith(w + "_"))), "") for n in names],
                   dtype=object)
    return hit[inverse] if len(names) else np.zeros(0, object)


def unknown_lab_names(names, labs) -> list[str]:
    """What is wrong with each of ``names`` that is not a lab of data whose labs (run-id prefixes) are ``labs``:
    a lab is compared after merging (``Eawag_Additional_Specs`` is ``Eawag``), by its exact, case-sensitive name.
    The rule ``nexa-eval --holdout-labs`` applies, for commands that see the labs only as they read."""
    labs = sorted({str(n) for n in labs if n})
    merged = dict(zip(labs, merge_sublabs(np.array(labs, dtype=object)))) if labs else {}
    known = sorted(set(merged.values()))
    problems = []
    for name in names:
        if name in known:
            continue
        if name in merged:
            problems.append(f"{name} is part of lab {merged[name]} (a lab named like another plus '_…' is that "
                            f"lab): name {merged[name]}")
            continue
        close = [k for k in known if k.startswith(name + "_")] or difflib.get_close_matches(name, known, 3, 0.6) or [
            k for k in known if k.lower() == name.lower()]
        problems.append(f"no spectrum is from a lab named {name}" + (f" (did you mean {', '.join(close)}?)" if close
                                                                    else ""))
    return problems
