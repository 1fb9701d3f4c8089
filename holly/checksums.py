"""The one file hash of holly: :func:`file_digest` (sha256 for provenance, md5 for Zenodo).

Free of heavy imports, so the downloader and the readers can use it without torch.
"""

from __future__ import annotations

import hashlib
import os


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file, read in blocks of ``chunk`` bytes (1 MiB)."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
