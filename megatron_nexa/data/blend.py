"""Several dataset versions/sources blended by weight, as Megatron's BlendedDataset does.

One blended "epoch" has as many samples as the sources together; source k gets a share proportional to
its weight (upsampled by wrapping when its share exceeds its size). The mapping is arithmetic, so it is
reproducible and takes no memory; the sampler's seeded permutation does the mixing.
"""
import numpy as np


class BlendIndex:
    def __init__(self, sizes: list[int], weights: list[float]):
        if not sizes or len(sizes) != len(weights):
            raise ValueError("blend: need one weight per source")
        if any(s < 1 for s in sizes):
            raise ValueError(f"blend: every source needs at least one spectrum, sizes are {sizes}")
        total = sum(sizes)
        w = np.asarray(weights, dtype=np.float64) / sum(weights)
        counts = np.floor(w * total).astype(np.int64)
        counts[np.argsort(-(w * total - counts))[: total - counts.sum()]] += 1  # largest remainders
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.counts = counts
        self.starts = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def locate(self, t: int) -> tuple[int, int]:
        """Blended index → (source, index within that source)."""
        k = int(np.searchsorted(self.starts, t, side="right")) - 1
        return k, int((t - self.starts[k]) % self.sizes[k])
