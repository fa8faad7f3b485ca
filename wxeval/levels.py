"""Matching the pressure levels of forecast, truth and climatology, per variable.

Every store's ``level`` coordinate has been normalised to whole hPa by
:func:`wxeval.schema.normalize` (Pa converted when its ``units`` say so, anything that is not
within :data:`~wxeval.schema.LEVEL_TOLERANCE_HPA` of a whole hPa refused). Levels are then
matched by those values, exactly: forecast 850 meets truth 850 and nothing else.

A variable is *on pressure levels* when the forecast (or the baseline's source) or the truth
has a ``level`` dimension on it. A store whose variable has no ``level`` dimension but a scalar
``level`` coordinate (written from ``ds.sel(level=850)``) is then a one-level store at that
level. (xarray attaches a store's scalar coordinate to every variable, so a surface variable
of such a store carries it too: when neither store has a ``level`` dimension the variable is
a surface variable, unless both carry a scalar level: equal ones make a one-level variable,
different ones are refused.)

The result per variable is a tuple of :class:`LevelMatch`: for each scored level (hPa, the
results' ``level`` label) the value and units each store holds it under. It is the plan's
record of *which stored level each scored level was matched to* (``ModelPlan.level_matches``,
JSON-able through :meth:`LevelMatch.key`); :func:`level_pairs` gives the same matching for
every level of the forecast, selected or not (``ModelPlan.level_pairs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from wxeval.schema import INVALID_LEVELS, LEVEL, SchemaError


class LevelMatchError(ValueError):
    """The stores' levels cannot be matched; the message names store, variable and levels."""


@dataclass(frozen=True)
class StoredLevel:
    """How one store holds a level: the stored ``value`` in its ``units`` ("hPa" or "Pa"), and
    whether it is a scalar coordinate (a one-level store) rather than a ``level`` dimension."""

    value: float
    units: str
    scalar: bool

    def key(self) -> list:
        return [self.value, self.units, self.scalar]


@dataclass(frozen=True)
class LevelMatch:
    """One scored level (``level``, whole hPa) and the stored level it is taken from in each
    store (``forecast`` is None for built-in baselines, ``climatology`` when there is none)."""

    level: int
    forecast: StoredLevel | None
    truth: StoredLevel
    climatology: StoredLevel | None

    def key(self) -> list:
        """JSON-able identity, e.g. for a statistics entry key:
        ``[850, [85000.0, "Pa", false], [850.0, "hPa", false], null]``."""
        return [
            self.level,
            None if self.forecast is None else self.forecast.key(),
            self.truth.key(),
            None if self.climatology is None else self.climatology.key(),
        ]


@dataclass(frozen=True)
class _Levels:
    """A variable's levels in one store (whole hPa) and how they are stored."""

    values: tuple[int, ...]
    scalar: bool
    units: str

    def stored(self, level: int) -> StoredLevel:
        scale = 100.0 if self.units == "Pa" else 1.0
        return StoredLevel(float(level) * scale, self.units, self.scalar)


def levels_of(da: xr.DataArray) -> _Levels | None:
    """The levels of a (normalised) variable: its ``level`` dimension, or its scalar ``level``
    coordinate; None when it has neither. Raises :class:`~wxeval.schema.SchemaError` when
    :func:`~wxeval.schema.normalize` refused the store's levels (fractional, Pa, twice…)."""
    if LEVEL not in da.coords:
        return None
    coord = da[LEVEL]
    if INVALID_LEVELS in coord.attrs:
        raise SchemaError(str(coord.attrs[INVALID_LEVELS]))
    units = str(coord.attrs.get("stored_units", "hPa"))
    if LEVEL in da.dims:
        return _Levels(tuple(int(x) for x in coord.values), False, units)
    if coord.ndim == 0:
        return _Levels((int(coord.values),), True, units)
    return None


def _show(lv: _Levels) -> str:
    if lv.scalar:
        return f"{lv.values[0]} hPa (a scalar level coordinate)"
    return f"{list(lv.values)} hPa"


def match_levels(
    variable: str,
    requested: Sequence[int] | None,
    source: tuple[str, xr.DataArray],
    truth: tuple[str, xr.DataArray],
    climatology: tuple[str, xr.DataArray] | None,
    *,
    source_is_forecast: bool = True,
) -> tuple[LevelMatch, ...] | None:
    """The scored levels of ``variable`` (None: a surface variable), matched exactly by value.

    ``source`` is (store name, variable) of the forecast, or of the baseline's source store
    (``source_is_forecast=False``: then ``LevelMatch.forecast`` is None); ``truth`` and
    ``climatology`` likewise (``climatology`` None when the variable has none). ``requested``
    levels (hPa) must all be in every store; otherwise the common levels are scored.
    Raises :class:`LevelMatchError` naming the store, the variable and the levels, or
    :class:`~wxeval.schema.SchemaError` for levels the store's normalisation refused.
    """
    (sname, sda), (tname, tda) = source, truth
    on_levels = LEVEL in sda.dims or LEVEL in tda.dims
    if not on_levels and (LEVEL not in sda.coords or LEVEL not in tda.coords):
        return None  # a surface variable (a lone scalar level is xarray's leftover)
    s_lv, t_lv = levels_of(sda), levels_of(tda)
    c_lv = levels_of(climatology[1]) if climatology is not None else None
    if not on_levels:
        assert s_lv is not None and t_lv is not None
        if s_lv.values != t_lv.values:
            raise LevelMatchError(
                f"{sname}: variable {variable!r} is at level {_show(s_lv)}, the truth "
                f"({tname}) at {_show(t_lv)}: nothing to compare (drop the scalar level "
                "coordinates if the variable is not on pressure levels)"
            )
    for name, lv in ((sname, s_lv), (tname, t_lv)):
        if lv is None:
            other = t_lv if lv is s_lv else s_lv
            raise LevelMatchError(
                f"{name}: variable {variable!r} has no level (no level dimension and no scalar "
                f"level coordinate) while the {'truth' if lv is s_lv else 'forecast'} has "
                f"{_show(other)}: its level is unknown"
            )
    assert s_lv is not None and t_lv is not None
    stores = [(sname, s_lv, "forecast" if source_is_forecast else "store"), (tname, t_lv, "truth")]
    if climatology is not None:
        if c_lv is None:
            raise LevelMatchError(
                f"{climatology[0]}: variable {variable!r} has no level while the truth has "
                f"{_show(t_lv)}"
            )
        stores.append((climatology[0], c_lv, "climatology"))
    if requested:
        for lv in requested:
            for name, have, _role in stores:
                if lv not in have.values:
                    raise LevelMatchError(
                        f"{name}: variable {variable!r} lacks level {lv} hPa (has "
                        f"{_show(have)})" + _pa_hint(have, [h for _, h, _ in stores])
                    )
        chosen = sorted(set(requested))
    else:
        common = set(s_lv.values) & set(t_lv.values)
        if c_lv is not None:
            common &= set(c_lv.values)
        if not common:
            shown = "; ".join(f"{role} {_show(h)}" for _, h, role in stores)
            raise LevelMatchError(
                f"{sname}: variable {variable!r} shares no level with the truth"
                + (" and climatology" if c_lv is not None else "")
                + f" ({shown})"
                + _pa_hint(s_lv, [h for _, h, _ in stores])
            )
        chosen = sorted(common)
    return tuple(
        LevelMatch(
            lv,
            s_lv.stored(lv) if source_is_forecast else None,
            t_lv.stored(lv),
            c_lv.stored(lv) if c_lv is not None else None,
        )
        for lv in chosen
    )


def level_pairs(
    source: xr.DataArray, truth: xr.DataArray, climatology: xr.DataArray | None
) -> list[list[float | None]] | None:
    """For *every* level of the forecast's (or baseline source's) variable: ``[forecast level,
    truth level, climatology level]`` as stored (a level in Pa stays in Pa), the truth and
    climatology entries None where that store has no matching level. Over all levels, not
    only the selected ones, so that it identifies the matching independently of a level
    selection (e.g. in a statistics entry key). None for a variable without levels."""
    s_lv, t_lv = levels_of(source), levels_of(truth)
    c_lv = levels_of(climatology) if climatology is not None else None
    if s_lv is None:
        return None

    def stored(lv: _Levels | None, level: int) -> float | None:
        return lv.stored(level).value if lv is not None and level in lv.values else None

    return [[s_lv.stored(x).value, stored(t_lv, x), stored(c_lv, x)] for x in s_lv.values]


def _pa_hint(have: _Levels, all_levels: list[_Levels]) -> str:
    """A hint when levels differ from another store's by a factor of 100 (Pa vs hPa)."""
    mine = np.asarray(have.values, dtype=np.float64)
    for other in all_levels:
        theirs = set(other.values)
        if other is have:
            continue
        if any(x * 100 in theirs for x in mine) or any(x / 100 in theirs for x in mine):
            return (
                "; levels differ by a factor of 100 between the stores: Pa vs hPa? wxeval "
                "reads levels as hPa unless the level coordinate's units attribute says 'Pa'"
            )
    return ""
