"""The statistics store: per-init sufficient statistics, saved as they are computed.

Layout (a folder of small Zarr groups, local or on any fsspec URL such as ``gs://``)::

    <root>/<model>/<variable>/<entry key>/<part>.zarr      one computed task (block of inits)
    <root>/<model>/<variable>/<entry key>/<part>.zarr/.wxeval-complete   commit marker

Each part holds one data variable ``stats`` with dims (statistic, init_time, lead_time, region
[, level]) — the weighted sums of :mod:`wxeval.statistics`, of the groups its task computed —
and attributes naming its inputs. Its index (in the commit marker) lists its statistics by name
(``statistics``), so each group is found on its own: a metric of a new group computes only that
group for the inits already stored. A part written before statistic groups (format 1, no
``statistics`` in its index) holds :data:`wxeval.metrics.STATISTICS` and is read as such.
A part counts only once its commit marker exists (written last; locally the part is also
written to a temporary name and renamed), so a job killed at any moment leaves either a whole
part or nothing that is read.

The **entry key** hashes everything that determines a number other than the init, lead,
level and region a statistic is stored under: see :func:`entry_key` for the list of inputs and
why each is (or is not) in it. The init range and lead selection are *not* part of the key:
widening them reuses every part already computed. Regions are matched by their definition key
(:meth:`wxeval.regions.Region.key`: name, bounds, land), so adding a region, or changing one
custom box, recomputes the inits that lack it (all regions of those inits are written again; the
other regions' numbers are unchanged). An entry written under an older key definition
(:data:`KEY_VERSION`) lives in another folder: it is never read, its statistics are recomputed.

Writers: only the process that runs ``wxeval score`` writes (workers return statistics to it),
and every part has a name unique to its writer (block id + a random suffix), so two jobs
sharing a ``gs://`` store never write the same object; when two complete parts overlap, both
hold the same numbers and the later one is used.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numcodecs
import numpy as np
import xarray as xr

from wxeval.indexing import orthogonal
from wxeval.loaders import StoreSpec, open_store
from wxeval.metrics import STATISTICS
from wxeval.schema import INIT_TIME, LATITUDE, LEAD_TIME, LEVEL, LONGITUDE

MARKER = ".wxeval-complete"
FORMAT_VERSION = 1
#: Version of what :func:`entry_key` covers. Raising it changes every key, so entries of an
#: older definition are not found (recomputed, never mixed with new ones); parts keep
#: :data:`FORMAT_VERSION`. 2: + land-sea mask values, level matching, exact level values.
KEY_VERSION = 2
#: Parts of one entry (same leads, levels, regions) merged into one by a run: see ``compact``.
COMPACT_AFTER = 16
#: Largest merged part (uncompressed statistics); larger parts are never merged again.
MERGED_PART_BYTES = 64 * 2**20
#: Listings a reader tries while another job deletes the parts it has merged.
LIST_ATTEMPTS = 5
#: Byte-shuffled LZ4: on float64 statistics it compresses as well as zstd (ratio ~1.5) and
#: decodes 2x faster (every run reads back all of an entry's parts).
PART_COMPRESSOR = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)


_VALUE_ENCODING = ("dtype", "scale_factor", "add_offset", "_FillValue", "missing_value", "units",
                   "calendar")


def store_fingerprint(spec: StoreSpec | None, variable: str, stores=open_store) -> str:
    """Identity of one variable of a store: path, dtype, attrs, level and grid coordinates and
    the encodings that change values — not its chunking nor the length of its time axis.
    ``stores`` opens the store (the plan's opened stores on the driver)."""
    if spec is None:
        return "none"
    ds = stores(spec)
    parts: list = [spec.path, sorted(spec.rename), variable]
    if variable in ds.variables:
        da = ds[variable]
        parts += [str(da.dtype), sorted((k, str(v)) for k, v in da.attrs.items())]
        parts += [sorted((k, str(v)) for k, v in da.encoding.items() if k in _VALUE_ENCODING)]
        if LEVEL in da.dims:  # exact stored values (850.9 is not 850)
            parts.append([float(x) for x in np.atleast_1d(da[LEVEL].values)])
    for dim in (LATITUDE, LONGITUDE):
        if dim in ds.coords:
            parts.append(np.round(ds[dim].values.astype(float), 6).tolist())
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:20]


def land_sea_mask_fingerprint(
    truth: StoreSpec, land_sea_mask: StoreSpec | None, stores=open_store
) -> str:
    """Identity of the land fraction the land regions of a model use (``land_sea_mask`` from
    the config, else the truth's own ``land_sea_mask``): the source's path and renames, and a
    hash of the values (one 2-D field, cheap: a mask rewritten in place under the same path
    changes it too). ``"none"`` when there is no mask."""
    from wxeval.evaluate import land_sea_mask_array
    from wxeval.schema import LAND_SEA_MASK

    source = land_sea_mask or truth
    if LAND_SEA_MASK not in stores(source).variables:
        return "none"
    values = np.ascontiguousarray(land_sea_mask_array(truth, land_sea_mask, stores))
    digest = hashlib.sha256(
        json.dumps([source.path, sorted(source.rename), list(values.shape)]).encode()
    )
    digest.update(values.tobytes())
    return digest.hexdigest()[:20]


def entry_key(
    forecast: str,
    truth: StoreSpec,
    climatology: StoreSpec | None,
    variable: str,
    skipna: bool,
    *,
    land_sea_mask: str = "none",
    levels: Sequence[Sequence[float | None]] | None = None,
    recipe: str | None = None,
    stores=open_store,
) -> str:
    """Hash of everything that determines a statistic's value except the init, lead, level
    and region it is stored under.

    In the key, and why:

    * ``forecast`` — fingerprint of the forecast store's variable (:func:`store_fingerprint`:
      path, renames, dtype, attrs, value encodings, exact level values, grid), or
      ``baseline:<kind>`` for the built-in baselines: the forecast values.
    * ``truth``, ``climatology`` — the same fingerprints: the values compared against. The
      truth's latitudes and longitudes in its fingerprint are the grid the area weights
      w_i and every region mask are computed on.
    * ``variable`` — which field.
    * ``skipna`` — NaN points dropped or making values NaN.
    * ``land_sea_mask`` — :func:`land_sea_mask_fingerprint`: the land fraction of the land
      regions (a new mask, or the same path rewritten, recomputes the whole entry; box regions
      included, simpler than per-region keys and as correct).
    * ``levels`` — per forecast level, the truth (and climatology) level it is matched to, as
      stored: ``[[forecast, truth, climatology or None], ...]`` over every level of the
      forecast (not only the selected ones, so a level selection keeps the key).
    * ``recipe`` — hook for derived variables (e.g. wind speed from u and v): a description of
      how the field is derived; ``None`` for stored variables.
    * :data:`KEY_VERSION` — what the key covers, and the rules coded in wxeval (alignment by
      init, climatology lookup, area weights, level matching).

    Not in the key: the init times and lead times (parts are indexed by them, so widening a
    selection reuses what is stored), the selected levels (indexed too), the regions (indexed by
    :meth:`wxeval.regions.Region.key`, name + bounds + land: a changed custom box is a new
    region key, recomputed on its own), the metrics (all derive from the same sums), chunking
    and the length of a store's time axis (appending inits keeps the key), compute settings.
    """
    payload = json.dumps(
        {
            "format": FORMAT_VERSION,
            "key_version": KEY_VERSION,
            "forecast": forecast,
            "truth": store_fingerprint(truth, variable, stores),
            "climatology": store_fingerprint(climatology, variable, stores),
            "variable": variable,
            "skipna": bool(skipna),
            "land_sea_mask": land_sea_mask,
            "levels": [list(p) for p in levels] if levels is not None else None,
            "recipe": recipe,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


@dataclass
class StatisticsStore:
    """A statistics store rooted at ``root`` (local folder or fsspec URL)."""

    root: str
    storage_options: dict | None = None

    def __post_init__(self):
        self.fs, self._root = fsspec.core.url_to_fs(self.root, **(self.storage_options or {}))
        self._local = self.fs.protocol in ("file", ("file", "local"), "local") or (
            isinstance(self.fs.protocol, tuple) and "file" in self.fs.protocol
        )
        self._indexes: dict[str, dict | None] = {}
        # Complete parts per entry folder, listed once per run and kept up to date with this
        # store's own writes and deletions (a listing made stale by another job is refreshed
        # by :meth:`load` when a part it lists has gone).
        self._listed: dict[str, list[str]] = {}

    def _path(self, *parts: str) -> str:
        return "/".join([self._root.rstrip("/"), *parts])

    def _url(self, path: str) -> str:
        return path if self._local else self.fs.unstrip_protocol(path)

    # -- writing ------------------------------------------------------------------------------

    def write_part(
        self,
        model: str,
        variable: str,
        key: str,
        block: int,
        stats: xr.DataArray,
        region_keys: Sequence[str],
        attrs: dict | None = None,
        *,
        prefix: str = "b",
    ) -> str:
        """Save one computed part atomically; returns its path. ``prefix`` ``c`` marks a part
        made by :meth:`compact`."""
        name = f"{prefix}{block:+06d}-{uuid.uuid4().hex[:12]}.zarr"
        folder = self._path(model, variable, key)
        final = self._path(model, variable, key, name)
        index = _index_of(stats, region_keys)
        attrs = {
            "_ARRAY_DIMENSIONS": index["dims"],
            "wxeval_format": FORMAT_VERSION,
            "model": model,
            "variable": variable,
            "entry_key": key,
            "block": int(block),
            "index": index,
            **(attrs or {}),
        }
        marker = json.dumps(index).encode()
        if self._local:
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".tmp-{name}")
            # objects written as they come (the commit marker last)
            write_durably(tmp, itertools.chain(_part_objects(stats.values, attrs).items(),
                                               [(MARKER, marker)]))
            os.replace(tmp, final)
            _fsync_dir(folder)
        else:
            objects = _part_objects(stats.values, attrs)
            self.fs.pipe({f"{final}/{rel}": blob for rel, blob in objects.items()})
            self.fs.pipe(final + "/" + MARKER, marker)  # the commit: only after the rest
        if folder in self._listed:
            self._indexes[final] = index
            self._listed[folder] = sorted([*self._listed[folder], final])
        return final

    # -- reading ------------------------------------------------------------------------------

    def parts(self, model: str, variable: str, key: str) -> list[str]:
        """Complete parts of one entry (those whose commit marker exists), in name order."""
        folder = self._path(model, variable, key)
        if folder in self._listed:
            return list(self._listed[folder])
        out = committed_parts(self.fs, folder)
        unknown = [p for p in out if p not in self._indexes]
        if unknown:
            # Every commit marker carries its part's coordinates: one fetch gives the index.
            blobs = self.fs.cat([p + "/" + MARKER for p in unknown], on_error="return")
            for p in unknown:
                self._indexes[p] = _parse_index(blobs.get(p + "/" + MARKER))
        # A marker without a readable index (damaged): the part is ignored and recomputed.
        self._listed[folder] = sorted(p for p in out if self._indexes.get(p) is not None)
        return list(self._listed[folder])

    def index(self, path: str) -> dict:
        """Coordinates of a complete part (from its commit marker, read by :meth:`parts`)."""
        return self._indexes[path]

    def values(self, paths: Sequence[str]) -> dict[str, np.ndarray]:
        """Statistics of parts, dims (statistic, init_time, lead_time, region, level), fetched
        together (two batched requests on object stores)."""
        from wxeval.chunks import DamagedArrayError, read_single_chunk_arrays

        try:
            arrays = read_single_chunk_arrays(self.fs, [p + "/stats" for p in paths])
        except DamagedArrayError as err:
            part = err.array.rsplit("/", 1)[0]
            raise DamagedArrayError(err.array, (
                f"statistics store: part {self._url(part)} is damaged ({err}): delete that "
                "folder and rerun, its inits are computed again"
            )) from err
        out = {}
        for p in paths:
            values = arrays[p + "/stats"]
            if values is None:  # not one chunk: let zarr-python read it
                import zarr

                values = np.asarray(zarr.open_array(
                    self._url(p) + "/stats",
                    mode="r",
                    storage_options=None if self._local else self.storage_options,
                )[...])
            dims = self.index(p)["dims"]
            if LEVEL not in dims:
                values = values[..., None]
                dims = [*dims, LEVEL]
            order = ["statistic", INIT_TIME, LEAD_TIME, "region", LEVEL]
            out[p] = np.transpose(values, [dims.index(d) for d in order])
        return out

    def coverage(
        self,
        model: str,
        variable: str,
        key: str,
        init_times: np.ndarray,
        lead_times: np.ndarray,
        levels: Sequence[int] | None,
        region_keys: Sequence[str],
        statistics: Sequence[str] = STATISTICS,
    ) -> np.ndarray:
        """Boolean (init, lead, level, region) mask of where the store already holds every one
        of ``statistics`` (in one part)."""
        nlev = 1 if levels is None else len(levels)
        have = np.zeros((len(init_times), len(lead_times), nlev, len(region_keys)), bool)
        for p in self.parts(model, variable, key):
            if not set(statistics) <= set(part_statistics(self.index(p))):
                continue
            sel = _match(self.index(p), init_times, lead_times, levels, region_keys)
            if sel is None:
                continue
            ii, ll, vv, rr, _ = sel
            have[np.ix_(ii, ll, vv, rr)] = True
        return have

    def load(
        self,
        model: str,
        variable: str,
        key: str,
        init_times: np.ndarray,
        lead_times: np.ndarray,
        levels: Sequence[int] | None,
        regions: Sequence[str],
        region_keys: Sequence[str],
        statistics: Sequence[str] = STATISTICS,
    ) -> xr.DataArray:
        """``statistics`` (statistic, init_time, lead_time, region[, level]), each from the
        parts that hold it; missing values NaN and reported through :meth:`coverage`."""
        nlev = 1 if levels is None else len(levels)
        statistics = list(statistics)
        arr = np.full(
            (len(statistics), len(init_times), len(lead_times), len(regions), nlev), np.nan
        )
        for attempt in range(1, LIST_ATTEMPTS + 1):
            matches = {}
            for p in self.parts(model, variable, key):
                held = part_statistics(self.index(p))
                dst_s = [k for k, name in enumerate(statistics) if name in held]
                if not dst_s:
                    continue
                sel = _match(self.index(p), init_times, lead_times, levels, region_keys)
                if sel is not None:
                    src_s = [held.index(statistics[k]) for k in dst_s]
                    matches[p] = (*sel, np.asarray(src_s), np.asarray(dst_s))
            try:
                values_of = self.values(list(matches)) if matches else {}
                break
            except FileNotFoundError:
                # Another job is merging this entry's parts (it deletes them one by one, after
                # committing the merged part, which holds the same numbers): list again.
                if attempt == LIST_ATTEMPTS:
                    raise
                self.fs.invalidate_cache()
                self._listed.clear()
                time.sleep(0.2 * attempt)
        for p, (ii, ll, vv, rr, src, src_s, dst_s) in matches.items():
            values = values_of[p]
            block = values[orthogonal((src_s, *src), values.shape)]
            arr[orthogonal((dst_s, ii, ll, rr, vv), arr.shape)] = block
        coords = {
            "statistic": statistics,
            INIT_TIME: init_times,
            LEAD_TIME: lead_times,
            "region": list(regions),
        }
        if levels is None:
            return xr.DataArray(
                arr[..., 0],
                dims=("statistic", INIT_TIME, LEAD_TIME, "region"),
                coords=coords,
                name=variable,
            )
        coords[LEVEL] = list(levels)
        return xr.DataArray(
            arr,
            dims=("statistic", INIT_TIME, LEAD_TIME, "region", LEVEL),
            coords=coords,
            name=variable,
        )


    # -- compaction ---------------------------------------------------------------------------

    def compact(self, model: str, variable: str, key: str, min_parts: int | None = None) -> int:
        """Merge the parts of one entry that share their leads, levels and regions into one part
        (inits concatenated; where parts overlap the later one wins, as in :meth:`load`), so
        that a year of nightly runs reads a few parts, not hundreds. Groups of fewer than
        ``min_parts`` (default :data:`COMPACT_AFTER`) parts are left alone.

        Safe with concurrent jobs: the merged part is committed before any merged-away part
        is deleted (marker first), readers that listed a deleted part list again, and a
        compaction that loses a race to another one gives up without harm.
        Returns the number of parts removed.
        """
        min_parts = COMPACT_AFTER if min_parts is None else min_parts
        groups: dict[str, list[str]] = {}
        for p in self.parts(model, variable, key):
            idx = self.index(p)
            if _part_bytes(idx) > MERGED_PART_BYTES // 2:
                continue  # already large (a merged part): left as it is
            layout = json.dumps([idx["dims"], idx["lead_time"], idx["level"], idx["region_keys"],
                                 part_statistics(idx)])
            groups.setdefault(layout, []).append(p)
        removed = 0
        for members in groups.values():
            # Parts whose inits a merged part already holds (a merge whose deletions failed,
            # e.g. no delete permission): delete them again, never merge them twice.
            redundant = _covered(members, self.index)
            for p in redundant:
                removed += self._remove_part(p)
            members = [p for p in members if p not in redundant]
            if len(members) < max(2, min_parts):
                continue
            # Consecutive parts (name order) up to MERGED_PART_BYTES per merged part, so merged
            # parts stay small enough to rewrite and decompress (a year: a few per variable).
            batches, batch, size = [], [], 0
            for p in members:
                nbytes = _part_bytes(self.index(p))
                if batch and size + nbytes > MERGED_PART_BYTES:
                    batches.append(batch)
                    batch, size = [], 0
                batch.append(p)
                size += nbytes
            batches.append(batch)
            for paths in batches:
                if len(paths) >= 2:
                    removed += self._merge(model, variable, key, paths)
        return removed

    def _merge(self, model: str, variable: str, key: str, paths: list[str]) -> int:
        try:
            values_of = self.values(paths)
        except FileNotFoundError:
            return 0  # another job is merging these parts
        first = self.index(paths[0])
        inits = np.unique(np.concatenate([self.index(p)["init_time"] for p in paths]))
        shape = values_of[paths[0]].shape
        merged = np.full(shape[:1] + (len(inits),) + shape[2:], np.nan)
        for p in paths:  # name order: later parts overwrite earlier ones
            pos = np.searchsorted(inits, self.index(p)["init_time"])
            merged[:, pos] = values_of[p]
        stats = _as_stats(merged, inits, first)
        block = min(int(p.rsplit("/", 1)[-1][1:7]) for p in paths)
        self.write_part(model, variable, key, block, stats, first["region_keys"],
                        attrs={"merged_parts": len(paths)}, prefix="c")
        return sum(self._remove_part(p) for p in paths)

    def _remove_part(self, path: str) -> int:
        """Delete a part, its commit marker first (so it stops counting at once)."""
        folder = path.rsplit("/", 1)[0]
        if folder in self._listed:
            self._listed[folder] = [p for p in self._listed[folder] if p != path]
        try:
            self.fs.rm(path + "/" + MARKER)
        except FileNotFoundError:
            return 0  # already removed (by a concurrent compaction)
        self._indexes.pop(path, None)
        try:
            self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass
        return 1


def _covered(paths: list[str], index_of) -> set[str]:
    """Parts (of one layout) all of whose inits a later-named merged (``c…``) part holds."""
    merged = [p for p in paths if p.rsplit("/", 1)[-1].startswith("c")]
    inits = {p: set(index_of(p)["init_time"]) for p in paths}
    return {
        p for p in paths
        if any(q != p and q > p and inits[p] <= inits[q] for q in merged)
    }


def committed_parts(fs, folder: str) -> list[str]:
    """The parts (``<name>.zarr``, not a writer's ``.tmp-`` one) right in ``folder`` whose
    commit marker exists: one listing, a single request on object stores."""
    try:
        files = fs.find(folder)
    except FileNotFoundError:
        return []
    depth = folder.rstrip("/").count("/") + 1
    out = []
    for f in files:
        if not f.endswith("/" + MARKER):
            continue
        part = f[: -len(MARKER) - 1]
        base = part.rsplit("/", 1)[-1]
        if base.endswith(".zarr") and not base.startswith(".tmp-") and part.count("/") == depth:
            out.append(part)
    return out


def part_statistics(index: dict) -> list[str]:
    """The statistics a part holds, in its order (format 1 parts: :data:`STATISTICS`)."""
    return list(index.get("statistics") or STATISTICS)


def _part_bytes(index: dict) -> int:
    """Uncompressed size of a part's statistics, from its index."""
    nlev = 1 if index["level"] is None else len(index["level"])
    return (len(part_statistics(index)) * len(index["init_time"]) * len(index["lead_time"])
            * len(index["region_keys"]) * nlev * 8)


def _as_stats(values: np.ndarray, inits: np.ndarray, index: dict) -> xr.DataArray:
    """Statistics (statistic, init_time, lead_time, region, level) as the DataArray a part
    stores (level dropped when the index has none)."""
    da = xr.DataArray(
        values,
        dims=("statistic", INIT_TIME, LEAD_TIME, "region", LEVEL),
        coords={
            "statistic": part_statistics(index),
            INIT_TIME: np.asarray(inits, dtype=np.int64).astype("datetime64[ns]"),
            LEAD_TIME: np.asarray(index["lead_time"], dtype=np.int64).astype("timedelta64[ns]"),
            LEVEL: index["level"] if index["level"] is not None else [0],
        },
    )
    return da.isel(level=0, drop=True) if index["level"] is None else da


def _index_of(stats: xr.DataArray, region_keys: Sequence[str]) -> dict:
    """The coordinates of a part, as saved in its commit marker."""
    return {
        "format": FORMAT_VERSION,
        "statistics": [str(x) for x in stats["statistic"].values.tolist()],
        "dims": [str(d) for d in stats.dims],
        "init_time": stats[INIT_TIME].values.astype("datetime64[ns]").astype(np.int64).tolist(),
        "lead_time": stats[LEAD_TIME].values.astype("timedelta64[ns]").astype(np.int64).tolist(),
        "level": stats[LEVEL].values.astype(int).tolist() if LEVEL in stats.dims else None,
        "region_keys": list(region_keys),
    }


def _part_objects(values: np.ndarray, attrs: dict) -> dict[str, bytes]:
    """A part's objects: a Zarr v2 group with the one-chunk array ``stats``."""
    from wxeval.chunks import single_chunk_group

    return single_chunk_group("stats", values.astype(np.float64), attrs, PART_COMPRESSOR)


def _parse_index(blob) -> dict | None:
    if not isinstance(blob, bytes | bytearray):
        return None
    try:
        idx = json.loads(blob)
    except ValueError:
        return None
    return idx if isinstance(idx, dict) and "init_time" in idx else None


def _match(index: dict, init_times, lead_times, levels, region_keys):
    """Index arrays (target positions …, source positions) of the overlap of a part and a
    request, or None when they do not overlap."""
    part_inits = np.array(index["init_time"], dtype=np.int64).astype("datetime64[ns]")
    part_leads = np.array(index["lead_time"], dtype=np.int64).astype("timedelta64[ns]")
    src_i, dst_i = _overlap(part_inits, np.asarray(init_times).astype("datetime64[ns]"))
    src_l, dst_l = _overlap(part_leads, np.asarray(lead_times).astype("timedelta64[ns]"))
    src_r, dst_r = _overlap(np.asarray(index["region_keys"]), np.asarray(list(region_keys)))
    if levels is None:
        src_v, dst_v = np.array([0]), np.array([0])
    elif index["level"] is not None:
        src_v, dst_v = _overlap(np.asarray(index["level"], dtype=int),
                                np.asarray(levels, dtype=int))
    else:
        return None
    if min(len(src_i), len(src_l), len(src_r), len(src_v)) == 0:
        return None
    return dst_i, dst_l, dst_v, dst_r, (src_i, src_l, src_r, src_v)


def _overlap(have: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = {v: i for i, v in enumerate(have.tolist())}
    dst = [j for j, v in enumerate(want.tolist()) if v in pos]
    src = [pos[want.tolist()[j]] for j in dst]
    return np.asarray(src, dtype=int), np.asarray(dst, dtype=int)


def write_durably(folder: str, objects) -> None:
    """Write ``objects`` ((relative path, bytes) pairs, any iterable: each is written as it
    comes) into the new local ``folder`` and make them durable: each file is fsynced, then
    each folder holding them. A part is renamed into
    place (its commit) only after this, so a power loss cannot leave a committed part whose
    files are empty or missing (the file system may otherwise persist the rename before the
    data); compaction deletes the parts a merged part replaces only after it too is committed
    this way. Costs ~0.3-1 ms per file (measured on the CI machine)."""
    os.makedirs(folder, exist_ok=True)
    folders = {folder}
    for rel, blob in objects:
        path = os.path.join(folder, rel)
        parent = os.path.dirname(path)
        if parent not in folders:
            os.makedirs(parent, exist_ok=True)
            folders.add(parent)
        with open(path, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
    for path in sorted(folders, key=len, reverse=True):
        _fsync_dir(path)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_tmp(root: str) -> None:
    """Delete leftovers of interrupted local writes and deletions: parts without a commit
    marker (locally a part is renamed into place with its marker, so a part folder without
    one is a temporary name or a deletion cut short)."""
    for dirpath, dirnames, _ in os.walk(root):
        for d in list(dirnames):
            path = os.path.join(dirpath, d)
            is_part = len(os.path.relpath(path, root).split(os.sep)) == 4  # model/var/key/part
            if d.startswith(".tmp-") or (
                is_part and d.endswith(".zarr") and not os.path.exists(os.path.join(path, MARKER))
            ):
                shutil.rmtree(path, ignore_errors=True)
                dirnames.remove(d)


def load_statistics(
    results_dir: str | Path,
    model: str,
    storage_options: dict | None = None,
    *,
    statistics: Sequence[str] | None = None,
) -> xr.Dataset:
    """The per-init statistics behind ``<results_dir>/<model>.nc`` (no forecast store is read),
    found through the model's manifest (:func:`wxeval.results.read_manifest`).

    ``storage_options`` are the fsspec options of a statistics store on an object store (the
    config's ``output.storage_options``; credentials are never saved with the results).
    ``statistics``: read only these (those of them the run's metrics have; default all), e.g.
    the scorecard leaves out the rank-histogram slots (``statistics.RANK_BINS`` per field) it
    never tests; a name that is no statistic of :data:`wxeval.statistics.GROUPS` is a
    ValueError (a bare string a TypeError), not an empty read.

    Returns one data variable per weather variable, dims (statistic, init_time, lead_time,
    region[, level]); see :mod:`wxeval.metrics` for the statistics.
    """
    from wxeval.results import read_manifest

    manifest = read_manifest(results_dir, model)
    root = manifest["statistics_store"]
    if root and "://" not in root and not Path(root).is_absolute():
        root = str(Path(results_dir) / root)
    store = StatisticsStore(root, storage_options)
    inits = np.array(manifest["init_times"], dtype="datetime64[ns]")
    leads = (np.array(manifest["lead_time_hours"]) * 3600e9).astype("timedelta64[ns]")
    from wxeval.metrics import METRICS, statistics_for

    have = statistics_for(dict.fromkeys([*manifest.get("metrics", []), *METRICS]),
                          skipna=bool(manifest.get("skipna", 0)))
    if statistics is not None:
        from wxeval.statistics import GROUP_OF, GROUPS

        if isinstance(statistics, str):
            raise TypeError(f"statistics: a list of statistic names, not the string "
                            f"{statistics!r}")
        unknown = sorted(set(statistics) - set(GROUP_OF))
        if unknown:
            raise ValueError(f"statistics: unknown statistic name(s) {unknown}; the statistics "
                             f"are those of the groups {sorted(GROUPS)} (wxeval.statistics)")
        wanted = set(statistics)
        have = tuple(s for s in have if s in wanted)
    out = {}
    for var, levels in manifest["variables"].items():
        out[var] = store.load(
            model,
            var,
            manifest["entry_keys"][var],
            inits,
            leads,
            tuple(levels) if levels else None,
            manifest["region_names"],
            manifest["region_keys"],
            have,
        )
    ds = xr.Dataset(out)
    ds.attrs["model"] = model
    return ds


# ---------------------------------------------------------------------------------------------
# A run's entries: keys, coverage, and the task results written and read back


def entry_keys(plan) -> dict[tuple[str, str], str]:
    """Statistics entry key per (model, variable) of ``plan`` (:class:`wxeval.plan.Plan`):
    see :func:`entry_key`."""
    keys = {}
    masks: dict = {}
    for m in plan.models:
        if (m.truth, plan.land_sea_mask) not in masks:
            masks[(m.truth, plan.land_sea_mask)] = land_sea_mask_fingerprint(
                m.truth, plan.land_sea_mask, plan.stores
            )
        for var in m.variables:
            if m.source.reads_store:
                fid = store_fingerprint(m.source.store, var, plan.stores)
            else:
                fid = m.source.identity()
            keys[(m.name, var)] = entry_key(
                fid, m.truth, m.climatology, var, plan.skipna,
                land_sea_mask=masks[(m.truth, plan.land_sea_mask)],
                levels=m.level_pairs.get(var), stores=plan.stores,
                recipe=_recipe(m, var, plan.stores),
            )
    return keys


def _recipe(m, var: str, stores) -> str | None:
    """How ``var`` is derived in the forecast and the truth (None when both store it), with
    the fingerprints of the inputs (:mod:`wxeval.derived`)."""
    from wxeval.derived import recipe_key

    parts = []
    for role, spec in (("forecast", m.source.store), ("truth", m.truth)):
        if spec is not None:
            key = recipe_key(stores(spec), var,
                             lambda v, spec=spec: store_fingerprint(spec, v, stores))
            if key is not None:
                parts.append(f"{role}: {key}")
    return "; ".join(parts) or None


def drop_done(tasks, store: StatisticsStore, keys, region_keys, groups) -> tuple[list, int]:
    """Remove every task part the store already covers, group by group: a task keeps the
    inits that lack any of its groups and computes only the groups lacking there. Count the
    reused fields (fields whose every group is stored). ``groups`` maps a group name to its
    :class:`wxeval.statistics.Group`."""
    import dataclasses

    kept, reused = [], 0
    for task in tasks:
        parts = []
        missing: set[str] = set()
        for p in task.parts:
            todo = np.zeros(len(p.init_times), bool)
            for g in task.groups:
                have = store.coverage(
                    p.model,
                    task.variable,
                    keys[(p.model, task.variable)],
                    p.init_times,
                    p.lead_times,
                    p.levels,
                    region_keys,
                    groups[g].statistics,
                )
                # Recompute the inits that lack anything (whole lead/level/region rows).
                lacking = ~have.all(axis=(1, 2, 3))
                if lacking.any():
                    missing.add(g)
                    todo |= lacking
            nfields = len(p.lead_times) * (1 if p.levels is None else len(p.levels))
            reused += int((~todo).sum()) * nfields
            if todo.any():
                parts.append(dataclasses.replace(p, init_times=p.init_times[todo]))
        if parts:
            task.parts = tuple(parts)
            task.groups = tuple(g for g in task.groups if g in missing)
            kept.append(task)
    return kept, reused


def as_dataarray(inits, leads, levels, regions, arr, statistics) -> xr.DataArray:
    """One model's statistics of a task result, labelled: dims (statistic, init_time,
    lead_time, region[, level])."""
    da = xr.DataArray(
        arr,
        dims=("init_time", "lead_time", "level", "region", "statistic"),
        coords={
            "init_time": inits,
            "lead_time": leads,
            "level": list(levels) if levels is not None else [0],
            "region": list(regions),
            "statistic": list(statistics),
        },
    )
    if levels is None:
        da = da.isel(level=0, drop=True)
    dims = ["statistic", "init_time", "lead_time", "region"] + (["level"] if levels else [])
    return da.transpose(*dims)


class Collector:
    """Receives task results (:class:`wxeval.evaluate.TaskResult`) as they arrive: labels them
    and writes them to the statistics store ``store`` (kept in memory when it is None), then
    reads a model's statistics back (:meth:`collect`).

    The parts are written on a thread of their own, in the order the results arrive: each
    waits for its files' fsyncs (:func:`write_durably`), which would otherwise hold up the
    thread that hands out tasks. A failed write raises at the next :meth:`add`, or at
    :meth:`close`, which waits for every write (and :meth:`collect` calls)."""

    def __init__(self, store: StatisticsStore | None, keys, regions, attrs: dict | None = None):
        self.store = store
        self.keys = keys
        self.region_names = [r.name for r in regions]
        self.region_keys = [r.key() for r in regions]
        self.attrs = attrs or {}
        self.memory: list = []
        self.computed_fields = 0
        self._pool = None
        self._pending: list = []

    def add(self, res) -> None:
        """Label and keep one task result (count its fields in ``computed_fields``)."""
        self._raise_failed()
        for model, (inits, leads, arr) in res.per_model.items():
            self.computed_fields += arr.shape[0] * arr.shape[1] * arr.shape[2]
            da = as_dataarray(inits, leads, res.model_levels[model], res.regions, arr,
                              res.statistics)
            if self.store is not None:
                if self._pool is None:
                    from concurrent.futures import ThreadPoolExecutor

                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="wxeval-store")
                self._pending.append(self._pool.submit(
                    self.store.write_part, model, res.variable,
                    self.keys[(model, res.variable)], res.block, da, self.region_keys,
                    attrs=self.attrs,
                ))
            else:
                self.memory.append((model, res.variable, da))

    def _raise_failed(self) -> None:
        for f in self._pending:
            if f.done() and f.exception() is not None:
                raise f.exception()
        self._pending = [f for f in self._pending if not f.done()]

    def close(self) -> None:
        """Wait for every part to be written; raise the first failed write's error."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()

    def collect(self, m, statistics: Sequence[str]) -> xr.Dataset:
        """The statistics ``statistics`` of model ``m`` (:class:`wxeval.plan.ModelPlan`), one
        data variable per weather variable; NaN where a statistic was not computed."""
        self.close()
        out = {}
        for var in m.variables:
            lev = m.levels[var]
            if self.store is not None:
                da = self.store.load(
                    m.name, var, self.keys[(m.name, var)], m.init_times, m.lead_times, lev,
                    self.region_names, self.region_keys, statistics,
                )
            else:
                pieces = [d for (mm, v, d) in self.memory if mm == m.name and v == var]
                da = xr.combine_by_coords([p.to_dataset(name=var) for p in pieces])[var]
                da = da.reindex(statistic=list(statistics))
                # reindex: a derived accumulation lacks the leads whose windows are incomplete
                da = da.sel(init_time=m.init_times).reindex(lead_time=m.lead_times)
            out[var] = da
        ds = xr.Dataset(out)
        ds.attrs["model"] = m.name
        return ds
