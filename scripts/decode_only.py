"""Decode-only baseline for ``scripts/benchmark.py``: Zarr v2 chunk files read as bytes and
decoded with their numcodecs codecs, and nothing else (no zarr-python, no copy, no arithmetic).

The codec comes from the store's own metadata (``<array>/.zarray``: ``compressor``, then
``filters`` in reverse, as the Zarr v2 specification says), so the baseline decodes exactly
what the stores hold. :func:`read_and_decode` spreads the files over a thread pool; each
thread decodes into one reused buffer per chunk size, so the time is file reads plus decoding.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numcodecs
import numpy as np
from numcodecs.abc import Codec


@dataclass(frozen=True)
class ZarrV2Array:
    """The metadata of one Zarr v2 array in a local store (``<store>/<name>/.zarray``)."""

    folder: Path
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    order: str
    separator: str
    compressor: Codec | None
    filters: tuple[Codec, ...]

    @classmethod
    def open(cls, store: str | Path, name: str) -> ZarrV2Array:
        folder = Path(store) / name
        meta = json.loads((folder / ".zarray").read_text())
        if meta.get("zarr_format") != 2:
            raise ValueError(f"{folder}: not a Zarr v2 array (zarr_format "
                             f"{meta.get('zarr_format')!r})")
        compressor = meta.get("compressor")
        return cls(
            folder=folder,
            shape=tuple(int(n) for n in meta["shape"]),
            chunks=tuple(int(c) for c in meta["chunks"]),
            dtype=np.dtype(meta["dtype"]),
            order=meta.get("order", "C"),
            separator=meta.get("dimension_separator") or ".",
            compressor=None if compressor is None else numcodecs.get_codec(compressor),
            filters=tuple(numcodecs.get_codec(f) for f in meta.get("filters") or ()),
        )

    @property
    def chunk_size(self) -> int:
        """Values per stored chunk (edge chunks are stored at full size)."""
        return int(np.prod(self.chunks))

    def chunk_ids(self, selection: Sequence[np.ndarray | None]) -> list[tuple[int, ...]]:
        """Chunk indices holding an orthogonal selection: per leading axis, the positions
        wanted (``None``: all); axes beyond ``selection`` are taken whole. Sorted, unique."""
        per_axis = []
        for axis, (n, c) in enumerate(zip(self.shape, self.chunks, strict=True)):
            sel = selection[axis] if axis < len(selection) else None
            if sel is None:
                per_axis.append(range(-(-n // c)))
                continue
            pos = np.asarray(sel, dtype=np.int64).ravel()
            if pos.size and (pos.min() < 0 or pos.max() >= n):
                raise IndexError(f"{self.folder}: positions outside 0..{n - 1} on axis {axis}")
            per_axis.append(np.unique(pos // c).tolist())
        return list(itertools.product(*per_axis))

    def chunk_file(self, ids: tuple[int, ...]) -> Path:
        return self.folder / self.separator.join(str(i) for i in ids)

    def chunk_files(self, selection: Sequence[np.ndarray | None]) -> list[Path]:
        """The chunk files of :meth:`chunk_ids`."""
        return [self.chunk_file(ids) for ids in self.chunk_ids(selection)]

    def decode(self, blob: bytes, out: np.ndarray | None = None) -> np.ndarray:
        """One chunk file's bytes → array of shape ``chunks``; into ``out`` (a contiguous
        buffer of :attr:`chunk_size` values of :attr:`dtype`) when given and no filter
        follows the compressor."""
        data = blob
        if self.compressor is not None:
            into = out if out is not None and not self.filters else None
            data = self.compressor.decode(data, out=into)
        for f in reversed(self.filters):
            data = f.decode(data)
        arr = np.frombuffer(memoryview(data).cast("B"), dtype=self.dtype)
        if arr.size != self.chunk_size:
            raise ValueError(f"{self.folder}: a chunk decodes to {arr.size} values, "
                             f"expected {self.chunks}")
        return arr.reshape(self.chunks, order=self.order)

    def read(self) -> np.ndarray:
        """The whole array (for small coordinate arrays); absent chunks are not allowed."""
        out = np.empty(self.shape, self.dtype)
        for ids in self.chunk_ids(()):
            chunk = self.decode(self.chunk_file(ids).read_bytes())
            dst = tuple(slice(i * c, min((i + 1) * c, n))
                        for i, c, n in zip(ids, self.chunks, self.shape, strict=True))
            out[dst] = chunk[tuple(slice(0, s.stop - s.start) for s in dst)]
        return out


def read_and_decode(files: Sequence[tuple[ZarrV2Array, Path]], threads: int = 2,
                    batch: int = 16) -> dict[str, int]:
    """Read every file as bytes and decode it with its array's codec, on ``threads`` threads
    (batches of ``batch`` files); the decoded values are thrown away. Returns the number of
    files, the bytes read from files and the decoded bytes."""
    local = threading.local()

    def work(part: Sequence[tuple[ZarrV2Array, Path]]) -> tuple[int, int]:
        buffers = local.__dict__.setdefault("buffers", {})
        read = decoded = 0
        for arr, path in part:
            blob = path.read_bytes()
            key = (arr.chunk_size, arr.dtype)
            if key not in buffers:
                buffers[key] = np.empty(arr.chunk_size, arr.dtype)
            decoded += arr.decode(blob, out=buffers[key]).nbytes
            read += len(blob)
        return read, decoded

    parts = [files[i:i + batch] for i in range(0, len(files), batch)]
    with ThreadPoolExecutor(threads) as pool:
        totals = list(pool.map(work, parts))
    return {"files": len(files), "file_bytes": sum(t[0] for t in totals),
            "decoded_bytes": sum(t[1] for t in totals)}
