"""The checksums of holly: :func:`file_digest`, the one file hash (sha256 for provenance, md5 for
Zenodo), and the sha256 of a file or an array that provenance records as input checksums.

Free of heavy imports (numpy only), so the downloader and the readers can use it without torch.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file, read in blocks of ``chunk`` bytes (1 MiB)."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file (provenance's input checksums)."""
    return file_digest(path, "sha256", chunk)


def sha256_array(array: np.ndarray) -> str:
    """sha256 hex digest of an array's values as contiguous float64 (e.g. a built-in shape)."""
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float64).tobytes()).hexdigest()
