"""Write safetensors files one tensor at a time (optionally sharded, Hugging Face's index layout).

The format is an 8-byte little-endian header length, a JSON header (dtype, shape, byte offsets per
tensor) and the raw bytes. Shapes and dtypes are known before any data, so the header comes first and
each tensor is produced, written and freed in turn: peak memory is one tensor, not one model.
"""
import json
import struct
from pathlib import Path
from typing import Callable, Iterable

import torch

DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int64: "I64",
          torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
INDEX = "model.safetensors.index.json"


class Entry:
    """A tensor to write: name, shape, dtype, and a function producing it when its turn comes."""

    def __init__(self, name: str, shape: tuple, dtype: torch.dtype, produce: Callable[[], torch.Tensor]):
        self.name, self.shape, self.dtype, self.produce = name, tuple(shape), dtype, produce

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * torch.empty(0, dtype=self.dtype).element_size()


def _write_file(path: Path, entries: list[Entry], metadata: dict) -> None:
    header, offset = {"__metadata__": metadata}, 0
    for e in entries:
        header[e.name] = {"dtype": DTYPES[e.dtype], "shape": list(e.shape), "data_offsets": [offset, offset + e.nbytes]}
        offset += e.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # align the data section
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for e in entries:
            t = e.produce().to(e.dtype).contiguous().cpu()
            if tuple(t.shape) != e.shape:
                raise ValueError(f"{e.name}: produced shape {tuple(t.shape)}, announced {e.shape}")
            f.write(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            del t


def write_safetensors(entries: Iterable[Entry], path: str | Path, max_shard_bytes: int | None = None,
                      metadata: dict | None = None) -> list[Path]:
    """One file at ``path``, or, past ``max_shard_bytes``, ``model-0000k-of-0000n.safetensors`` shards
    beside it plus ``model.safetensors.index.json`` (the Hugging Face layout)."""
    path, entries = Path(path), list(entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", **(metadata or {})}
    total = sum(e.nbytes for e in entries)
    if max_shard_bytes is None or total <= max_shard_bytes:
        _write_file(path, entries, metadata)
        return [path]
    shards, current, size = [], [], 0
    for e in entries:
        if current and size + e.nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(e)
        size += e.nbytes
    shards.append(current)
    files, weight_map = [], {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        _write_file(path.parent / name, shard, metadata)
        files.append(path.parent / name)
        weight_map.update({e.name: name for e in shard})
    (path.parent / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    return files


def entries_from_state(state: dict) -> list[Entry]:
    return [Entry(k, tuple(v.shape), v.dtype, (lambda v=v: v)) for k, v in state.items()]
