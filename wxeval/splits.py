"""Splits of the per-init statistics: tables by season, month or init hour, without rereading.

Every metric is a function of init-time means of per-init statistics (:mod:`wxeval.metrics`),
so the table of a subset of inits is :func:`wxeval.results.summarize` of the statistics of
those inits: exactly the table a run restricted to them would write. A split is one such
table per label, stacked along a new dim named after the split:

* ``season``: the init's meteorological season, ``DJF`` (Dec, Jan, Feb), ``MAM``, ``JJA``,
  ``SON`` (UTC; December counts with the following January and February whatever the year);
* ``month``: the init's calendar month, 1 … 12;
* ``init_hour``: the init's UTC hour, 0 … 23.

Only labels that hold at least one init appear, in calendar order.

Files: ``<output>/<model>.by-<split>.nc`` (the table's dims plus the split's, first) and
``<model>.by-<split>.csv`` (the CSV of :mod:`wxeval.results` with the split as first column).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from wxeval.schema import INIT_TIME

SPLITS = ("season", "month", "init_hour")
SEASONS = ("DJF", "MAM", "JJA", "SON")
_SEASON_OF_MONTH = {m: SEASONS[(m % 12) // 3] for m in range(1, 13)}


def labels(init_times: np.ndarray, by: str) -> np.ndarray:
    """The split label of each init (``by`` one of :data:`SPLITS`)."""
    check_split(by)
    t = pd.DatetimeIndex(np.asarray(init_times, "datetime64[ns]"))
    if by == "season":
        return np.array([_SEASON_OF_MONTH[m] for m in t.month], dtype=object)
    if by == "month":
        return np.asarray(t.month, dtype=np.int64)
    return np.asarray(t.hour, dtype=np.int64)


def present(values: np.ndarray, by: str) -> list:
    """The labels among ``values``, in calendar order."""
    order = SEASONS if by == "season" else range(24 if by == "init_hour" else 13)
    have = set(values.tolist())
    return [x for x in order if x in have]


def check_split(by: str) -> None:
    if by not in SPLITS:
        from wxeval.config import ConfigError

        raise ConfigError(f"--by {by!r}: choose one of {', '.join(SPLITS)}")


def summarize_by(
    statistics: xr.Dataset, by: str, metrics: Sequence[str], *, skipna: bool = False
) -> xr.Dataset:
    """The metrics table of each label of split ``by``, stacked along a new first dim ``by``."""
    from wxeval.results import summarize

    lab = labels(statistics[INIT_TIME].values, by)
    tables, keep = [], []
    for label in present(lab, by):
        tables.append(summarize(statistics.isel({INIT_TIME: lab == label}), metrics,
                                skipna=skipna))
        keep.append(label)
    if not tables:
        return xr.Dataset()
    out = xr.concat(tables, dim=pd.Index(keep, name=by), combine_attrs="override")
    for name in out.data_vars:
        out[name] = out[name].transpose(by, ...)
        out[name].attrs = tables[0][name].attrs
    out[by].attrs["long_name"] = {
        "season": "meteorological season of the init (UTC)",
        "month": "calendar month of the init (UTC)",
        "init_hour": "hour of the init (UTC)",
    }[by]
    return out


def write_split(table: xr.Dataset, out: Path, model: str, by: str, attrs: dict) -> list[str]:
    """Write ``<out>/<model>.by-<by>.nc`` and ``.csv``; return their paths."""
    from wxeval import results

    slug = by.replace("_", "-")
    nc, csv = out / f"{model}.by-{slug}.nc", out / f"{model}.by-{slug}.csv"
    results.write_netcdf(table, nc, {**attrs, "split": by})
    text = [",".join([by, *results.CSV_HEADER]) + "\n"]
    if table.data_vars:
        for label in table[by].values.tolist():
            part = "".join(results._csv_chunks(table.sel({by: label})))
            rows = part.split("\n", 1)[1]  # without the header
            if rows:
                # a row never holds a line break unless a quoted name does: prefix record-wise
                text.append(_prefix(rows, str(label)))
    data = "".join(text).encode("utf-8")
    results.atomic_write(csv, lambda tmp: Path(tmp).write_bytes(data))
    return [str(nc), str(csv)]


def _prefix(rows: str, label: str) -> str:
    """``label,`` before every CSV record of ``rows`` (records may hold quoted line breaks)."""
    if '"' not in rows:
        return label + "," + rows[:-1].replace("\n", "\n" + label + ",") + "\n"
    out, inside, start = [], False, True
    for ch in rows:
        if start:
            out.append(label + ",")
            start = False
        out.append(ch)
        if ch == '"':
            inside = not inside
        elif ch == "\n" and not inside:
            start = True
    return "".join(out)
