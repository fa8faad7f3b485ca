"""The canonical schema every store is mapped onto, and the lazy normalisation that does it.

Canonical names (units as ERA5: geopotential m² s⁻², temperature K, pressure Pa, wind m s⁻¹):

* forecast: ``init_time`` (datetime64), ``lead_time`` (timedelta64), ``valid_time`` (a 2-D
  coordinate ``init_time + lead_time``), optional ``level`` (hPa, int: see
  :func:`_normalize_level`), ``latitude`` (degrees, ascending), ``longitude`` (degrees,
  0 ≤ λ < 360, ascending);
* truth: ``valid_time`` instead of ``init_time``/``lead_time``;
* climatology: ``dayofyear`` (1..366) and ``hour`` (0..23) instead of a time axis.

Normalisation never reads data values: renames, flips and longitude rolls are lazy index
operations on the opened store.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

INIT_TIME = "init_time"
LEAD_TIME = "lead_time"
VALID_TIME = "valid_time"
LEVEL = "level"
LATITUDE = "latitude"
LONGITUDE = "longitude"
DAYOFYEAR = "dayofyear"
HOUR = "hour"
LAND_SEA_MASK = "land_sea_mask"
#: Ensemble members of a forecast (canonical name).
MEMBER = "member"
#: Member dimension names recognised in forecast stores (WB2's IFS ENS: ``number``); another
#: name is mapped with the model's ``ensemble_dim:`` in the config.
MEMBER_NAMES = ("number", "realization", "sample", "member", "ensemble")

log = logging.getLogger("wxeval")

#: Names that real stores use, mapped to canonical ones. ``time`` depends on the store's role.
COMMON_RENAMES: dict[str, str] = {
    "lat": LATITUDE,
    "lon": LONGITUDE,
    "prediction_timedelta": LEAD_TIME,
    "lead": LEAD_TIME,
    "step": LEAD_TIME,
    "pressure_level": LEVEL,
    "isobaricInhPa": LEVEL,
}

ROLE_TIME_NAME = {"forecast": INIT_TIME, "truth": VALID_TIME, "climatology": None, "static": None}

#: Per-variable units the loaders expect (ERA5 conventions).
EXPECTED_UNITS: dict[str, str] = {
    "geopotential": "m**2 s**-2",
    "temperature": "K",
    "2m_temperature": "K",
    "u_component_of_wind": "m s**-1",
    "v_component_of_wind": "m s**-1",
    "10m_u_component_of_wind": "m s**-1",
    "10m_v_component_of_wind": "m s**-1",
    "specific_humidity": "kg kg**-1",
    "mean_sea_level_pressure": "Pa",
    "total_precipitation_6hr": "m",
    # precipitation and derived variables (wxeval.derived)
    "total_precipitation": "m",
    "total_precipitation_24hr": "m",
    "10m_wind_speed": "m s**-1",
    "wind_speed": "m s**-1",
}

#: Wind vector pairs: (u name, v name) -> derived variable name.
WIND_VECTORS: dict[tuple[str, str], str] = {
    ("10m_u_component_of_wind", "10m_v_component_of_wind"): "10m_wind_vector",
    ("u_component_of_wind", "v_component_of_wind"): "wind_vector",
}

GRID_TOLERANCE_DEG = 1e-3
#: A stored level (in hPa after any Pa conversion) is the whole hPa it is within this of; any
#: other value is refused (never rounded or truncated). Levels are matched across stores by
#: these whole-hPa values, i.e. exactly on the stored values up to this tolerance.
LEVEL_TOLERANCE_HPA = 1e-6
#: No pressure level in hPa exceeds this (the highest surface pressures are ~1085 hPa): larger
#: values are Pa without a ``units`` attribute saying so, and are refused with that hint.
MAX_LEVEL_HPA = 1100.0
#: ``units`` attribute values of a level coordinate in Pa (converted to hPa: value / 100).
PASCAL_UNITS = frozenset({"pa", "pascal", "pascals"})
#: Attribute of a ``level`` coordinate that :func:`_normalize_level` refused: the reason, raised
#: as a :class:`SchemaError` when a variable on levels is scored.
INVALID_LEVELS = "wxeval_invalid_levels"
#: Fields are scored on these dims only (per role); any other dim is refused before scoring.
FIELD_DIMS: dict[str, frozenset[str]] = {
    "forecast": frozenset({INIT_TIME, LEAD_TIME, MEMBER, LEVEL, LATITUDE, LONGITUDE}),
    "truth": frozenset({VALID_TIME, LEVEL, LATITUDE, LONGITUDE}),
    "climatology": frozenset({DAYOFYEAR, HOUR, LEVEL, LATITUDE, LONGITUDE}),
}


class SchemaError(ValueError):
    """A store cannot be mapped onto the canonical schema. The message names store and problem."""


def normalize(
    ds: xr.Dataset,
    role: str,
    *,
    name: str,
    rename: Mapping[str, str] | None = None,
) -> xr.Dataset:
    """Map a lazily opened store onto the canonical schema (no data values are read).

    ``role`` is ``"forecast"``, ``"truth"``, ``"climatology"`` or ``"static"`` (a land-sea mask
    store: latitude and longitude only, any time axis is ignored); ``name`` labels the store in
    error messages; ``rename`` maps the store's own names to canonical ones and is applied first.
    """
    if role not in ROLE_TIME_NAME:
        raise ValueError(f"unknown store role {role!r}")
    if rename:
        missing = [k for k in rename if k not in ds.variables and k not in ds.dims]
        if missing:
            member = [k for k in missing if rename[k] == MEMBER]
            what = (f"ensemble_dim {member[0]!r} (the member dimension) is not a dimension of "
                    f"the store (dims: {', '.join(map(str, ds.dims))})" if member else
                    f"cannot rename {missing}: not in the store")
            raise SchemaError(f"{name}: {what}")
        ds = ds.rename(dict(rename))
    renames = {k: v for k, v in COMMON_RENAMES.items() if k in ds.variables or k in ds.dims}
    renames = {k: v for k, v in renames.items() if v not in ds.variables}
    time_name = ROLE_TIME_NAME[role]
    if time_name is not None and "time" in ds.dims and time_name not in ds.dims:
        renames["time"] = time_name
    if role == "forecast":
        members = [d for d in MEMBER_NAMES if d in ds.dims]
        if len(members) > 1:
            raise SchemaError(
                f"{name}: several ensemble member dimensions {members}: name the one to score "
                "with `ensemble_dim:` in the config"
            )
        if members and members[0] != MEMBER:
            renames[members[0]] = MEMBER
    if renames:
        ds = ds.rename(renames)
    # A scalar or unused valid_time coordinate from the store would clash with ours.
    if role == "forecast" and VALID_TIME in ds.variables and VALID_TIME not in ds.dims:
        ds = ds.drop_vars(VALID_TIME)

    required = [LATITUDE, LONGITUDE]
    if role == "forecast":
        required += [INIT_TIME, LEAD_TIME]
    elif role == "truth":
        required += [VALID_TIME]
    elif role == "climatology":
        required += [DAYOFYEAR, HOUR]
    absent = [d for d in required if d not in ds.dims]
    if absent:
        raise SchemaError(
            f"{name}: {role} store lacks dimension(s) {absent} (has {sorted(map(str, ds.dims))}); "
            "map its names with `rename:` in the config"
        )

    ds = _normalize_latitude(ds, name)
    ds = _normalize_longitude(ds, name)
    if role == "forecast":
        _refuse_not_a_time(ds, INIT_TIME, name, "init time")
        ds = _normalize_lead(ds, name)
        if not pd.Index(ds[INIT_TIME].values).is_unique:
            raise SchemaError(f"{name}: duplicated init times in the forecast store")
        if not pd.Index(ds[INIT_TIME].values).is_monotonic_increasing:
            ds = ds.sortby(INIT_TIME)
        ds = ds.assign_coords({VALID_TIME: ds[INIT_TIME] + ds[LEAD_TIME]})
    elif role == "truth":
        times = pd.Index(ds[VALID_TIME].values)
        if not np.issubdtype(times.dtype, np.datetime64):
            raise SchemaError(f"{name}: time axis is not datetime64 (got {times.dtype})")
        _refuse_not_a_time(ds, VALID_TIME, name, "time")
        if not times.is_unique:
            raise SchemaError(f"{name}: duplicated times in the truth store")
        if not times.is_monotonic_increasing:
            ds = ds.sortby(VALID_TIME)
    elif role == "climatology":
        for dim in (DAYOFYEAR, HOUR):
            labels = pd.Index(ds[dim].values)
            if not labels.is_unique:
                dup = sorted(set(labels[labels.duplicated()].tolist()))
                raise SchemaError(f"{name}: duplicated {dim} label(s) {dup} in the climatology")
    if LEVEL in ds.coords:
        try:
            ds = _normalize_level(ds, name)
        except SchemaError as err:
            # Refused when a variable on levels is scored (wxeval.levels.levels_of), not for
            # the surface variables of the same store.
            coord = ds[LEVEL]
            ds = ds.assign_coords(
                {LEVEL: (coord.dims, coord.values, {**coord.attrs, INVALID_LEVELS: str(err)})}
            )
    return ds


def _refuse_not_a_time(ds: xr.Dataset, dim: str, name: str, what: str) -> None:
    """NaT (not a time) on a time axis is refused, naming the stored positions."""
    values = ds[dim].values
    if values.dtype.kind not in "mM":
        return
    bad = np.flatnonzero(np.isnat(values))
    if bad.size:
        shown = ", ".join(str(int(i)) for i in bad[:5]) + (", …" if bad.size > 5 else "")
        raise SchemaError(
            f"{name}: {what} axis holds NaT (not a time) at position(s) {shown} (0-based, as "
            f"stored) of {values.size}: a missing time label; drop or fix those entries"
        )


def _normalize_level(ds: xr.Dataset, name: str) -> xr.Dataset:
    """The ``level`` coordinate (a dimension, or a scalar coordinate of a one-level store) as
    whole hPa (int64).

    Levels are hPa unless the coordinate's ``units`` attribute is Pa (``Pa``, ``pascal``), in
    which case they are divided by 100 (logged). A value that is not within
    :data:`LEVEL_TOLERANCE_HPA` of a whole hPa is refused (wxeval's results label levels by
    whole hPa; it never rounds or truncates), as is a value above :data:`MAX_LEVEL_HPA` (Pa
    without units saying so), a NaN, and a level stored twice (:func:`normalize` then keeps the
    coordinate as stored, with the reason in the attribute :data:`INVALID_LEVELS`: only the
    variables on levels are refused). The stored units are kept in the attribute
    ``stored_units`` ("Pa" or "hPa") for the plan's level matching."""
    coord = ds[LEVEL]
    if coord.ndim > 1 or (coord.ndim == 1 and coord.dims != (LEVEL,)):
        raise SchemaError(f"{name}: level coordinate has dims {coord.dims}, expected (level,)")
    raw = np.asarray(coord.values)
    if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
        raise SchemaError(f"{name}: level coordinate has dtype {raw.dtype}, expected numbers (hPa)")
    units = str(coord.attrs.get("units", "") or "").strip()
    in_pa = units.lower() in PASCAL_UNITS
    hpa = raw.astype(np.float64) / (100.0 if in_pa else 1.0)
    flat = np.atleast_1d(hpa)
    shown_units = "Pa" if in_pa else "hPa"
    if not np.all(np.isfinite(flat)):
        raise SchemaError(f"{name}: level coordinate holds NaN or inf")
    whole = np.rint(flat)
    off = np.abs(flat - whole) > LEVEL_TOLERANCE_HPA
    if off.any():
        bad = ", ".join(f"{x:g}" for x in np.atleast_1d(raw.astype(np.float64))[off][:5])
        raise SchemaError(
            f"{name}: level(s) {bad} {shown_units} are not whole hPa: wxeval matches and labels "
            "pressure levels in whole hPa and never rounds or truncates them (select or "
            "relabel the levels first)"
        )
    if np.any(whole > MAX_LEVEL_HPA):
        big = ", ".join(f"{x:g}" for x in whole[whole > MAX_LEVEL_HPA][:5])
        raise SchemaError(
            f"{name}: level(s) {big} cannot be hPa (no pressure level exceeds "
            f"{MAX_LEVEL_HPA:g} hPa): in Pa? set the level coordinate's units attribute to "
            "'Pa' (wxeval then divides by 100) or relabel the levels in hPa"
            + (f" (its units attribute says {units!r})" if units else "")
        )
    if coord.ndim == 1 and not pd.Index(whole).is_unique:
        dup = sorted({int(x) for x in whole[pd.Index(whole).duplicated()]})
        raise SchemaError(f"{name}: level(s) {dup} hPa stored more than once")
    if in_pa:
        log.info("%s: level coordinate in %s (units %r): converted to hPa", name, "Pa", units)
    values = whole.astype(np.int64)
    attrs = {"units": "hPa", "stored_units": shown_units}
    if coord.ndim == 0:
        return ds.assign_coords({LEVEL: ((), values[0], attrs)})
    return ds.assign_coords({LEVEL: (LEVEL, values, attrs)})


def check_field_dims(da: xr.DataArray, role: str, store: str) -> None:
    """Refuse a field with a dimension that is not scored (e.g. an ensemble ``number``): the
    one check shared by ``wxeval score`` (the plan) and ``wxeval check``."""
    extra = [str(d) for d in da.dims if d not in FIELD_DIMS.get(role, frozenset(da.dims))]
    if extra:
        members = [d for d in extra if d in MEMBER_NAMES]
        hint = (f" ({members[0]!r} looks like ensemble members: only a forecast may have them)"
                if members else "")
        raise SchemaError(
            f"{store}: {da.name}: unexpected dimension(s) {extra} (fields are scored on time, "
            "lead, level, latitude and longitude, and a forecast's ensemble members: select or "
            f"average the others first){hint}"
        )


def _normalize_latitude(ds: xr.Dataset, name: str) -> xr.Dataset:
    lat = np.asarray(ds[LATITUDE].values, dtype=np.float64)
    if lat.ndim != 1 or lat.size < 2:
        raise SchemaError(f"{name}: latitude must be a 1-D axis with at least 2 points")
    if np.any(np.abs(lat) > 90 + GRID_TOLERANCE_DEG):
        raise SchemaError(f"{name}: latitudes outside [-90, 90]")
    step = np.diff(lat)
    if np.all(step < 0):
        ds = ds.isel({LATITUDE: slice(None, None, -1)})
    elif not np.all(step > 0):
        raise SchemaError(f"{name}: latitude is not monotonic")
    return ds


def _normalize_longitude(ds: xr.Dataset, name: str) -> xr.Dataset:
    lon = np.asarray(ds[LONGITUDE].values, dtype=np.float64)
    if lon.ndim != 1:
        raise SchemaError(f"{name}: longitude must be a 1-D axis")
    wrapped = np.mod(lon, 360.0)
    wrapped[np.isclose(wrapped, 360.0, atol=1e-9)] = 0.0
    order = np.argsort(wrapped, kind="stable")
    if np.any(np.diff(wrapped[order]) <= 0):
        raise SchemaError(f"{name}: longitudes repeat after wrapping to 0..360")
    if not np.array_equal(order, np.arange(lon.size)):
        # A roll from -180..180 (or any order) to 0..360: lazy integer indexing.
        ds = ds.isel({LONGITUDE: order})
    if not np.array_equal(wrapped[order], lon[order]):
        ds = ds.assign_coords({LONGITUDE: wrapped[order]})
    return ds


def _normalize_lead(ds: xr.Dataset, name: str) -> xr.Dataset:
    lead = ds[LEAD_TIME]
    if not np.issubdtype(lead.dtype, np.timedelta64):
        raise SchemaError(
            f"{name}: lead time axis has dtype {lead.dtype}, expected timedelta64 "
            "(decode it, or set units like 'hours' on the store)"
        )
    _refuse_not_a_time(ds, LEAD_TIME, name, "lead time")
    leads = pd.Index(lead.values)
    if not leads.is_unique:
        dup = np.unique(leads[leads.duplicated()].values)
        shown = ", ".join(f"{x / np.timedelta64(1, 'h'):g}h" for x in dup[:5])
        raise SchemaError(
            f"{name}: duplicated lead time(s) {shown} in the forecast store (each lead must "
            "appear once)"
        )
    if not leads.is_monotonic_increasing:
        ds = ds.sortby(LEAD_TIME)
    return ds


def spatial_dims(da: xr.DataArray) -> tuple[str, str]:
    """The (first, second) horizontal dims of ``da`` in storage order."""
    dims = [d for d in da.dims if d in (LATITUDE, LONGITUDE)]
    if len(dims) != 2:
        raise SchemaError(f"{da.name}: expected latitude and longitude dims, got {da.dims}")
    return dims[0], dims[1]


def check_same_grid(a: xr.Dataset, b: xr.Dataset, name_a: str, name_b: str) -> None:
    """Refuse (never regrid) when two canonical stores are on different grids."""
    for dim in (LATITUDE, LONGITUDE):
        va, vb = a[dim].values, b[dim].values
        if va.shape != vb.shape:
            raise SchemaError(
                f"grids differ: {name_a} has {va.size} {dim}s, {name_b} has {vb.size}; "
                "wxeval never regrids silently: regrid one store first"
            )
        diff = float(np.max(np.abs(va.astype(np.float64) - vb.astype(np.float64))))
        if diff > GRID_TOLERANCE_DEG:
            raise SchemaError(
                f"grids differ: {dim} of {name_a} and {name_b} differ by up to {diff:.4g}°"
            )
