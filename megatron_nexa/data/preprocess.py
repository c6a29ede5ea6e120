"""Spectra files → a versioned, sharded, indexed dataset. Parallel, resumable, nothing lost silently.

Two stages, so a kill -9 at any moment loses at most the work in flight:
1. per unit (a file, or a row range of an HDF5 file), a worker reads, filters, hashes and assigns splits,
   writing ``<work>/unit_NNNNN/`` atomically (temp dir, fsync, then rename). Finished units are never redone;
   damaged ones are named and redone (``work_state``).
2. the main process walks the units in order — deduplicates, routes spectra to their split, cuts shards
   — into a staging location, writes ``manifest.json`` last, and (locally) renames staging into place.
   Stage 2 is a sequential copy, so after a kill it simply starts over from the finished units.
Output order depends only on the inputs and settings, never on ``workers`` or on interruptions.
"""
import dataclasses
import hashlib
import itertools
import json
import multiprocessing as mp
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from megatron_nexa import __version__
from megatron_nexa.data.dedup import HashSet
from megatron_nexa.data.filters import (PROCESSING_REVISION, SPLITS, PreprocessSettings, assign_splits,
                                        excluded_lab_reason, filter_chunk, spectrum_hashes)
from megatron_nexa.data.labs import unknown_lab_names
from megatron_nexa.data.manifest import MANIFEST, Manifest, sha256_file
from megatron_nexa.data.readers import Unit, plan_units, read_unit
from megatron_nexa.data.shards import HashingWriter, SplitWriter
from megatron_nexa.data.work_state import (discard_damaged_units, publish_unit, read_plan, remove_work, unit_dir,
                                           write_plan)
from megatron_nexa.fsutil import atomic_write_text, fsync_path

DUPLICATE = "exact duplicate of an earlier spectrum"


@dataclasses.dataclass(frozen=True)
class JobOptions:
    workers: int = 1
    shard_bytes: int = 2 * 10**9
    chunk_size: int = 4096  # spectra per in-memory chunk (text formats)
    hdf5_rows_per_unit: int = 65_536  # small units: bounded memory per worker, fine-grained resume
    hdf5_chunk_rows: int = 16_384  # temporaries stay under glibc's mmap threshold (fewer page faults)
    work_dir: str | None = None
    keep_work: bool = False
    checksum_inputs: bool = True  # sha256 of each input in the manifest (workers hash them beside the units)
    progress: bool = True
    strict: bool = False  # a file that yields no record (unreadable, wrong layout, empty) is an error, not a reject


def process_unit(args: tuple[int, Unit, PreprocessSettings, JobOptions, str, str]) -> dict:
    """Stage 1 for one unit; returns its counts. Idempotent: a finished unit is read back, not redone."""
    i, unit, settings, opts, work, fingerprint = args
    final = unit_dir(Path(work), i)
    if (final / "counts.json").exists():
        return json.loads((final / "counts.json").read_text())
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts = Counter()
    reasons = Counter()
    labs = set()  # the labs read, for --exclude-labs' check of its names
    nothing_read = None  # why the file yielded no record at all
    chunk_size = opts.hdf5_chunk_rows if unit.fmt == "gems" else opts.chunk_size
    with open(tmp / "peaks.f32", "wb") as peaks, open(tmp / "sizes.i32", "wb") as sizes, \
            open(tmp / "hashes.u64", "wb") as hashes, open(tmp / "split.i8", "wb") as splits, \
            open(tmp / "rejects.jsonl", "w") as rejects:
        meta = None
        for chunk, read_rejects in read_unit(unit, chunk_size):
            filtered = filter_chunk(chunk, settings)
            out = filtered.chunk
            ids = chunk.columns.get("record_id")
            bad = read_rejects + [(str(r if ids is None else ids[r]), why, "")
                                  for r, why in zip(filtered.rejected, filtered.reasons)]
            for record, why, detail in bad:
                line = {"file": Path(unit.path).name, "record": record, "reason": why}
                rejects.write(json.dumps({**line, "detail": detail} if detail else line) + "\n")
                reasons[why] += 1
                if record == "-" and nothing_read is None:
                    nothing_read = f"{why}: {detail}" if detail else why
            counts["records_in"] += len(chunk) + len(read_rejects)
            counts["peaks_in"] += filtered.peaks_in
            counts["peaks_out"] += filtered.peaks_out
            counts["kept"] += len(out)
            labs |= filtered.labs
            if not len(out):
                continue
            mask = np.arange(out.mz.shape[1])[None, :] < out.count[:, None]
            peaks.write(np.stack([out.mz, out.intensity], axis=1)[np.stack([mask, mask], axis=1)].tobytes())
            sizes.write((2 * out.count).astype(np.int32).tobytes())
            hashes.write(spectrum_hashes(out).tobytes())
            splits.write(assign_splits(out, settings).tobytes())
            table = out.metadata_table()
            if meta is None:  # Arrow IPC: an uncompressed scratch format, written at memory speed
                meta = pa.ipc.new_file(pa.OSFile(str(tmp / "meta.arrow"), "wb"), table.schema)
            meta.write_table(table)
        if meta is not None:
            meta.close()
    result = {"unit": unit.name, "fingerprint": fingerprint, "records_in": 0, "peaks_in": 0, "peaks_out": 0, "kept": 0,
              **counts, "rejected_by_reason": dict(reasons), "nothing_read": nothing_read}
    if settings.exclude_labs:
        result["labs"] = sorted(labs - {""})
    publish_unit(tmp, final, result)
    return result


class Assembler:
    """Stage 2: dedup, route by split, cut shards, collect rejects; deterministic in unit order."""

    def __init__(self, fs, staging: str, settings: PreprocessSettings, opts: JobOptions):
        self.fs, self.staging, self.settings = fs, staging, settings
        fs.makedirs(staging, exist_ok=True)
        self.writers = [SplitWriter(fs, f"{staging}/shards/{s}", s, opts.shard_bytes) for s in SPLITS]
        self.seen = HashSet()
        self.rejects = HashingWriter(fs.open(f"{staging}/rejects.jsonl", "wb"))
        self.reject_lines = 0
        self.counts = Counter()
        self.reasons = Counter()
        self.labs = set()

    def add(self, unit_dir: Path, unit_counts: dict) -> None:
        self.counts.update({k: unit_counts.get(k, 0) for k in ("records_in", "peaks_in", "peaks_out")})
        self.labs.update(unit_counts.get("labs", ()))
        self.reasons.update(unit_counts["rejected_by_reason"])
        with open(unit_dir / "rejects.jsonl", "rb") as f:
            data = f.read()
            self.rejects.write(data)
            self.reject_lines += data.count(b"\n")
        sizes = np.fromfile(unit_dir / "sizes.i32", dtype=np.int32)
        if not len(sizes):
            return
        hashes = np.fromfile(unit_dir / "hashes.u64", dtype=np.uint64)
        split = np.fromfile(unit_dir / "split.i8", dtype=np.int8)
        peaks = np.memmap(unit_dir / "peaks.f32", dtype=np.float32, mode="r")
        ends = np.cumsum(sizes, dtype=np.int64)
        with pa.memory_map(str(unit_dir / "meta.arrow")) as source:
            meta = pa.ipc.open_file(source).read_all()
        keep = self.seen.add_new(hashes) if self.settings.deduplicate else np.ones(len(sizes), bool)
        dups = np.flatnonzero(~keep)
        if len(dups):
            files, records = meta.column("source_file").to_pylist(), meta.column("record_id").to_pylist()
            lines = "".join(json.dumps({"file": files[r], "record": records[r], "reason": DUPLICATE}) + "\n"
                            for r in dups)
            self.rejects.write(lines.encode())
            self.reject_lines += len(dups)
            self.reasons[DUPLICATE] += len(dups)
            self.counts["peaks_out"] -= int(sizes[dups].sum()) // 2
        for s, writer in enumerate(self.writers):
            for r0, r1 in _runs(keep & (split == s)):  # contiguous rows: slices, no gather copy
                e0 = int(ends[r0 - 1]) if r0 else 0
                writer.append(peaks[e0:int(ends[r1 - 1])], sizes[r0:r1], meta.slice(r0, r1 - r0))
            writer.detach()

    def finish(self) -> tuple[dict, dict, dict]:
        shards = {s: [dataclasses.asdict(info) for info in w.close()] for s, w in zip(SPLITS, self.writers)}
        self.rejects.close()
        per_split = {s: sum(x["num_spectra"] for x in shards[s]) for s in SPLITS}
        written, rejected = sum(per_split.values()), sum(self.reasons.values())
        counts = {"records_in": self.counts["records_in"], "written": written, "rejected": rejected,
                  "per_split": per_split, "rejected_by_reason": dict(sorted(self.reasons.items())),
                  "peaks_in": self.counts["peaks_in"], "peaks_written": self.counts["peaks_out"]}
        if counts["records_in"] != written + rejected or rejected != self.reject_lines:
            raise RuntimeError(f"internal accounting error: in {counts['records_in']}, written {written}, "
                               f"rejected {rejected}, reject lines {self.reject_lines}")
        rejects = {"file": "rejects.jsonl", "lines": self.reject_lines, **self.rejects.record()}
        return counts, shards, rejects


def _sha256(path: str) -> str:
    return sha256_file(fsspec.filesystem("file"), path)[1]


def _runs(mask: np.ndarray) -> np.ndarray:
    """[start, stop) of each run of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return edges.reshape(-1, 2)


def _fingerprint(inputs: list[dict], settings: PreprocessSettings, opts: JobOptions) -> str:
    key = {"inputs": inputs, "settings": settings.to_dict(), "shard_bytes": opts.shard_bytes,
           "units": [opts.hdf5_rows_per_unit], "tool": __version__, "processing": PROCESSING_REVISION}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def preprocess(paths: list[str], out_root: str, name: str, version: int, settings: PreprocessSettings,
               opts: JobOptions = JobOptions(), log=print) -> Manifest:
    if not paths:
        raise ValueError("no input files")
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"input not found: {p}")
    dest = f"{out_root.rstrip('/')}/{name}_v{version}"
    fs, dest_path = fsspec.core.url_to_fs(dest)
    local = isinstance(fs, LocalFileSystem)
    if local and os.path.isfile(os.path.dirname(dest_path)):
        raise NotADirectoryError(f"{out_root}: a file, not a directory (the output root must be a directory)")
    inputs = [{"file": Path(p).name, "bytes": Path(p).stat().st_size} for p in paths]
    fingerprint = _fingerprint(inputs, settings, opts)
    work = Path(opts.work_dir or (dest_path + ".work" if local else f".nexa_work/{name}_v{version}"))
    if fs.exists(f"{dest_path}/{MANIFEST}"):
        existing = Manifest.load(dest)
        if existing.extra.get("fingerprint") == fingerprint:
            if work.is_dir() and not opts.keep_work and read_plan(work, log) in (None, fingerprint):
                log(f"{work}: removing the work directory a finished build left behind")
                remove_work(work)
            log(f"{dest}: already complete ({existing.counts['written']:,} spectra); nothing to do")
            return existing
        if existing.extra.get("processing_revision") != PROCESSING_REVISION:
            raise FileExistsError(f"{dest} was made by an earlier revision of the preprocessing (the peak selection or "
                                  f"filters have changed since, revision {PROCESSING_REVISION} now): remove it to "
                                  f"rebuild it, or choose a new --version")
        raise FileExistsError(f"{dest} already holds a dataset made from other inputs or settings; "
                              f"choose a new --version")

    work.mkdir(parents=True, exist_ok=True)
    if read_plan(work, log) not in (None, fingerprint):
        raise FileExistsError(f"{work} holds unfinished work of a different run (other inputs or settings); "
                              f"remove it or pass another --work-dir")
    units = plan_units(paths, opts.hdf5_rows_per_unit, opts.strict)
    discard_damaged_units(work, [u.name for u in units], fingerprint, log)
    write_plan(work, fingerprint, [u.name for u in units])

    staging = dest_path + ".partial" if local else dest_path
    if fs.exists(staging):
        fs.rm(staging, recursive=True)  # stage 2 always starts over; stage 1 work is kept
    assembler = Assembler(fs, staging, settings, opts)
    jobs = [(i, u, settings, opts, str(work), fingerprint) for i, u in enumerate(units)]
    t0, done = time.perf_counter(), 0
    bar = _progress(len(units), opts.progress)
    with _pool(opts.workers) as pool:
        results = pool.imap(process_unit, jobs) if pool else map(process_unit, jobs)
        digests = [pool.apply_async(_sha256, (p,)) for p in paths] if pool and opts.checksum_inputs else []
        for i, unit_counts in enumerate(results):
            if opts.strict and unit_counts.get("nothing_read"):
                raise ValueError(f"{units[i].path}: {unit_counts['nothing_read']} (a file that yields no record is "
                                 f"an error in strict mode)")
            assembler.add(unit_dir(work, i), unit_counts)
            done += unit_counts["records_in"]
            bar.update(1)
            bar.set_postfix_str(f"{done / (time.perf_counter() - t0):,.0f} spectra/s")
        if opts.checksum_inputs:
            for entry, p, job in itertools.zip_longest(inputs, paths, digests):
                entry["sha256"] = job.get() if job else _sha256(p)
    bar.close()
    wrong = unknown_lab_names(settings.exclude_labs, assembler.labs)
    if wrong:  # a misspelt lab would leak into a dataset meant to be without it: nothing is published
        assembler.rejects.close()
        fs.rm(staging, recursive=True)
        remove_work(work)
        raise ValueError(f"--exclude-labs: {'; '.join(wrong)}. Nothing was written.")
    counts, shards, rejects = assembler.finish()
    manifest = Manifest(
        name=name, version=version, tool_version=__version__, settings=settings.to_dict(),
        split_rule={"key": settings.split_key, "fractions": list(settings.split_fractions), "seed": settings.split_seed,
                    "rule": "split = bucket of blake2b-64(key, seed) / 2^64 in cumulative fractions (train, val, test);"
                            " inchikey: first InChIKey block, else SMILES, else the record; run: run id, else record"},
        inputs=inputs, counts=counts, shards=shards, rejects=rejects,
        extra={"fingerprint": fingerprint, "shard_bytes": opts.shard_bytes,
               "processing_revision": PROCESSING_REVISION})
    if local:
        _publish(staging, dest_path, manifest.to_json())
    else:  # a bucket: an object appears whole or not at all, and the manifest is written last
        with fs.open(f"{staging}/{MANIFEST}", "w") as f:
            f.write(manifest.to_json())
    if not opts.keep_work:
        remove_work(work)
    seconds = time.perf_counter() - t0
    log(f"{dest}: in {counts['records_in']:,} = written {counts['written']:,} + rejected {counts['rejected']:,} "
        f"(train {counts['per_split']['train']:,} / val {counts['per_split']['val']:,} / "
        f"test {counts['per_split']['test']:,}); {counts['records_in'] / max(seconds, 1e-9):,.0f} spectra/s")
    if settings.exclude_labs:
        log("excluded labs: " + ", ".join(f"{lab} {counts['rejected_by_reason'].get(excluded_lab_reason(lab), 0):,}"
                                          for lab in settings.exclude_labs))
    return manifest


def _publish(staging: str, dest: str, manifest_text: str) -> None:
    """Every file on disk, then the manifest, then the rename: a crash leaves the old state or the whole dataset."""
    for path in Path(staging).rglob("*"):
        fsync_path(path)
    atomic_write_text(Path(staging) / MANIFEST, manifest_text)
    os.replace(staging, dest)
    fsync_path(Path(dest).parent)


class _pool:
    """A process pool for workers > 1; None (run inline) for one worker."""

    def __init__(self, workers: int):
        self.pool = mp.get_context("spawn").Pool(workers) if workers > 1 else None

    def __enter__(self):
        return self.pool

    def __exit__(self, *exc):
        if self.pool:
            self.pool.terminate() if exc[0] else self.pool.close()
            self.pool.join()
        return False


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="unit", disable=not enabled, desc="preprocess")
