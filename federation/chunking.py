"""Vector chunking for streaming masked contributions.

Vectors travel as little-endian uint64 bytes in 1–4 MiB chunks behind a header carrying the length m
(cells): far faster than a packed ``repeated uint64`` and bounded in memory. The length closes the stream (the
receiver refuses a stream that ends short or runs past m); there is no payload digest, since TLS already
authenticates every byte.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from federation.errors import VectorMismatch

#: Default chunk size in bytes (2 MiB = 262,144 uint64 cells).
CHUNK_BYTES = 2 * 1024 * 1024
MIN_CHUNK_BYTES = 1024 * 1024
MAX_CHUNK_BYTES = 4 * 1024 * 1024
CELL_BYTES = 8


def le_bytes(vector: npt.NDArray[np.uint64]) -> memoryview:
    """The vector's payload as little-endian uint64 bytes (a view, no copy on little-endian hosts)."""
    little = np.ascontiguousarray(vector, dtype="<u8")
    return little.data.cast("B")


def iter_chunks(vector: npt.NDArray[np.uint64], chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yield the payload in chunks of ``chunk_bytes`` (a multiple of 8; the last chunk may be shorter)."""
    if chunk_bytes % CELL_BYTES or not MIN_CHUNK_BYTES <= chunk_bytes <= MAX_CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be a multiple of 8 within 1–4 MiB, got {chunk_bytes}")
    payload = le_bytes(vector)
    for offset in range(0, len(payload), chunk_bytes):
        yield bytes(payload[offset : offset + chunk_bytes])


def cells_of(chunk: bytes, *, sender: str) -> npt.NDArray[np.uint64]:
    """View a received chunk as uint64 cells; a length that is not a whole number of cells is refused."""
    if len(chunk) % CELL_BYTES:
        raise VectorMismatch(
            f"{sender} sent a chunk of {len(chunk)} bytes, not a whole number of 8-byte cells; "
            "the stream is corrupt and the contribution was discarded"
        )
    return np.frombuffer(chunk, dtype="<u8")
