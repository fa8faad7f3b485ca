"""Statistics in named groups: per-field weighted sums over one region, and who computes them.

Notation as in :mod:`wxeval.metrics`: forecast f, truth o, climatology c, f′ = f − c,
o′ = o − c, region weights W (:mod:`wxeval.regions`). A *group* is a set of statistics computed
together in one pass over the decoded fields of a chunk; a run computes only the groups its
metrics need (:func:`groups_for`), and the statistics store keeps each part's statistic names,
so a metric of a new group later computes only that group for the inits already stored.

* ``errors``: ``sum_weight`` Σ W, ``sum_se`` Σ W (f−o)², ``sum_err`` Σ W (f−o),
  ``sum_ae`` Σ W |f−o|;
* ``anomalies``: ``sum_fa_oa`` Σ W f′o′, ``sum_fa2`` Σ W f′², ``sum_oa2`` Σ W o′²;
* ``anomaly_sums``: ``sum_weight_a`` Σ W (over the points of the anomaly sums), ``sum_fa``
  Σ W f′, ``sum_oa`` Σ W o′ (for the centred ACC);
* ``nan_counts``: ``nan_weight`` Σ W [f − o is NaN];
* ``seeps``: ``sum_weight_seeps`` Σ W and ``sum_seeps`` Σ W·SEEPS over the points with
  0.1 < p1 < 0.85 and a score (:mod:`wxeval.seeps`; NaN always skipped, as WB2). Its inputs are
  the wet threshold and p1 (``seeps=``), not the climatology c.
* ``ensemble`` (members x_1..x_M at a point, x̄ their mean, s² = Σ (x_i − x̄)²/(M − 1), 0 when
  M = 1): ``sum_weight_e`` Σ W, ``sum_crps_skill`` Σ W (1/M) Σ_i |x_i − o|, ``sum_crps_spread``
  Σ W Σ_{i,j} |x_i − x_j| / (M(M − 1)) (0 when M = 1), ``sum_ens_var`` Σ W s²,
  ``sum_ens_mean_se`` Σ W (x̄ − o)², ``ensemble_size`` M (not a sum, never NaN); over the
  points where o and every member are finite (a non-finite value is missing data here);
* ``rank``: ``rank_kk`` Σ W [rank of o = k], k = 0..M, the rank being #{x_i < o} with ties
  (e members equal to o) sharing the point's weight equally over ranks #{x_i < o} … + e; the
  same points as ``ensemble``. A deterministic forecast is the ensemble of one member.

Sums run over the points where W > 0 only.

NaN: a point where f − o is NaN (for the anomaly groups: f − o, f′ or o′) makes the sums it
enters NaN (``sum_weight``/``sum_weight_a`` too), or with ``skipna`` is left out of them and of
the weight. ±inf inside a region gives the sum NumPy gives; outside it (W = 0) it never matters.
``nan_weight`` is > 0 exactly when the field held a NaN (forecast or truth) inside the region.

Each group has a plain-NumPy reference (:func:`reference`, the definition, on dense weights)
and a compiled path (:func:`compute` on a :class:`wxeval.regions.RegionReducer`, via
:mod:`wxeval.kernels`), tested against each other statistic by statistic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

#: Ensemble sums: Σ W over finite points, then Σ W × CRPS skill, CRPS spread, s², (x̄ − o)².
#: ``ensemble_size`` is M itself (so a table knows the M its values depend on).
ENSEMBLE_STATISTICS = ("sum_weight_e", "sum_crps_skill", "sum_crps_spread", "sum_ens_var",
                       "sum_ens_mean_se", "ensemble_size")
#: Rank-histogram slots stored per field (M + 1 ≤ RANK_BINS: up to 50 members); slots above
#: M hold 0; an ensemble of more members gets NaN slots (its histogram is not computed).
RANK_BINS = 51
RANK_STATISTICS = tuple(f"rank_{k:02d}" for k in range(RANK_BINS))


@dataclass(frozen=True)
class StatisticGroup:
    """Statistics computed together; ``needs_climatology`` when they use f′, o′."""

    name: str
    statistics: tuple[str, ...]
    needs_climatology: bool
    doc: str


GROUPS: dict[str, StatisticGroup] = {
    g.name: g
    for g in (
        StatisticGroup("errors", ("sum_weight", "sum_se", "sum_err", "sum_ae"), False,
                       "Σ W, Σ W (f−o)², Σ W (f−o), Σ W |f−o|"),
        StatisticGroup("anomalies", ("sum_fa_oa", "sum_fa2", "sum_oa2"), True,
                       "Σ W f′o′, Σ W f′², Σ W o′²"),
        StatisticGroup("anomaly_sums", ("sum_weight_a", "sum_fa", "sum_oa"), True,
                       "Σ W where f − o, f′, o′ are not NaN, Σ W f′, Σ W o′"),
        StatisticGroup("nan_counts", ("nan_weight",), False, "Σ W [f − o is NaN]"),
        # precipitation (issue 14): SEEPS, from the climatology's SEEPS fields (wxeval.seeps)
        StatisticGroup("seeps", ("sum_weight_seeps", "sum_seeps"), True,
                       "Σ W, Σ W·SEEPS over points with 0.1 < p1 < 0.85 and a score (NaN "
                       "always skipped)"),
        # Ensemble forecasts (members x_1..x_M, mean x̄, unbiased variance s²): one sort per
        # point gives both groups (wxeval.ensemble_kernels).
        StatisticGroup("ensemble", ENSEMBLE_STATISTICS, False,
                       "Σ W, Σ W (1/M)Σ|x_i−o|, Σ W Σ_ij|x_i−x_j|/(M(M−1)), Σ W s², "
                       "Σ W (x̄−o)²"),
        StatisticGroup("rank", RANK_STATISTICS, False,
                       "Σ W [rank of o among the members = k], k = 0..M (M ≤ RANK_BINS − 1)"),
    )
}
#: The group of each statistic.
GROUP_OF: dict[str, str] = {s: g.name for g in GROUPS.values() for s in g.statistics}
#: Computed with every task (nearly free), never a reason to recompute stored inits.
ALWAYS = ("nan_counts",)


def groups_for(statistics: Iterable[str]) -> tuple[str, ...]:
    """The groups holding ``statistics``, in :data:`GROUPS` order."""
    wanted = {GROUP_OF[s] for s in statistics}
    return tuple(g for g in GROUPS if g in wanted)


def statistic_names(groups: Iterable[str]) -> tuple[str, ...]:
    """The statistics of ``groups``, group by group (the order a computed part stores)."""
    return tuple(s for g in groups for s in GROUPS[g].statistics)


# ---------------------------------------------------------------------------------------------
# The definition: plain NumPy on dense weights


def reference(group: str, f, o, c, weights, *, skipna: bool = False, seeps=None) -> np.ndarray:
    """Statistics of ``group`` for N fields (N, S) and dense weights (R, S): (N, R, K).

    Written for clarity, point sets and sums as the module doc defines them: only points with
    W > 0 are read; values elsewhere never matter. ``seeps``: (wet (N, S), p1 (S), dry
    threshold) for the ``seeps`` group; ``ensemble``/``rank``: ``f`` holds the members
    (N, M, S)."""
    if group == "seeps":
        from wxeval import seeps as _seeps

        return _seeps.reference(f, o, *seeps[:2], seeps[2], weights)
    if group in ("ensemble", "rank"):
        return _ensemble_reference(group, f, o, weights, skipna)
    f, o = np.asarray(f, np.float64), np.asarray(o, np.float64)
    c = None if c is None else np.asarray(c, np.float64)
    weights = np.asarray(weights, np.float64)
    names = GROUPS[group].statistics
    out = np.empty((f.shape[0], weights.shape[0], len(names)))
    with np.errstate(invalid="ignore", over="ignore"):
        for n in range(f.shape[0]):
            d = f[n] - o[n]
            fa = None if c is None else f[n] - c[n]
            oa = None if c is None else o[n] - c[n]
            for r, w in enumerate(weights):
                inside = w > 0
                if group in ("errors", "nan_counts"):
                    bad = np.isnan(d) & inside
                    terms = {"sum_se": d * d, "sum_err": d, "sum_ae": np.abs(d)}
                    weight_name = "sum_weight"
                else:
                    bad = (np.isnan(d) | np.isnan(fa) | np.isnan(oa)) & inside
                    terms = {"sum_fa_oa": fa * oa, "sum_fa2": fa * fa, "sum_oa2": oa * oa,
                             "sum_fa": fa, "sum_oa": oa}
                    weight_name = "sum_weight_a"
                keep = inside & ~bad
                for k, name in enumerate(names):
                    if name == "nan_weight":
                        out[n, r, k] = w[bad].sum()
                    elif bad.any() and not skipna:
                        out[n, r, k] = np.nan
                    elif name == weight_name:
                        out[n, r, k] = w[keep].sum()
                    else:
                        out[n, r, k] = (w[keep] * terms[name][keep]).sum()
    return out


def _ensemble_reference(group, x, o, weights, skipna) -> np.ndarray:
    """The ensemble groups by their definitions: members x (N, M, S) (or (N, S) for one
    member), pairwise |x_i − x_j| over all pairs, ranks by counting."""
    x, o = np.asarray(x, np.float64), np.asarray(o, np.float64)
    if x.ndim == o.ndim:
        x = x[:, None]
    weights = np.asarray(weights, np.float64)
    m = x.shape[1]
    names = GROUPS[group].statistics
    out = np.empty((x.shape[0], weights.shape[0], len(names)))
    with np.errstate(invalid="ignore", over="ignore"):
        for n in range(x.shape[0]):
            xs, ov = x[n], o[n]
            finite = np.isfinite(ov) & np.isfinite(xs).all(axis=0)
            xs = np.where(finite, xs, 0.0)
            ov = np.where(finite, ov, 0.0)
            mean = xs.mean(axis=0)
            pairs = np.abs(xs[:, None] - xs[None, :]).sum(axis=(0, 1))
            values = {
                "sum_crps_skill": np.abs(xs - ov).mean(axis=0),
                "sum_crps_spread": pairs / (m * (m - 1)) if m > 1 else np.zeros_like(ov),
                "sum_ens_var": ((xs - mean) ** 2).sum(axis=0) / (m - 1) if m > 1
                else np.zeros_like(ov),
                "sum_ens_mean_se": (mean - ov) ** 2,
                "ensemble_size": np.full_like(ov, m),
            }
            below = (xs < ov).sum(axis=0)
            equal = (xs == ov).sum(axis=0)
            for k in range(RANK_BINS):
                hit = (below <= k) & (k <= below + equal)
                values[f"rank_{k:02d}"] = np.where(hit, 1.0 / (equal + 1), 0.0)
            for r, w in enumerate(weights):
                inside = w > 0
                bad = inside & ~finite
                keep = inside & finite
                for k, name in enumerate(names):
                    if name == "ensemble_size":
                        out[n, r, k] = m
                    elif bad.any() and not skipna:
                        out[n, r, k] = np.nan
                    elif group == "rank" and m + 1 > RANK_BINS:
                        out[n, r, k] = np.nan
                    elif name == "sum_weight_e":
                        out[n, r, k] = w[keep].sum()
                    else:
                        out[n, r, k] = (w[keep] * values[name][keep]).sum()
    return out


# ---------------------------------------------------------------------------------------------
# The compiled path


def compute(groups: Iterable[str], f, o, c, reducer, *, skipna: bool = False, seeps=None,
            members=None, at=None
            ) -> dict[str, np.ndarray]:
    """Statistics of each of ``groups`` for fields (N, A, B) in the reducer's orientation:
    ``{group: (N, R, K)}``, every group from the same decoded arrays.

    ``at``: ``(f_at, o_at, c_at)``, index arrays of length N: field n is then ``f[f_at[n]]``
    against ``o[o_at[n]]`` and ``c[c_at[n]]``, where f, o, c are C-contiguous stacks of fields
    (·, A, B) (see :func:`field_stack`): the truth and climatology windows of a task are read
    in place, not gathered per lead. Without it, field n of each.

    ``members`` (N, M, A, B): the members of an ensemble forecast, whose mean is ``f``; the
    ``ensemble`` and ``rank`` groups read them (one sort per point for both), or ``f`` as a
    one-member ensemble when not given.

    ``errors``, ``anomalies`` and ``nan_counts`` come from one fused pass
    (:func:`wxeval.kernels.field_statistics`; its f′/o′ products only when ``anomalies`` is
    asked), ``anomaly_sums`` from :func:`wxeval.kernels.anomaly_sums`, ``seeps`` from
    :func:`wxeval.seeps.compute` with ``seeps`` = (wet threshold (N, A, B), p1 (A, B), dry
    threshold in metres)."""
    groups = tuple(groups)
    out: dict[str, np.ndarray] = {}
    if at is None:
        f = np.ascontiguousarray(f)
        o = np.ascontiguousarray(o)
        if c is not None:
            c = np.ascontiguousarray(c)
        every = np.arange(f.shape[0])
        at = (every, every, every)
    f_at, o_at, c_at = (np.asarray(a, dtype=np.int64) for a in at)
    if c is None:
        c_at = f_at
    # the kernels index the stacks unchecked: a position outside one would read other memory
    for name, idx, stack in (("f", f_at, f), ("o", o_at, o), ("c", c_at, f if c is None else c)):
        if idx.shape != f_at.shape or (idx.size and not 0 <= idx.min() <= idx.max() < len(stack)):
            raise ValueError(f"compute: positions `at` of {name} must be {f_at.shape[0]} "
                             f"positions in 0..{len(stack) - 1}")
    for g in groups:
        if g == "seeps":
            if seeps is None:
                raise ValueError("statistics 'seeps' need the SEEPS climatology fields")
        elif GROUPS[g].needs_climatology and c is None:
            raise ValueError(f"statistics {g!r} need a climatology")
    if "seeps" in groups:
        from wxeval import seeps as _seeps

        out["seeps"] = _seeps.compute(f[f_at], o[o_at], seeps[0], seeps[1], seeps[2], reducer)
    if {"errors", "anomalies", "nan_counts"} & set(groups):
        out.update(_fused(groups, (f, f_at), (o, o_at),
                          (c, c_at) if "anomalies" in groups else None, reducer, skipna))
    if "anomaly_sums" in groups:
        out["anomaly_sums"] = _anomaly_sums((f, f_at), (o, o_at), (c, c_at), reducer, skipna)
    if {"ensemble", "rank"} & set(groups):
        x = f[f_at][:, None] if members is None else np.ascontiguousarray(members)
        out.update(_ensemble(groups, x, np.ascontiguousarray(o[o_at]), reducer, skipna))
    return {g: out[g] for g in groups}


def field_stack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fields x (..., A, B) as a C-contiguous stack (F, A, B) and the position in it of each
    field of ``x.reshape(-1, A, B)``, without a copy when every field of x is C-contiguous and
    the leading strides are whole fields (a lead of a read group (init, lead, level, A, B):
    ``data[:, k]``); else a contiguous copy. The stack spans x's own memory only (from its first
    field to its last), so it is a view of nothing but x's buffer."""
    *lead, na, nb = x.shape
    item = x.itemsize
    field_bytes = na * nb * item
    strides = x.strides[:-2]
    if (x.size and x.strides[-1] == item and x.strides[-2] == nb * item
            and all(s >= 0 and s % field_bytes == 0 for s in strides)):
        index = np.zeros(lead, dtype=np.int64) if lead else np.zeros((), dtype=np.int64)
        for axis, (size, stride) in enumerate(zip(lead, strides, strict=True)):
            shape = [1] * len(lead)
            shape[axis] = size
            index = index + (np.arange(size) * (stride // field_bytes)).reshape(shape)
        index = index.ravel()
        count = int(index.max()) + 1
        # as writeable as x (the kernels never write): the same array type as a plain stack,
        # so numba compiles one specialisation of each kernel, not two
        stack = np.lib.stride_tricks.as_strided(x, (count, na, nb), (field_bytes, nb * item, item),
                                                writeable=x.flags.writeable)
        return stack, index
    flat = np.ascontiguousarray(x).reshape(-1, na, nb)
    return flat, np.arange(flat.shape[0])


def _ensemble(groups, x, o, reducer, skipna) -> dict[str, np.ndarray]:
    from wxeval.ensemble_kernels import N_MOMENTS, ensemble_sums, sorting_network

    n, m, nreg = x.shape[0], x.shape[1], reducer.n_regions
    n_bins = m + 1 if "rank" in groups and m + 1 <= RANK_BINS else 0
    sums = np.empty((n, N_MOMENTS + n_bins, nreg))
    bad = np.empty((n, nreg))
    ensemble_sums(x, o, reducer.lon_axis == -2, reducer.seg_of_lon, reducer.nseg, reducer.lsm,
                  reducer.use_land, reducer.region_land, reducer.region_segs,
                  reducer.region_latw, n_bins, sorting_network(m), sums, bad)
    weight = reducer.weight_sums()[None, :] - bad
    missing = bad > 0
    out = {}
    if "ensemble" in groups:
        e = np.empty((n, nreg, len(ENSEMBLE_STATISTICS)))
        e[:, :, 0] = weight
        e[:, :, 1:-1] = np.moveaxis(sums[:, :N_MOMENTS], 1, 2)
        if not skipna:
            e[missing] = np.nan
        e[:, :, -1] = m
        out["ensemble"] = e
    if "rank" in groups:
        r = np.zeros((n, nreg, RANK_BINS))
        if n_bins:
            r[:, :, :n_bins] = np.moveaxis(sums[:, N_MOMENTS:], 1, 2)
        else:
            r[:] = np.nan
        if not skipna:
            r[missing] = np.nan
        out["rank"] = r
    return out


def _reducer_args(reducer) -> tuple:
    return (reducer.lon_axis == -2, reducer.seg_of_lon, reducer.nseg, reducer.lsm,
            reducer.use_land, reducer.region_land, reducer.region_segs, reducer.region_latw)


def _fused(groups, f, o, c, reducer, skipna) -> dict[str, np.ndarray]:
    """f, o, c: (stack, index) pairs (c None without the anomalies group)."""
    from wxeval.kernels import field_statistics

    n, nreg = f[1].shape[0], reducer.n_regions
    sums = np.empty((n, 6, nreg))
    bad = np.empty((n, 2, nreg))
    has_clim = c is not None
    # without a climatology the kernel never reads c: the truth stands in for it, so a float64
    # forecast (an ensemble mean) against float32 truth compiles one signature, not two (each
    # ~5-8 s of numba compiling on a fresh install)
    field_statistics(f[0], f[1], o[0], o[1], *(c if has_clim else o), has_clim,
                     *_reducer_args(reducer), reducer.lat_seg_start, reducer.area_weights,
                     reducer.region_latsegs, *reducer.land_classes(), sums, bad)
    wsum = reducer.weight_sums()[None, :]
    out = {}
    if "errors" in groups:
        e = np.empty((n, nreg, 4))
        e[:, :, 1:] = np.moveaxis(sums[:, :3], 1, 2)
        if skipna:
            e[:, :, 0] = wsum - bad[:, 0]
        else:
            e[:, :, 0] = wsum
            e[bad[:, 0] > 0] = np.nan
        out["errors"] = e
    if "anomalies" in groups:
        a = np.moveaxis(sums[:, 3:], 1, 2).copy()
        if not skipna:
            a[bad[:, 1] > 0] = np.nan
        out["anomalies"] = a
    if "nan_counts" in groups:
        out["nan_counts"] = bad[:, 0, :, None].copy()
    return out


def _anomaly_sums(f, o, c, reducer, skipna) -> np.ndarray:
    """f, o, c: (stack, index) pairs."""
    from wxeval.kernels import anomaly_sums

    n, nreg = f[1].shape[0], reducer.n_regions
    sums = np.empty((n, 2, nreg))
    bad = np.empty((n, nreg))
    anomaly_sums(f[0], f[1], o[0], o[1], c[0], c[1], *_reducer_args(reducer), sums, bad)
    out = np.empty((n, nreg, 3))
    out[:, :, 1:] = np.moveaxis(sums, 1, 2)
    out[:, :, 0] = reducer.weight_sums()[None, :] - bad
    if not skipna:
        out[bad > 0] = np.nan
    return out


def as_mapping(values: np.ndarray, names: Iterable[str]) -> Mapping[str, np.ndarray]:
    """Statistics stacked on the first axis as ``{name: array}``."""
    return {name: values[k] for k, name in enumerate(names)}
