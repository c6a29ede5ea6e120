"""splitmix64's finaliser on numpy uint64 arrays: the bit mixer behind spectrum hashes and the sampler's
Feistel rounds (wrapping arithmetic; callers silence overflow warnings)."""
import numpy as np

M1, M2, GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint64(30))) * M1
    x = (x ^ (x >> np.uint64(27))) * M2
    return x ^ (x >> np.uint64(31))
