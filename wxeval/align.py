"""By-init alignment of forecasts, truth and climatology.

Convention (WeatherBench 2, "by init"): for each forecast init time t and lead time l the
truth is taken at exactly the valid time v = t + l, and the climatology at
(dayofyear(v), hour(v)) with dayofyear the raw calendar day 1..366. The init range in a config
selects *init* times. Nothing is interpolated: a needed valid time or climatology label that is
absent is an error that names it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd

from wxeval.indexing import positions


class AlignmentError(ValueError):
    """Forecast, truth and climatology cannot be aligned; the message says what is missing."""


def parse_duration(value: str | int | float | np.timedelta64 | pd.Timedelta) -> np.timedelta64:
    """``"6h"``, ``"10d"``, ``"90min"``, a number of hours, or a timedelta → timedelta64[ns].

    A number is hours, also when written as text (``"24"``, ``" 12.5 "``): pandas alone would
    read ``"24"`` as 24 *nanoseconds*. Numbers are rounded to whole seconds."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            value = value.strip()
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"cannot read duration {value!r}: write it like '6h' or '10d'")
    if isinstance(value, int | float | np.integer | np.floating):
        if not np.isfinite(value) or abs(value) > 2.5e6:  # timedelta64[ns] ends at ~292 years
            raise ValueError(f"cannot read duration {value!r}: write it like '6h' or '10d'")
        return np.timedelta64(int(round(float(value) * 3600)), "s").astype("timedelta64[ns]")
    if isinstance(value, str):
        ns = _unit_duration_ns(value)
        if ns is not None:
            return np.timedelta64(ns, "ns")
    try:
        td = pd.Timedelta(value)
    except (ValueError, TypeError) as err:
        raise ValueError(f"cannot read duration {value!r}: write it like '6h' or '10d'") from err
    if pd.isna(td):
        raise ValueError(f"cannot read duration {value!r}: write it like '6h' or '10d'")
    return td.to_timedelta64().astype("timedelta64[ns]")


#: Seconds per unit of ``<number><unit>`` durations, any case (``"10d"``, ``"12H"``,
#: ``"2d12h"``, ``"90 min"``). Read here rather than by pandas, which deprecates ``d`` and
#: ``H`` (a warning now, an error in pandas 4). ``m`` is minutes, as in pandas.
_UNIT_SECONDS = {
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86400),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]+)\s*")


def _unit_duration_ns(text: str) -> int | None:
    """Nanoseconds of ``[sign] <number><unit> [<number><unit> …]`` (exact), or ``None`` when
    ``text`` has another form (left to pandas: ISO 8601, ``"1 days 06:00:00"``)."""
    t = text.strip().lower()
    sign = 1
    if t[:1] in ("+", "-"):
        sign, t = (-1 if t[0] == "-" else 1), t[1:].lstrip()
    if not t:
        return None
    total, pos = Fraction(0), 0
    while pos < len(t):
        m = _DURATION_PART.match(t, pos)
        if m is None or m.group(2) not in _UNIT_SECONDS:
            return None
        total += Fraction(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    ns = sign * round(total * 10**9)
    if abs(ns) >= 2**63 - 1:
        raise ValueError(f"cannot read duration {text!r}: longer than ~292 years")
    return ns


def format_hours(lead: np.timedelta64) -> str:
    hours = lead / np.timedelta64(1, "h")
    return f"{hours:g}h"


def select_init_times(
    available: np.ndarray,
    start: str | None = None,
    stop: str | None = None,
    hours: Sequence[int] | None = None,
) -> np.ndarray:
    """Init times within [start, stop] (inclusive; a date-only ``stop`` includes the whole day,
    as xarray's label slicing does), optionally only at the given UTC hours."""
    idx = pd.DatetimeIndex(available)
    sel = idx[idx.slice_indexer(start, stop)] if (start or stop) else idx
    if hours is not None:
        sel = sel[np.isin(sel.hour, list(hours))]
    return sel.values.astype("datetime64[ns]")


def lead_range(start: str, stop: str, step: str) -> np.ndarray:
    """Lead times start, start+step, … ≤ stop (``stop`` inclusive)."""
    a, b, s = parse_duration(start), parse_duration(stop), parse_duration(step)
    if s <= np.timedelta64(0, "ns"):
        raise ValueError("lead_times.step must be positive")
    n = int((b - a) // s) + 1
    return (a + s * np.arange(max(n, 0))).astype("timedelta64[ns]")


def missing_valid_times(
    init_times: np.ndarray, lead_times: np.ndarray, truth_times: np.ndarray
) -> np.ndarray:
    """Valid times t + l (over all pairs) that the truth does not have, sorted and unique."""
    valid = np.unique((init_times[:, None] + lead_times[None, :]).ravel())
    return valid[~np.isin(valid, truth_times)]


def describe_times(times: np.ndarray, limit: int = 5) -> str:
    """``"2020-01-01T06, 2020-01-02T00, … (12 in all)"`` for error messages (NaT as "NaT")."""
    shown = [
        "NaT" if pd.isna(t) else pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M") for t in times[:limit]
    ]
    more = f", … ({len(times)} in all)" if len(times) > limit else ""
    return ", ".join(shown) + more


def check_truth_covers(
    init_times: np.ndarray, lead_times: np.ndarray, truth_times: np.ndarray, truth_name: str
) -> None:
    missing = missing_valid_times(init_times, lead_times, truth_times)
    if missing.size:
        raise AlignmentError(
            f"{truth_name}: truth lacks {missing.size} valid time(s) needed: "
            f"{describe_times(missing)}; narrow the init range or lead times"
        )


@dataclass(frozen=True)
class TruthGaps:
    """How a selection of inits fares against the truth's valid times (:func:`truth_gaps`).

    ``holes``: needed valid times missing at or before the truth's last time (missing data);
    ``late``: needed valid times after it (not arrived yet). ``kept``: inits scored now;
    ``pending``: inits waiting for late truth only; ``skipped``: inits needing a hole
    (``missing_truth: skip``)."""

    kept: np.ndarray
    pending: np.ndarray
    skipped: np.ndarray
    holes: np.ndarray
    late: np.ndarray


def truth_gaps(
    init_times: np.ndarray,
    lead_times: np.ndarray,
    truth_times: np.ndarray,
    mode: str,
    truth_name: str,
    model: str,
) -> TruthGaps:
    """Apply ``missing_truth`` (``mode``) to the needed valid times t + l; shared by the plan
    and ``wxeval check`` so both decide alike.

    * ``error``: any missing valid time is an error;
    * ``pending``: inits needing valid times after the truth's last time wait for a later run;
      a valid time missing *inside* the truth (a hole: at or before its last time) is an error
      naming it — pending truth is truth that has not arrived *yet*;
    * ``skip``: as ``pending``, and inits needing a hole are skipped (listed by the caller).

    Raises :class:`AlignmentError` (naming the missing valid times) when the mode refuses.
    """
    empty = init_times[:0]
    missing = missing_valid_times(init_times, lead_times, truth_times)
    if missing.size == 0:
        return TruthGaps(init_times, empty, empty, missing, missing)
    if mode not in ("pending", "skip"):
        check_truth_covers(init_times, lead_times, truth_times, truth_name)
    last = truth_times.max() if truth_times.size else None
    late = missing if last is None else missing[missing > last]
    holes = missing[~np.isin(missing, late)]
    if holes.size and mode == "pending":
        raise AlignmentError(
            f"{truth_name}: truth lacks {holes.size} valid time(s) inside its range needed by "
            f"{model!r}: {describe_times(holes)}; pending waits only for times after the "
            f"truth's last ({describe_times(np.atleast_1d(last))}): fill the gap, narrow the "
            "selection, or set missing_truth: skip to skip the inits that need them"
        )
    valid = init_times[:, None] + lead_times[None, :]
    needs_hole = np.isin(valid, holes).any(axis=1)
    needs_late = np.isin(valid, late).any(axis=1)
    return TruthGaps(
        kept=init_times[~needs_hole & ~needs_late],
        pending=init_times[needs_late & ~needs_hole],
        skipped=init_times[needs_hole],
        holes=holes,
        late=late,
    )


def climatology_labels(valid_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dayofyear 1..366, hour 0..23) of each valid time."""
    idx = pd.DatetimeIndex(valid_times)
    return np.asarray(idx.day_of_year), np.asarray(idx.hour)


def climatology_positions(
    valid_times: np.ndarray,
    clim_dayofyear: np.ndarray,
    clim_hour: np.ndarray,
    clim_name: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Integer positions (dayofyear, hour) in the climatology store for each valid time."""
    doy, hour = climatology_labels(valid_times)
    doy_pos = positions(np.asarray(clim_dayofyear), doy)
    hour_pos = positions(np.asarray(clim_hour), hour)
    bad = (doy_pos < 0) | (hour_pos < 0)
    if bad.any():
        pairs = sorted({(int(d), int(h)) for d, h in zip(doy[bad], hour[bad], strict=True)})
        shown = ", ".join(f"dayofyear {d} hour {h}" for d, h in pairs[:5])
        more = f", … ({len(pairs)} in all)" if len(pairs) > 5 else ""
        raise AlignmentError(
            f"{clim_name}: climatology lacks labels needed for valid times: {shown}{more}"
        )
    return doy_pos, hour_pos
