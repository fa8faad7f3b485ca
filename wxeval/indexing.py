"""Integer positions on an axis, and orthogonal NumPy indexes built from them.

- :func:`positions`: where each wanted label sits on an axis (``-1`` when absent), for times,
  leads, levels and climatology labels alike.
- :func:`as_slice`: consecutive ascending positions as a slice (a contiguous read, and basic
  indexing, which copies ~10x faster than fancy indexing).
- :func:`orthogonal`: one NumPy index selecting, per axis independently, the given slices or
  positions (what ``zarr``'s ``get_orthogonal_selection`` or ``np.ix_`` do), with basic
  indexing whenever every axis reduces to a slice.

Used by the chunk reader (``chunks``), the statistics store (``store``), the field reads of
``evaluate`` and the climatology alignment (``align``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

Positions = np.ndarray | slice


def positions(axis: Sequence | np.ndarray, values: Sequence | np.ndarray) -> np.ndarray:
    """Position (int64) on ``axis`` of each of ``values``; ``-1`` where a value is absent.

    Labels compare as pandas compares them (datetimes of any unit, numbers); a label repeated
    on ``axis`` is found at its first occurrence."""
    index = pd.Index(np.asarray(axis))
    wanted = np.asarray(values)
    if index.is_unique:
        return index.get_indexer(wanted).astype(np.int64, copy=False)
    first = np.flatnonzero(~index.duplicated(keep="first"))
    found = index[first].get_indexer(wanted)
    return np.where(found >= 0, first[found], -1).astype(np.int64)


def as_slice(index):
    """``index`` as a slice when it is a 1-D integer array of consecutive ascending positions
    (``[3, 4, 5]`` → ``slice(3, 6)``); anything else is returned unchanged."""
    if (
        isinstance(index, np.ndarray)
        and index.ndim == 1
        and index.size
        and np.issubdtype(index.dtype, np.integer)
        and np.all(np.diff(index) == 1)
    ):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def orthogonal(index: Iterable[Positions], shape: Sequence[int]) -> tuple:
    """A NumPy index into an array of ``shape`` taking, on each axis, the given slice or 1-D
    integer positions, independently of the other axes (``a[orthogonal((i, j), a.shape)]`` has
    shape ``(len(i), len(j))``). Runs of consecutive positions become slices; when every axis
    is a slice the index is basic (a view), else ``np.ix_`` of the positions."""
    parts = [as_slice(np.asarray(p)) if not isinstance(p, slice) else p for p in index]
    if len(parts) != len(shape):
        raise ValueError(f"{len(parts)} per-axis indexes for an array of {len(shape)} axes")
    if all(isinstance(p, slice) for p in parts):
        return tuple(parts)
    return np.ix_(*[
        np.arange(*p.indices(n)) if isinstance(p, slice) else p
        for p, n in zip(parts, shape, strict=True)
    ])
