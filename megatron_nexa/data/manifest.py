"""``manifest.json``: what a dataset version holds, how it was made, and the checksum of every file.

Written last: a version directory without a manifest is incomplete and is never read.
"""
import hashlib
import json
from dataclasses import asdict, dataclass, field

import fsspec
from fsspec.implementations.local import LocalFileSystem

from megatron_nexa.fsutil import atomic_write_text, fsync_path

MANIFEST = "manifest.json"
FORMAT = "megatron_nexa.spectra"
FORMAT_VERSION = 1
LAYOUT = ("shards/<split>/<split>_NNNNN.{bin,idx,parquet}: Megatron MMIDIDX indexed dataset of float32 peaks "
          "(per spectrum [m/z_1..m/z_n, intensity_1..intensity_n], m/z ascending, intensity / base peak), "
          "metadata rows aligned by index (Parquet)")


@dataclass
class Manifest:
    name: str
    version: int
    tool_version: str
    settings: dict
    split_rule: dict
    inputs: list
    counts: dict
    shards: dict  # split -> list of {"name", "num_spectra", "num_peaks", "files": {suffix: {bytes, sha256}}}
    rejects: dict  # {"file", "lines", "bytes", "sha256"}
    layout: str = LAYOUT
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=False) + "\n"

    @classmethod
    def load(cls, root: str) -> "Manifest":
        fs, path = fsspec.core.url_to_fs(root)
        target = f"{path.rstrip('/')}/{MANIFEST}"
        if not fs.exists(target):
            raise FileNotFoundError(f"{root}: no {MANIFEST} (not a dataset version, or an incomplete one)")
        with fs.open(target, "r") as f:
            try:
                data = json.load(f)
            except ValueError as e:
                raise ValueError(f"{root}/{MANIFEST}: unreadable, truncated or damaged ({e})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{root}/{MANIFEST}: format {found!r} is not {FORMAT!r}")
        try:
            return cls(**data)
        except TypeError as e:  # a key missing or unknown
            raise ValueError(f"{root}/{MANIFEST}: not a manifest of this tool ({e})") from None

    def shard_prefixes(self, split: str) -> list[str]:
        return [f"shards/{split}/{s['name']}" for s in self.shards.get(split, [])]

    def num_spectra(self, split: str) -> int:
        return sum(s["num_spectra"] for s in self.shards.get(split, []))


def sha256_file(fs, path: str, block: int = 1 << 22) -> tuple[int, str]:
    sha, size = hashlib.sha256(), 0
    with fs.open(path, "rb") as f:
        while chunk := f.read(block):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


class MissingSplit(ValueError):
    """A dataset version without a split the caller reads."""


def load_with_splits(root: str, splits) -> "Manifest":
    """The manifest of the dataset version at ``root``, which must have ``splits``: FileNotFoundError without a
    manifest, ValueError for a damaged one, MissingSplit naming what is absent and what there is."""
    manifest = Manifest.load(str(root))
    absent = [s for s in splits if s not in manifest.shards]
    if absent:
        raise MissingSplit(f"{root}: no split {' or '.join(map(repr, absent))} in its {MANIFEST} "
                           f"(it has {sorted(manifest.shards)})")
    return manifest


def verify(root: str) -> list[str]:
    """Re-check every file's size and sha256 and the counts against the manifest; return the problems."""
    from megatron_nexa.data.indexed import IndexedPeaks

    m = Manifest.load(root)
    fs, base = fsspec.core.url_to_fs(root)
    base = base.rstrip("/")
    problems = []

    def check(rel: str, expected: dict):
        path = f"{base}/{rel}"
        if not fs.exists(path):
            problems.append(f"{rel}: missing")
            return
        size, digest = sha256_file(fs, path)
        if size != expected["bytes"] or digest != expected["sha256"]:
            problems.append(f"{rel}: {size} bytes sha256 {digest[:12]}…, manifest says "
                            f"{expected['bytes']} bytes sha256 {expected['sha256'][:12]}…")

    for split, shards in m.shards.items():
        total = 0
        for shard in shards:
            for suffix, expected in shard["files"].items():
                check(f"shards/{split}/{shard['name']}{suffix}", expected)
            total += shard["num_spectra"]
            if isinstance(fs, LocalFileSystem):  # index structure too, where it can be memory-mapped
                try:
                    n = len(IndexedPeaks(f"{base}/shards/{split}/{shard['name']}"))
                    if n != shard["num_spectra"]:
                        problems.append(f"shards/{split}/{shard['name']}.idx: {n} spectra, manifest says "
                                        f"{shard['num_spectra']}")
                except (ValueError, FileNotFoundError) as e:
                    problems.append(str(e))
        if total != m.counts["per_split"].get(split, 0):
            problems.append(f"{split}: shards hold {total} spectra, counts say {m.counts['per_split'].get(split)}")
    check(m.rejects["file"], m.rejects)
    lines = _count_lines(fs, f"{base}/{m.rejects['file']}")
    if lines is not None and lines != m.rejects["lines"]:
        problems.append(f"{m.rejects['file']}: {lines} lines, manifest says {m.rejects['lines']}")
    c = m.counts
    if m.rejects["lines"] != c["rejected"]:
        problems.append(f"counts: rejected {c['rejected']} != {m.rejects['lines']} lines of {m.rejects['file']}")
    if c["records_in"] != c["written"] + c["rejected"]:
        problems.append(f"counts: in {c['records_in']} != written {c['written']} + rejected {c['rejected']}")
    if c["rejected"] != sum(c["rejected_by_reason"].values()):
        problems.append("counts: rejected != sum of rejected_by_reason")
    return problems


def _count_lines(fs, path: str, block: int = 1 << 22) -> int | None:
    if not fs.exists(path):
        return None  # already reported as missing
    with fs.open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(block), b""))


def sync(src: str, dst: str) -> Manifest:
    """Copy a version (e.g. from a bucket) to a local directory; every file checked against the manifest,
    the manifest written last so an interrupted sync is never mistaken for a complete one."""
    m = Manifest.load(src)
    fs, base = fsspec.core.url_to_fs(src)
    base = base.rstrip("/")
    out = fsspec.filesystem("file")
    files = {f"shards/{split}/{shard['name']}{suffix}": meta
             for split, shards in m.shards.items() for shard in shards for suffix, meta in shard["files"].items()}
    files[m.rejects["file"]] = m.rejects
    for rel, expected in files.items():
        target = f"{dst.rstrip('/')}/{rel}"
        if out.exists(target) and sha256_file(out, target) == (expected["bytes"], expected["sha256"]):
            continue  # resumed sync: already here and intact
        out.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        fs.get(f"{base}/{rel}", target)
        got = sha256_file(out, target)
        if got != (expected["bytes"], expected["sha256"]):
            raise ValueError(f"{src}/{rel}: copied {got[0]} bytes sha256 {got[1][:12]}…, manifest says "
                             f"{expected['bytes']} bytes sha256 {expected['sha256'][:12]}…")
        fsync_path(target)
    atomic_write_text(f"{dst.rstrip('/')}/{MANIFEST}", m.to_json())
    return m
