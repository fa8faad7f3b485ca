"""Files of local stores: chunk folders without array metadata, and chunk files the selection
needs that are missing."""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import numpy as np
import zarr

from wxeval.align import climatology_labels
from wxeval.check.stores import _canonical, _local_root, _raw_var, _Store
from wxeval.schema import DAYOFYEAR, HOUR, INIT_TIME, LEAD_TIME, LEVEL, VALID_TIME

CHUNK_LISTING_LIMIT = 200_000  # do not compare more expected chunk keys than this per variable
CHUNK_STAT_LIMIT = 2_000  # up to this many expected chunk files: looked up one by one, not listed
# ... unless they are at least this fraction of the array's chunks: listing a folder costs
# ~0.45 µs per entry, looking a file up ~2-3 µs (a 1.5° month's 1302 chunks of a variable:
# 0.6 ms listed, 2.6-3.9 ms looked up; the pre-flight took 0.06 s of a 1 s run that way)
CHUNK_LIST_FRACTION = 0.2


class _LocalFileChecks:
    def check_orphans(self, st: _Store) -> None:
        root = _local_root(st.spec.path)
        key = (st.name, "orphans", ())
        if root is None or st.raw is None or key in self._sampled:
            return
        self._sampled.add(key)
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if sub.name in st.raw.variables:
                continue
            if any((sub / m).exists() for m in (".zarray", ".zgroup", "zarr.json")):
                continue
            if any(f.is_file() for f in sub.iterdir()):
                self.add(
                    "error",
                    "missing-metadata",
                    st.name,
                    sub.name,
                    f"{st.name}: folder {sub.name!r} holds chunk files but no array metadata "
                    "(.zarray): the store is truncated and the variable is invisible",
                )

    def check_chunks(self, st: _Store, variables, inits, leads) -> None:
        root = _local_root(st.spec.path)
        if root is None or len(inits) == 0:  # nothing to read: nothing to list
            return
        positions: dict[str, np.ndarray | None] = {}  # per dimension: the same for every var
        for var in variables:
            if st.raw is None or _raw_var(st, var) not in st.raw:
                continue
            raw_var = _raw_var(st, var)
            da = st.raw[raw_var]
            try:  # zarr knows the stored objects: shards if any, and how their keys are spelt
                groups = self.__dict__.setdefault("_zarr_groups", {})
                if root not in groups:  # one opening (its consolidated metadata) per store
                    groups[root] = zarr.open_group(str(root), mode="r")
                arr = groups[root][raw_var]
                chunks = tuple(arr.shards or arr.chunks)
                encode = arr.metadata.encode_chunk_key
            except Exception:  # noqa: BLE001 - not an array zarr can open: nothing to list
                continue
            if len(chunks) != da.ndim:
                continue
            needed = []
            for dim, size, c in zip(da.dims, da.shape, chunks, strict=True):
                if dim not in positions:
                    positions[dim] = self._needed_positions(st, dim, inits, leads)
                pos = positions[dim]
                if pos is None:
                    pos = np.arange(size)
                needed.append(np.unique(np.asarray(pos) // c))
            count = math.prod(len(n) for n in needed)
            if count == 0 or count > CHUNK_LISTING_LIMIT:
                continue
            # Once per store, variable and set of needed chunks: models sharing a truth store
            # but needing different valid times each get theirs checked.
            key = (st.name, "chunks", var, tuple(n.tobytes() for n in needed))
            if key in self._sampled:
                continue
            self._sampled.add(key)
            folder = root / raw_var
            expected = (encode(tuple(int(i) for i in idx)) for idx in itertools.product(*needed))
            total = math.prod(-(-n // c) for n, c in zip(da.shape, chunks, strict=True))
            if count <= CHUNK_STAT_LIMIT and count < CHUNK_LIST_FRACTION * total:
                # a few of many (a nightly rerun's): look each one up
                if not folder.is_dir():
                    continue
                base = os.fspath(folder) + os.sep  # str joins: pathlib's cost ~3x the stat
                missing = [k for k in expected if not os.path.isfile(base + k)]
            else:  # many: one listing of the folder per run
                listings = self.__dict__.setdefault("_chunk_listings", {})
                if (root, raw_var) not in listings:
                    listings[(root, raw_var)] = _chunk_keys(folder)
                present = listings[(root, raw_var)]
                if present is None:
                    continue
                missing = [k for k in expected if k not in present]
            if missing:
                shown = ", ".join(missing[:3])
                self.add(
                    "error",
                    "missing-chunks",
                    st.name,
                    var,
                    f"{st.name}: {var}: {len(missing)} of {count} chunk file(s) needed are "
                    f"missing ({shown}{', …' if len(missing) > 3 else ''}); Zarr would read "
                    "them as fill values (NaN): the store is truncated or still being written",
                )

    def _needed_positions(self, st: _Store, dim: str, inits, leads):
        raw = st.raw
        if dim not in raw.coords:
            return None
        role = st.spec.role
        values = raw[dim].values
        canon = _canonical(st, dim)
        if role == "forecast" and canon == INIT_TIME:
            return np.flatnonzero(np.isin(values, inits))
        if role == "forecast" and canon == LEAD_TIME:
            try:
                return np.flatnonzero(np.isin(values.astype("timedelta64[ns]"), leads))
            except (TypeError, ValueError):
                return None
        if role == "truth" and canon == VALID_TIME:
            valid = np.unique((inits[:, None] + leads[None, :]).ravel())
            return np.flatnonzero(np.isin(values, valid))
        if role == "climatology" and canon in (DAYOFYEAR, HOUR):
            doy, hour = climatology_labels(np.unique((inits[:, None] + leads[None, :]).ravel()))
            return np.flatnonzero(np.isin(values, doy if canon == DAYOFYEAR else hour))
        selected = self.config.evaluation.levels
        if canon == LEVEL and selected:
            ds = st.ds
            if ds is not None and LEVEL in ds.dims and ds.sizes[LEVEL] == values.size:
                values = ds[LEVEL].values  # whole hPa (Pa converted), in the stored order
            return np.flatnonzero(np.isin(values, selected))
        return None


def _chunk_keys(folder: Path) -> set[str] | None:
    if not folder.is_dir():
        return None
    keys = set()
    for dirpath, _dirs, files in os.walk(folder, followlinks=True):  # as a lookup would
        rel = Path(dirpath).relative_to(folder).as_posix()
        for f in files:
            if f.startswith(".") or f == "zarr.json":
                continue
            keys.add(f if rel == "." else f"{rel}/{f}")
    return keys
