"""Map and spectra sums kept in the statistics store, next to the regional parts (issue 15).

Layout (sibling folders of an entry's regional parts, under the same entry key
:func:`wxeval.store.entry_key`; an older wxeval never lists them)::

    <root>/<model>/<variable>/<entry key>.maps/<part>.zarr      map sums over a set of inits
    <root>/<model>/<variable>/<entry key>.spectra/<part>.zarr   spectra sums over a set of inits

A part is a Zarr v2 group with one float64 array ``sums``, one chunk per lead (LZ4 with bit
shuffle: ~1.8x on these sums), whose commit marker ``.wxeval-complete`` holds its index: the
exact inits it sums over (``init_time``, ns), its ``lead_time``, ``level`` (None: a surface
variable), ``statistics`` and shape. Written atomically like the regional parts (locally a
temporary name renamed into place with its marker; on object stores the marker last).

* maps: ``sums`` (lead, statistic, level, *spatial), spatial dims in the truth's storage order;
  statistics ``sum_err, sum_se, sum_ae`` (:mod:`wxeval.maps`) and ``count`` unless the count
  equals the part's number of inits at every point (always without ``skipna``): it is then
  restored as that number.
* spectra: ``sums`` (lead, level, 2 [forecast, truth], K) of the band-mean spectra
  (:mod:`wxeval.spectra`); the count is the part's number of inits.

**Sums of disjoint init sets add; sums cannot be split.** A run's sums at a cell (lead, level)
are the stored parts chosen for that cell plus the parts the run computes, chosen so that no
init is counted twice (:func:`plan`):

1. a stored part is usable at a cell only if all its inits are among the run's inits there (a
   narrower rerun cannot use a part holding inits outside it: those inits are computed again);
2. per cell, usable parts are taken largest first, each only if its inits are disjoint from
   those already taken and from the inits the run computes at that cell;
3. the run computes, per task part, every one of its inits not covered at one of its cells
   (for all of the task part's cells), then 2. is redone, until nothing changes (the computed
   set only grows, so this ends; usually after one round).

So at every cell the chosen stored parts and the computed parts are pairwise disjoint and
together hold exactly the run's inits there (``tests/test_maps_store.py``).

Size (float64; stored ~1.8x smaller by the compressor): a maps part holds 3 (or 4 with a
varying count) × leads × levels × grid points × 8 B, whatever its number of inits. 1.5°
(121 × 240): 0.70 MB per (lead, level) field (~0.4 MB on disk), so the benchmark's month
(10 fields, 21 leads) is 146 MB (83 MB on disk); 0.25° (721 × 1440): 24.9 MB per field, so
a 0.25° year of, say, 4 leads × 8 fields is 0.8 GB per part. A run writes one part per entry
and layout (:class:`Writer`: the tasks' sums gathered in memory, stored when the layout's last
task is in, on failure and every 60 s), and parts of one layout are summed into one
(:func:`compact`) once an entry holds :data:`COMPACT_AFTER` of them, so a year of nightly
runs keeps ~1 part per layout: a 0.25° year needs the size of one part, not 365. Spectra
parts are tiny (leads × levels × 2 × K × 8 B).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numcodecs
import numpy as np

from wxeval.store import (
    LIST_ATTEMPTS,
    MARKER,
    StatisticsStore,
    _fsync_dir,
    committed_parts,
    write_durably,
)

log = logging.getLogger("wxeval")

FORMAT_VERSION = 1
KINDS = ("maps", "spectra")
#: Parts of one layout an entry holds before a run sums them into one (:func:`compact`).
COMPACT_AFTER = 4
#: Bit-shuffled LZ4 at level 1: ~1.8x on these sums at ~2 GB/s (level 5: a little more, at
#: half the speed).
COMPRESSOR = numcodecs.Blosc(cname="lz4", clevel=1, shuffle=numcodecs.Blosc.BITSHUFFLE)
MAP_STATISTICS = ("count", "sum_err", "sum_se", "sum_ae")

Cell = tuple[int, "int | None"]  # (lead in ns, level or None)


@dataclass(frozen=True, eq=False)
class Part:
    """A complete stored part and its index."""

    path: str
    index: dict
    inits: frozenset = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def leads(self) -> list[int]:
        return self.index["lead_time"]

    @property
    def levels(self) -> list:
        return self.index["level"] if self.index["level"] is not None else [None]

    @functools.cached_property
    def cells(self) -> frozenset:
        """The (lead in ns, level) cells the part holds."""
        return frozenset((lead, lev) for lead in self.leads for lev in self.levels)


def folder(store: StatisticsStore, kind: str, model: str, variable: str, key: str) -> str:
    return store._path(model, variable, f"{key}.{kind}")


# ---------------------------------------------------------------------------------------------
# Writing and reading parts


def write_part(
    store: StatisticsStore, kind: str, model: str, variable: str, key: str, block: int,
    values: np.ndarray, inits: np.ndarray, leads: np.ndarray, levels: Sequence | None,
    statistics: Sequence[str], extra: dict, attrs: dict | None = None, *, prefix: str = "b",
) -> str:
    """Save one part atomically (module doc); ``values`` (lead, …) float64. Returns its path."""
    name = f"{prefix}{block:+06d}-{uuid.uuid4().hex[:12]}.zarr"
    where = folder(store, kind, model, variable, key)
    final = f"{where}/{name}"
    index = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "init_time": sorted(np.asarray(inits).astype("datetime64[ns]").astype(np.int64).tolist()),
        "lead_time": np.asarray(leads).astype("timedelta64[ns]").astype(np.int64).tolist(),
        "level": None if levels is None or list(levels) == [None] else [int(x) for x in levels],
        "statistics": list(statistics),
        "shape": [int(x) for x in values.shape],
        **extra,
    }
    objects = _objects(values, {"model": model, "variable": variable, "entry_key": key,
                                "index": index, **(attrs or {})})
    marker = json.dumps(index).encode()
    if store._local:
        os.makedirs(where, exist_ok=True)
        tmp = f"{where}/.tmp-{name}"
        write_durably(tmp, itertools.chain(objects, [(MARKER, marker)]))
        os.replace(tmp, final)
        _fsync_dir(where)
    else:
        store.fs.pipe({f"{final}/{rel}": blob for rel, blob in objects})
        store.fs.pipe(f"{final}/{MARKER}", marker)  # the commit: only after the rest
    return final


def _objects(values: np.ndarray, attrs: dict):
    """The objects of a Zarr v2 group with the array ``sums`` chunked by its first axis (one
    chunk per lead: a chunk stays far below Blosc's 2 GB limit even at 0.25°)."""
    values = np.asarray(values, dtype=np.float64)
    shape = list(values.shape)
    meta = {"zarr_format": 2, "shape": shape, "chunks": [1, *shape[1:]], "dtype": "<f8",
            "compressor": COMPRESSOR.get_config(), "fill_value": "NaN", "order": "C",
            "filters": None, "dimension_separator": "."}

    def dump(obj) -> bytes:
        return json.dumps(obj, sort_keys=True).encode()

    yield ".zgroup", dump({"zarr_format": 2})
    yield ".zattrs", dump({})
    yield "sums/.zarray", dump(meta)
    yield "sums/.zattrs", dump(attrs)
    tail = ".0" * (len(shape) - 1)
    for i in range(shape[0]):
        yield f"sums/{i}{tail}", bytes(COMPRESSOR.encode(np.ascontiguousarray(values[i])))


def read_values(store: StatisticsStore, part: Part) -> np.ndarray:
    """The ``sums`` of a part (float64, its index's shape). A missing object raises
    FileNotFoundError (a concurrent compaction deleted it); an undecodable one a clear error."""
    from wxeval.chunks import DamagedArrayError, _decode_chunk

    shape = part.index["shape"]
    tail = ".0" * (len(shape) - 1)
    keys = [f"{part.path}/sums/{i}{tail}" for i in range(shape[0])]
    blobs = store.fs.cat(keys, on_error="return")
    out = np.empty(shape)
    for i, k in enumerate(keys):
        blob = blobs.get(k)
        if blob is None or isinstance(blob, FileNotFoundError):
            raise FileNotFoundError(k)
        try:
            if isinstance(blob, BaseException):
                raise blob
            # the chunk reader's decode: it also refuses a chunk shorter than its Blosc header
            # states (these sums barely compress: Blosc stores them raw and would copy past
            # the end of a truncated one) and a decode of the wrong size
            out[i] = _decode_chunk(blob, COMPRESSOR, [], np.dtype(np.float64), shape[1:], "C", k)
        except (ValueError, RuntimeError, TypeError, OSError) as err:
            raise DamagedArrayError(part.path, (
                f"statistics store: part {store._url(part.path)} is damaged ({err}): delete "
                "that folder and rerun, its inits are computed again")) from err
    return out


def list_parts(store: StatisticsStore, kind: str, model: str, variable: str, key: str
               ) -> list[Part]:
    """Complete parts (commit marker with a readable index of ``kind``), in name order."""
    paths = committed_parts(store.fs, folder(store, kind, model, variable, key))
    if not paths:
        return []
    blobs = store.fs.cat([f"{p}/{MARKER}" for p in paths], on_error="return")
    out = []
    for p in sorted(paths):
        try:
            idx = json.loads(blobs.get(f"{p}/{MARKER}"))
        except (TypeError, ValueError):
            continue  # damaged marker: the part is ignored (its inits computed again)
        if isinstance(idx, dict) and idx.get("kind") == kind and \
                idx.get("format") == FORMAT_VERSION:
            problem = _index_problem(idx, kind)
            if problem:  # like a damaged marker: ignored, its inits computed again
                log.warning("statistics store: part %s ignored: %s", store._url(p), problem)
                continue
            out.append(Part(p, idx, frozenset(idx["init_time"])))
    return out


def _index_problem(idx: dict, kind: str) -> str | None:
    """What makes a part's index unusable (missing keys, a shape that does not match its
    leads, statistics and levels, map statistics in another order than written), or None."""
    from wxeval.maps import MAP_STATISTICS

    missing = [k for k in ("init_time", "lead_time", "level", "statistics", "shape")
               if k not in idx]
    if missing:
        return f"its index lacks {missing}"
    lists = ["init_time", "lead_time", "statistics", "shape"] + (
        [] if idx["level"] is None else ["level"])
    wrong = [k for k in lists if not isinstance(idx[k], list)]
    if wrong:
        return f"its index's {wrong} are not lists"
    if not all(isinstance(x, int) for k in ("init_time", "lead_time", "shape")
               for x in idx[k]):
        return "its index's init times, lead times or shape are not integers"
    shape, stats = list(idx["shape"]), list(idx["statistics"])
    nlev = 1 if idx["level"] is None else len(idx["level"])
    # maps (lead, statistic, level, *spatial); spectra (lead, level, statistic, wavenumber)
    head = ([len(idx["lead_time"]), len(stats), nlev] if kind == "maps"
            else [len(idx["lead_time"]), nlev, len(stats)])
    if len(shape) < 3 or shape[:3] != head:
        return f"shape {shape} does not start {head} (its leads, statistics and levels)"

    if kind == "maps" and stats not in (list(MAP_STATISTICS), list(MAP_STATISTICS[1:])):
        return f"map statistics {stats} are not {list(MAP_STATISTICS)} (or without count)"
    # the rest of the shape: the grid (maps) or the wavenumbers (spectra) the index names
    tail = idx.get("grid") if kind == "maps" else [idx.get("nk")]
    if shape[3:] != tail:
        return f"shape {shape} does not end {tail} (its grid or wavenumbers)"
    return None


def _remove(store: StatisticsStore, part: Part) -> int:
    """Delete a part, its commit marker first (:meth:`StatisticsStore._remove_part`)."""
    return store._remove_part(part.path)


# ---------------------------------------------------------------------------------------------
# Choosing stored parts and what a run computes


def choose(candidates: Sequence[Part], wanted: frozenset, computed: frozenset) -> list[Part]:
    """Stored parts for one cell: inits inside ``wanted``, pairwise disjoint and disjoint
    from ``computed``, largest first (a merged part before the parts it replaced)."""
    taken: set = set(computed)
    out = []
    for q in sorted(candidates, key=lambda q: (-len(q.inits), q.name)):
        if q.inits <= wanted and q.inits.isdisjoint(taken):
            out.append(q)
            taken |= q.inits
    return out


@dataclass
class Slot:
    """One task part's share of an entry: its inits and cells, and the inits to compute."""

    inits: frozenset
    cells: list
    todo: set = field(default_factory=set)


def plan_entry(slots: Sequence[Slot], stored: Sequence[Part]) -> dict:
    """Fill each slot's ``todo`` and return the stored parts chosen per cell (module doc).
    Cells held by the same slots and the same stored parts are planned once, together."""
    holders: dict = {}
    for k, s in enumerate(slots):
        for c in s.cells:
            holders.setdefault(c, []).append(k)
    groups: dict = {}
    for c, ks in holders.items():
        sig = (tuple(ks), tuple(j for j, q in enumerate(stored) if c in q.cells))
        groups.setdefault(sig, []).append(c)
    plans = []
    for (ks, js), cells in groups.items():
        wanted = frozenset().union(*(slots[k].inits for k in ks))
        plans.append((ks, [stored[j] for j in js if stored[j].inits <= wanted], wanted, cells))
    while True:
        chosen: dict = {}
        lacking: list[set] = [set() for _ in slots]
        for ks, cand, wanted, cells in plans:
            computed = frozenset().union(*(slots[k].todo for k in ks))
            qs = choose(cand, wanted, computed)
            covered = frozenset().union(*(q.inits for q in qs))
            chosen.update(dict.fromkeys(cells, qs))
            for k in ks:
                lacking[k] |= slots[k].inits - covered
        changed = False
        for k, s in enumerate(slots):
            new = lacking[k] - s.todo
            if new:
                s.todo |= new
                changed = True
        if not changed:
            return chosen


@dataclass
class Kind:
    """What :func:`plan` needs of one kind of sums."""

    name: str
    #: (task, task part) -> the levels the part computes sums for ((None,): a surface
    #: variable), or None when it computes none
    levels_of: Callable
    #: (model, variable) -> the extra index entries a usable part must match (grid, band)
    layout_of: Callable
    #: (model, variable, part, values, cells) -> add a stored part's sums at ``cells``
    add_stored: Callable
    #: forget every stored part's sums added (a plan started again)
    reset: Callable


def plan(tasks, store: StatisticsStore, keys, kinds: Sequence[Kind]) -> dict:
    """Per task part (by ``id``) and kind, the boolean mask over its init_times of the inits to
    compute; the chosen stored parts' sums are added to each kind's accumulator. A part
    deleted meanwhile by another job's compaction: listed and planned again (the sums added
    so far forgotten first)."""
    for attempt in range(1, LIST_ATTEMPTS + 1):
        try:
            return _plan(tasks, store, keys, kinds)
        except FileNotFoundError:
            if attempt == LIST_ATTEMPTS:
                raise
            for kind in kinds:
                kind.reset()
            store.fs.invalidate_cache()
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def _plan(tasks, store, keys, kinds) -> dict:
    masks: dict = {}
    staged = []
    for kind in kinds:
        entries: dict = {}
        for task in tasks:
            for p in task.parts:
                levels = kind.levels_of(task, p)
                if levels is None:
                    continue
                leads = np.asarray(p.lead_times).astype("timedelta64[ns]").astype(np.int64)
                inits = np.asarray(p.init_times).astype("datetime64[ns]").astype(np.int64)
                slot = Slot(frozenset(inits.tolist()),
                            [(int(lead), lev) for lead in leads for lev in levels])
                entries.setdefault((p.model, task.variable), []).append((p, inits, slot))
        for (model, var), members in entries.items():
            layout = kind.layout_of(model, var)
            stored = [q for q in list_parts(store, kind.name, model, var, keys[(model, var)])
                      if all(q.index.get(k) == v for k, v in layout.items())]
            chosen = plan_entry([s for _, _, s in members], stored)
            for p, inits, slot in members:
                masks.setdefault(id(p), {})[kind.name] = np.isin(inits, list(slot.todo))
            by_part: dict = {}
            for c, qs in chosen.items():
                for q in qs:
                    by_part.setdefault(q.path, (q, []))[1].append(c)
            staged += [(kind, model, var, q, cells) for q, cells in by_part.values()]
    # A part deleted meanwhile (FileNotFoundError): plan() forgets what was added, replans.
    for kind, model, var, q, cells in staged:
        kind.add_stored(model, var, q, read_values(store, q), cells)
    return masks


# ---------------------------------------------------------------------------------------------
# Compaction


def _layout(part: Part) -> str:
    idx = part.index
    rest = {k: v for k, v in idx.items() if k not in ("init_time", "statistics", "shape")}
    shape = list(idx["shape"])
    if idx["kind"] == "maps":
        shape[1] = None  # the statistic axis: with or without the count
    return json.dumps([rest, shape], sort_keys=True)


def full_maps(part: Part, values: np.ndarray) -> np.ndarray:
    """A maps part's sums with all of :data:`MAP_STATISTICS` (the count restored)."""
    stats = part.index["statistics"]
    if list(stats) == list(MAP_STATISTICS):
        return values
    out = np.empty((values.shape[0], 4, *values.shape[2:]))
    out[:, 0] = len(part.inits)
    out[:, 1:] = values[:, [stats.index(s) for s in MAP_STATISTICS[1:]]]
    return out


def maps_for_storage(sums: np.ndarray, n_inits: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map sums (lead, 4, …) as stored: without the count when it is ``n_inits`` everywhere."""
    if (sums[:, 0] == n_inits).all():
        return sums[:, 1:], MAP_STATISTICS[1:]
    return sums, MAP_STATISTICS


def compact(store: StatisticsStore, kind: str, model: str, variable: str, key: str,
            min_parts: int | None = None, attrs: dict | None = None) -> int:
    """Sum the disjoint parts of one layout into one part once there are ``min_parts``
    (default :data:`COMPACT_AFTER`); delete parts whose inits a merged part (``c…``) holds
    (a merge whose deletions failed; of two merged parts of the same inits, the later name
    stays). The merged part is committed before any part is deleted (marker first), so a
    concurrent reader sees the merged part or the parts (never both chosen: they overlap).
    Returns the number of parts removed."""
    min_parts = COMPACT_AFTER if min_parts is None else min_parts
    store.fs.invalidate_cache()
    groups: dict = {}
    for q in list_parts(store, kind, model, variable, key):
        groups.setdefault(_layout(q), []).append(q)
    removed = 0
    for members in groups.values():
        merged = [q for q in members if q.name.startswith("c")]
        redundant = [q for q in members if any(
            r is not q and q.inits <= r.inits and (q.inits != r.inits or r.name > q.name)
            for r in merged)]
        for q in redundant:
            removed += _remove(store, q)
        members = [q for q in members if q not in redundant]
        picked = choose(members, frozenset().union(*(q.inits for q in members)), frozenset())
        if len(picked) < max(2, min_parts):
            continue
        try:
            total = None
            for q in picked:
                v = read_values(store, q)
                v = full_maps(q, v) if kind == "maps" else v
                if total is None:
                    total = v  # a fresh array: the others are added into it
                else:
                    total += v
        except FileNotFoundError:
            continue  # another job is merging these parts
        inits = np.array(sorted(frozenset().union(*(q.inits for q in picked))), np.int64)
        first = picked[0].index
        stats = first["statistics"]
        if kind == "maps":
            total, stats = maps_for_storage(total, len(inits))
        extra = {k: v for k, v in first.items() if k not in (
            "format", "kind", "init_time", "lead_time", "level", "statistics", "shape")}
        block = min(int(q.name[1:7]) for q in picked)
        write_part(store, kind, model, variable, key, block, total,
                   inits.astype("datetime64[ns]"),
                   np.asarray(first["lead_time"], np.int64).astype("timedelta64[ns]"),
                   first["level"], stats, extra, {**(attrs or {}), "merged_parts": len(picked)},
                   prefix="c")
        removed += sum(_remove(store, q) for q in picked)
    return removed


# ---------------------------------------------------------------------------------------------
# A run's sums: kinds, tasks, writer


def kinds_for(plan, map_sums, spectra_sums) -> list[Kind]:
    """The kinds of sums (:class:`Kind`) a run (:class:`wxeval.plan.Plan`) keeps in the
    statistics store: maps into ``map_sums``, spectra into ``spectra_sums`` (None: not asked)."""
    from wxeval import spectra
    from wxeval.evaluate import truth_grid
    from wxeval.schema import LATITUDE

    models = {m.name: m for m in plan.models}
    kinds = []
    if map_sums is not None:
        def map_layout(model, var):
            spatial, coords = truth_grid(models[model].truth, var, plan.stores)
            return {"spatial": list(spatial), "grid": [len(coords[d]) for d in spatial]}

        kinds.append(Kind(
            "maps", lambda task, p: (None,) if p.levels is None else p.levels, map_layout,
            map_sums.add_stored, map_sums.sums.clear))
    if spectra_sums is not None:
        def spectra_levels(task, p):
            _, coords = truth_grid(task.truth, task.variable, plan.stores)
            if not len(spectra.band_rows(coords[LATITUDE])):
                return None
            return spectra.levels_for(task.variable, p.levels)

        def spectra_layout(model, var):
            _, coords = truth_grid(models[model].truth, var, plan.stores)
            return spectra_extra(coords)

        kinds.append(Kind("spectra", spectra_levels, spectra_layout, spectra_sums.add_stored,
                          spectra_sums.reset))
    return kinds


def spectra_extra(coords) -> dict:
    """What a stored spectra part must match: the band, its latitudes and the wavenumbers."""
    from wxeval import spectra
    from wxeval.schema import LATITUDE, LONGITUDE

    lat = coords[LATITUDE]
    return {"band": list(spectra.BAND),
            "band_latitudes": [round(float(x), 6) for x in lat[spectra.band_rows(lat)]],
            "nk": len(coords[LONGITUDE]) // 2 + 1}


def with_sums_todo(original, kept, need) -> list:
    """The tasks of a run with sums in the store: each task's regional work as
    :func:`wxeval.store.drop_done` left it (``kept``), plus in each of its parts the inits
    whose map/spectra sums the store lacks (``need``: per original part, a mask per kind).
    An init needed only for sums is computed only for them when the whole task needs no
    regional statistics (``regional`` False); else the task's regional statistics are
    computed for it too (the same numbers rewritten)."""
    import dataclasses

    kept_ids = {id(t) for t in kept}
    out = []
    for task, parts0 in original:
        regional = {p.model: p for p in task.parts} if id(task) in kept_ids else {}
        parts = []
        for p in parts0:
            masks = need.get(id(p), {})
            extra = np.zeros(len(p.init_times), bool)
            for mask in masks.values():
                extra |= mask
            reg = regional.get(p.model)
            take = extra | (np.isin(p.init_times, reg.init_times) if reg is not None else False)
            if not take.any():
                continue
            parts.append(dataclasses.replace(
                p, init_times=p.init_times[take],
                map_rows=masks["maps"][take] if "maps" in masks else None,
                spectra_rows=masks["spectra"][take] if "spectra" in masks else None))
        if not parts:
            continue
        task.parts = tuple(parts)
        if id(task) not in kept_ids:
            task.regional = False
            task.groups = ()
        task.maps = task.maps and any(p.map_rows is None or p.map_rows.any() for p in parts)
        task.spectra = task.spectra and any(
            p.spectra_rows is None or p.spectra_rows.any() for p in parts)
        out.append(task)
    return out


class Writer:
    """Writes the map and spectra sums of finished tasks to the statistics store as parts
    (:mod:`wxeval.sum_parts`) and counts the fields (init × lead × level) they sum.

    Results of the same entry and layout (model, variable, leads, levels) are summed in
    memory and written as one part covering all their inits: when the layout's last task is
    in (:meth:`expect`), at the end of the run (:meth:`flush`, then :meth:`close`), when the
    run fails (what finished is written before the error propagates), and every
    :data:`CHECKPOINT_SECONDS` while it runs. On the driver's threads a layout's tasks add
    into one shared array (:class:`wxeval.maps.Accumulators`), which is taken only while no
    task is adding to it: a checkpoint that finds a task adding writes nothing for that
    layout, and the sums of a layout where a task failed part way are never stored (they
    cannot be told apart). So a run killed or failing may lose the map work of the layouts it
    was in, up to whole layouts, never counting an init twice (a rerun computes those inits
    again); its regional statistics are stored per task. A month at 1.5° so writes one part
    per variable instead of one per 16-day block.
    Parts are compressed and written on a thread of their own, while the tasks still running
    and the results are computed. Map sums go on to ``map_sums`` (:class:`wxeval.maps.MapSums`)
    as they are written: the first layout's sums become its total without a copy, the other
    tasks' arrays are handed back to :data:`wxeval.maps.BUFFERS` for the next tasks.
    With ``map_acc`` (:class:`wxeval.maps.Accumulators`: tasks on this process's threads add
    their map sums into one array per layout) a result's map sums are None: the layout's sums
    and the inits they hold are taken from ``map_acc`` when its part is written."""

    #: Longest time map/spectra sums of finished tasks wait in memory before being stored.
    CHECKPOINT_SECONDS = 60.0

    def __init__(self, store, keys, attrs, map_sums=None, map_acc=None):
        from concurrent.futures import ThreadPoolExecutor

        self.store, self.keys, self.attrs, self.map_sums = store, keys, attrs, map_sums
        self.map_acc = map_acc
        self.fields = {"maps": 0, "spectra": 0}
        self._open: dict[tuple, dict] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="wxeval-sums")
        self._pending: list = []
        self._adopted: dict[tuple, object] = {}  # (model, variable) -> the write reading it
        self._expected: dict[tuple, int] = {}  # layout -> task parts still to come

    def expect(self, tasks) -> None:
        """Count the task parts of each maps layout: a layout's part is written as soon as
        its last task is in (while the other tasks run), not at the end."""
        for task in tasks:
            if not task.maps:
                continue
            for p in task.parts:
                if p.map_rows is None or p.map_rows.any():
                    key = self._key(("maps", p.model, task.variable), p.lead_times, p.levels)
                    self._expected[key] = self._expected.get(key, 0) + 1

    def add(self, res) -> None:
        import time

        for model, (leads, levels, sums, inits) in res.maps.items():
            self.fields["maps"] += len(inits) * len(leads) * (1 if levels is None else len(levels))
            spatial, coords = res.map_grid
            extra = {"spatial": list(spatial), "grid": [len(coords[d]) for d in spatial]}
            self._gather(("maps", model, res.variable), leads, levels, sums, inits,
                         MAP_STATISTICS, extra, res.block)
        for model, (leads, levels, sums, inits) in res.spectra.items():
            self.fields["spectra"] += len(inits) * len(leads) * len(levels)
            self._gather(("spectra", model, res.variable), leads, levels, sums.copy(), inits,
                         ("forecast", "truth"), spectra_extra(res.map_grid[1]), res.block)
        now = time.monotonic()
        for key in [k for k, e in self._open.items() if now - e["t0"] >= self.CHECKPOINT_SECONDS
                    or self._expected.get(k) == 0]:
            self._submit(key)

    @staticmethod
    def _key(entry, leads, levels) -> tuple:
        return (*entry, tuple(np.asarray(leads).astype("timedelta64[ns]").astype(np.int64)),
                None if levels is None else tuple(levels))

    def _gather(self, entry, leads, levels, values, inits, stats, extra, block) -> None:
        import time

        from wxeval.maps import BUFFERS

        key = self._key(entry, leads, levels)
        if key in self._expected:
            self._expected[key] -= 1
        e = self._open.get(key)
        if e is None:
            self._open[key] = {"values": values, "inits": [inits], "leads": leads,
                               "levels": levels, "stats": stats, "extra": extra,
                               "block": block, "t0": time.monotonic()}
        else:
            if values is not None:  # None: the sums are in ``map_acc``
                e["values"] += values
                if entry[0] == "maps":
                    BUFFERS.give(values)
            e["inits"].append(inits)
            e["block"] = min(e["block"], block)

    def _submit(self, key) -> None:
        e = self._open.pop(key)
        kind, model, var = key[:3]
        if kind == "maps" and e["values"] is None:
            taken = self.map_acc.take(key) if self.map_acc is not None else None
            if taken is None:  # already written with an earlier part (a checkpoint)
                return
            # the inits the sums hold: maybe more than the results seen so far (a task that
            # finished adding before its result came here); those are then not written again
            e["values"], inits = taken
            e["inits"] = [inits]
        release = False
        adopted = False
        if kind == "maps" and self.map_sums is not None:
            earlier = self._adopted.pop((model, var), None)
            if earlier is not None:
                earlier.result()  # the total is that array: written before it changes
            adopted = self.map_sums.add_sums(model, var, e["leads"], e["levels"], e["values"])
            release = not adopted
        self._pending = [f for f in self._pending if not f.done() or f.result()]
        future = self._pool.submit(self._write, key[:3], e, release)
        self._pending.append(future)
        if adopted:
            self._adopted[(model, var)] = future

    def _write(self, entry, e, release: bool) -> None:
        from wxeval.maps import BUFFERS

        kind, model, var = entry
        inits = np.concatenate(e["inits"])
        values, stats = e["values"], e["stats"]
        if kind == "maps":
            values, stats = maps_for_storage(values, len(inits))
        write_part(self.store, kind, model, var, self.keys[(model, var)], e["block"],
                             values, inits, e["leads"], e["levels"], stats, e["extra"],
                             self.attrs)
        if release:
            BUFFERS.give(e["values"])

    def flush(self) -> None:
        """Start writing everything gathered (returns at once)."""
        for key in list(self._open):
            self._submit(key)

    def close(self) -> None:
        """Write everything gathered; wait for every write; raise the first write's error
        (again if called again)."""
        self.flush()
        self._pool.shutdown(wait=True)
        for f in self._pending:
            f.result()
