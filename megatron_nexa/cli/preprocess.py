"""``nexa-preprocess``: spectra files (MGF, mzML, GeMS HDF5) → a versioned, sharded, indexed dataset."""
import argparse
import glob
import re
import sys

from megatron_nexa.cli.errors import closed_pipe, user_error
from megatron_nexa.cli.inputs import lab_names
from megatron_nexa.config import ConfigError
from megatron_nexa.data.filters import PreprocessSettings
from megatron_nexa.data.preprocess import JobOptions, preprocess

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in _UNITS:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 2GB, 512MiB, 1000000)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def build_parser() -> argparse.ArgumentParser:
    d = PreprocessSettings()
    p = argparse.ArgumentParser(prog="nexa-preprocess", description=__doc__)
    p.add_argument("inputs", nargs="+", help="files or glob patterns: *.mgf[.gz], *.mzML[.gz], *.h5/*.hdf5")
    p.add_argument("--out", required=True, help="root directory or s3://bucket/prefix")
    p.add_argument("--name", required=True, help="dataset name, e.g. gems or massbank")
    p.add_argument("--version", type=int, required=True, help="writes <out>/<name>_v<version>/")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--shard-size", type=parse_size, default=JobOptions.shard_bytes, help="peak bytes per shard")
    p.add_argument("--top-k", type=int, default=d.top_k)
    p.add_argument("--min-peaks", type=int, default=d.min_peaks)
    p.add_argument("--mz-min", type=float)
    p.add_argument("--mz-max", type=float)
    p.add_argument("--precursor-tolerance", type=float, help="drop peaks above precursor m/z + this (Da)")
    p.add_argument("--max-precursor-mz", type=float)
    p.add_argument("--no-dedup", action="store_true", help="keep exact duplicates")
    p.add_argument("--split-key", choices=["inchikey", "run", "record"], default=d.split_key)
    p.add_argument("--split-fractions", type=float, nargs=3, default=list(d.split_fractions),
                   metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--split-seed", type=int, default=d.split_seed)
    p.add_argument("--exclude-labs", type=lab_names, default=[],
                   help="comma-separated labs whose spectra are rejected, counted per lab: a lab is a run id's part "
                        "before ':' (MassBank's contributor), by exact name, and takes the labs named like it plus "
                        "'_…'; a name that is no lab of the inputs is an error. The Makefile's HELDOUT_LABS are the "
                        "labs nexa-eval holds out by default")
    p.add_argument("--work-dir", help="where unfinished work is kept (default: <out>/<name>_v<N>.work, "
                                      "or .nexa_work/ for a bucket)")
    p.add_argument("--keep-work", action="store_true")
    p.add_argument("--no-input-checksums", action="store_true",
                   help="skip the sha256 of each input file in the manifest (saves one read of the inputs)")
    p.add_argument("--strict", action="store_true",
                   help="a file that yields no record (unreadable, not the GeMS layout, empty) is an error (exit 2) "
                        "instead of one reject line with record '-'")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = []
    for pattern in args.inputs:
        matches = sorted(glob.glob(pattern))
        paths += matches or [pattern]
    try:
        settings = PreprocessSettings(
            top_k=args.top_k, min_peaks=args.min_peaks, mz_min=args.mz_min, mz_max=args.mz_max,
            precursor_tolerance=args.precursor_tolerance, max_precursor_mz=args.max_precursor_mz,
            deduplicate=not args.no_dedup, split_key=args.split_key, split_fractions=tuple(args.split_fractions),
            split_seed=args.split_seed, exclude_labs=tuple(args.exclude_labs))
        opts = JobOptions(workers=args.workers, shard_bytes=args.shard_size, work_dir=args.work_dir,
                          keep_work=args.keep_work, progress=not args.no_progress,
                          checksum_inputs=not args.no_input_checksums, strict=args.strict)
        preprocess(paths, args.out, args.name, args.version, settings, opts)
        sys.stdout.flush()
    except BrokenPipeError:
        return closed_pipe()
    except (ConfigError, ValueError, OSError) as e:  # OSError: FileNotFoundError, FileExistsError, permissions, ...
        return user_error("nexa-preprocess", e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
