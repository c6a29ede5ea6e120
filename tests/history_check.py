"""What reads as the chronology of the product's own making, one table for the docs check (tests/unit/test_docs.py)
and the code check (tests/unit/test_layout.py). This module, and the two tests' own examples, spell out the words
they look for, so the code check skips them."""
import re

# Everywhere: the docs, the code, the configs, the notes beside recorded results.
NARRATIVE = [
    (re.compile(r"\bsessions?[\s_-]*\d+", re.I), "a session number"),
    (re.compile(r"\b(?:this|that|next|last|previous|earlier|later) session\b", re.I), "a reference to a session"),
    (re.compile(r"\bwork periods?\b", re.I), "a work period"),
    (re.compile(r"\b(?:previous|last|next|earlier) (?:GPU )?(?:run|session|measurement)s?\b", re.I),
     "a reference to another run"),
    (re.compile(r"\brun \d+ of\b", re.I), "a reference to another run"),
    (re.compile(r"\bearlier,? we\b", re.I), "narrative"),
    (re.compile(r"\buntil session\b", re.I), "a session number"),
    (re.compile(r"\bRESULTS(?:\.md)?\s*§", re.I), "a citation of the results log"),
]
# Code, configs and recorded notes only (the docs cite the card's sections and give measurements' dates in prose).
CODE_ONLY = [
    (re.compile(r"\bRESULTS(\.md)?\b"), "a citation of the results log"),
    (re.compile(r"§\s*\d"), "a section citation that is not the model card's"),
    (re.compile(r"\b(before|until|since|up to|as of|after|on) \d{4}-\d{2}-\d{2}\b", re.I), "dated narrative"),
]
# A date on its own (not part of a path or folder name such as benchmarks/results/2026-11-26-cpu-...): code and
# configs only; recorded JSON carries the date it was measured.
LOOSE_DATE = re.compile(r"(?<![\w/-])\d{4}-\d{2}-\d{2}(?![\w-])")


def history_words(text: str) -> list[str]:
    """In prose (the docs): each narrative phrase found, as written."""
    return [m.group(0) for pattern, _ in NARRATIVE for m in pattern.finditer(text)]


def history(text: str, json_file: bool = False) -> list[str]:
    """In code: each line with narrative, and what kind. ``json_file``: a recorded result or its notes, where a
    measurement's own date is a fact, not narrative."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        for pattern, what in NARRATIVE + CODE_ONLY + ([] if json_file else [(LOOSE_DATE, "dated narrative")]):
            for m in pattern.finditer(line):
                if what.startswith("a section") and "card" in line[max(0, m.start() - 16):m.start()]:
                    continue  # the model card's sections are the spec, not history
                found.append(f"line {n}: {what}: {line.strip()[:120]}")
    return list(dict.fromkeys(found))  # once per line and kind
