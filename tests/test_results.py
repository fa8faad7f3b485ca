"""The tidy CSV writer: rows, order, number format and quoting, against plain Python."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import xarray as xr

from wxeval.results import CSV_HEADER, read_table, to_tidy, write_csv, write_netcdf


def _table() -> xr.Dataset:
    rng = np.random.default_rng(3)
    leads = np.array([24, 0, 12], dtype="timedelta64[h]").astype("m8[ns]")
    regions = ["tropics", 'odd "box", east', "global"]
    metrics = ["rmse", "acc", "bias"]
    t = rng.normal(size=(3, 3, 3, 2)) * 1e3
    t[0, 1, 2, 1] = np.nan
    z = rng.normal(size=(3, 3, 3))
    return xr.Dataset(
        {
            "temperature": (("metric", "region", "lead_time", "level"), t),
            "2m_temperature": (("metric", "region", "lead_time"), z),
        },
        coords={"metric": metrics, "region": regions, "lead_time": leads, "level": [850, 500]},
    )


def test_csv_rows_order_format_and_quoting(tmp_path):
    table = _table()
    write_csv(table, tmp_path / "t.csv")
    with open(tmp_path / "t.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == CSV_HEADER
    expected = []
    for var in sorted(table.data_vars):
        da = table[var]
        levels = sorted(da["level"].values.tolist()) if "level" in da.dims else [None]
        for level in levels:
            for region in sorted(da["region"].values.tolist()):
                for hours in sorted([24, 0, 12]):
                    for metric in sorted(da["metric"].values.tolist()):
                        sel = {"region": region, "metric": metric,
                               "lead_time": np.timedelta64(hours, "h")}
                        if level is not None:
                            sel["level"] = level
                        x = float(da.sel(sel))
                        cell = "" if np.isnan(x) else format(x, ".10g")
                        expected.append([var, "" if level is None else str(level), region,
                                         str(hours), metric, cell])
    assert rows[1:] == expected
    assert any(r[2] == 'odd "box", east' for r in rows[1:])  # quoted, read back intact
    assert sum(r[5] == "" for r in rows[1:]) == 1  # the one NaN


def test_csv_matches_the_tidy_dataframe(tmp_path):
    table = _table()
    edge = table["2m_temperature"].values
    edge[0, 0, :] = [np.inf, -np.inf, -0.0]
    edge[1, 0, :] = [5e-324, -1.2345678901234e-300, 1e300]
    for regions in (["Südamerika, 100%s", 'odd "box", east', "ends,nan"],
                    ["Südamerika", "a,nan\nb", "line\nbreak"]):  # line breaks: cell by cell
        table = table.assign_coords(region=regions)
        write_csv(table, tmp_path / "t.csv")
        to_tidy(table).to_csv(tmp_path / "pandas.csv", index=False, float_format="%.10g")
        assert (tmp_path / "t.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()


def test_csv_of_odd_metric_names_matches_the_tidy_dataframe(tmp_path):
    """The row template's prefix placeholder (NUL) inside a metric name, and %, quotes."""
    table = _table().assign_coords(metric=["a\0b", 'm%s "q"', "rmse"])
    write_csv(table, tmp_path / "t.csv")
    to_tidy(table).to_csv(tmp_path / "pandas.csv", index=False, float_format="%.10g")
    assert (tmp_path / "t.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()


def test_netcdf_round_trip_of_numpy_and_dask_tables(tmp_path):
    table = _table()
    table.attrs["metric_definitions"] = "x"
    for name, t in (("numpy", table), ("dask", table.chunk({"region": 1}))):
        write_netcdf(t, tmp_path / f"{name}.nc", {"count": 3, "big": 2**40, "model": "Ünï"})
        back = read_table(tmp_path / f"{name}.nc")
        for var in table.data_vars:
            np.testing.assert_array_equal(back[var].transpose(*table[var].dims).values,
                                          table[var].values)
        assert back.attrs["count"] == 3 and back.attrs["model"] == "Ünï"
        assert back.attrs["big"] == str(2**40)  # beyond classic netCDF's 32-bit integers
        np.testing.assert_array_equal(back["level"].values, [850, 500])


def test_netcdf4_table_without_an_hdf5_reader_gets_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "old.nc"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))

    def no_engine(*a, **k):
        raise ValueError("did not find a match in any of xarray's currently installed IO "
                         "backends")

    monkeypatch.setattr(xr, "open_dataset", no_engine)
    with pytest.raises(ValueError, match="netCDF-4 .* install h5netcdf .* rerun `wxeval score`"):
        read_table(path)


def test_csv_of_an_empty_table_is_its_header(tmp_path):
    write_csv(xr.Dataset(), tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text() == ",".join(CSV_HEADER) + "\n"
