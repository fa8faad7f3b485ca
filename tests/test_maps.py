"""Error maps per grid point (WB2's SpatialBias/SpatialMSE/SpatialMAE) (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
from builders import make_case, write_all, write_config
from typer.testing import CliRunner

from wxeval.api import score
from wxeval.cli import app


def _ref_maps(case, var, skipna=False):
    """(lead, [level,] lat, lon) bias, mse, mae over inits by loops, float64."""
    out = {k: [] for k in ("bias", "mse", "mae", "count")}
    for j, lead in enumerate(case.lead_times):
        d = np.stack([case.forecast[var][i, j].astype(np.float64)
                      - case.truth_at(var, t + lead).astype(np.float64)
                      for i, t in enumerate(case.init_times)])
        if skipna:
            n = (~np.isnan(d)).sum(axis=0)
            with np.errstate(invalid="ignore"):
                out["bias"].append(np.nansum(d, 0) / n)
                out["mse"].append(np.nansum(d * d, 0) / n)
                out["mae"].append(np.nansum(np.abs(d), 0) / n)
            out["count"].append(n.astype(float))
        else:
            out["bias"].append(d.mean(0))
            out["mse"].append((d * d).mean(0))
            out["mae"].append(np.abs(d).mean(0))
            out["count"].append(np.full(d.shape[1:], float(len(d))))
    return {k: np.stack(v) for k, v in out.items()}


@pytest.fixture(scope="module", params=[False, True], ids=["nan", "skipna"])
def mapped(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("maps")
    case = make_case(variables=("2m_temperature", "temperature"), levels=(500, 850), n_inits=5,
                     leads_h=(0, 24, 48), seed=4, nlat=7, nlon=12, dtype=np.float64)
    case.forecast["2m_temperature"][2, 1, 3, 4] = np.nan  # one init, lead 24 h, one point
    case.forecast["temperature"][0, 2, 1, 0, 0] = np.nan  # a pole point at 850 hPa
    # the forecast stored with descending latitudes (maps come out ascending, on every point)
    write_all(case, root, layout={"latitude_descending": True})
    cfg = write_config(root / "cfg.yaml", case, regions=["global", "global_land"], maps=True,
                       skipna=request.param, metrics=["rmse", "bias"])
    return case, root, request.param, score(cfg, ["model"], root / "out")


def test_maps_equal_numpy_time_means(mapped):
    case, root, skipna, report = mapped
    ds = report.maps["model"]
    np.testing.assert_array_equal(ds["latitude"].values, case.latitude)
    np.testing.assert_array_equal(ds["longitude"].values, case.longitude)
    assert ds["temperature.bias"].dims == ("lead_time", "level", "latitude", "longitude")
    assert ds["2m_temperature.mse"].dims == ("lead_time", "latitude", "longitude")
    for var in ("2m_temperature", "temperature"):
        ref = _ref_maps(case, var, skipna)
        for k in ("bias", "mse", "mae", "count"):
            np.testing.assert_allclose(ds[f"{var}.{k}"].values, ref[k], rtol=1e-10, atol=0,
                                       equal_nan=True, err_msg=f"{var}.{k}")
    # the truth's land fraction for coastlines, on the maps' grid (latitude ascending)
    np.testing.assert_array_equal(ds["land_sea_mask"].values, case.land_sea_mask)
    t2m = ds["2m_temperature.bias"].values
    assert np.isnan(t2m[1, 3, 4]) != skipna  # the NaN point: NaN unless skipped
    assert np.isfinite(t2m[0]).all()


def test_maps_file_and_rerun(mapped, tmp_path):
    case, root, skipna, report = mapped
    from wxeval.results import read_table

    ds = read_table(root / "out" / "model.maps.nc")
    assert ds["temperature.mse"].dtype == np.float32  # the file: float32
    np.testing.assert_allclose(ds["temperature.mse"].values,
                               report.maps["model"]["temperature.mse"].values, rtol=1e-6)
    # the count: a field where NaN were skipped, else one number (an attribute)
    assert ("2m_temperature.count" in ds) == skipna
    if not skipna:
        assert ds["2m_temperature.bias"].attrs["count"] == len(case.init_times)
    assert (ds["lead_time"].values / np.timedelta64(1, "h")).tolist() == [0, 24, 48]
    # a rerun into the same statistics store still has every init in the maps
    again = score(root / "cfg.yaml", ["model"], root / "out")
    np.testing.assert_array_equal(again.maps["model"]["temperature.mse"].values,
                                  report.maps["model"]["temperature.mse"].values)


def test_cli_maps(mapped, tmp_path):
    case, root, skipna, report = mapped
    if skipna:
        pytest.skip("once is enough")
    res = CliRunner().invoke(app, ["score", "-c", str(root / "cfg.yaml"), "-o", str(tmp_path),
                                   "--all", "--maps"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "model.maps.nc").is_file()


@pytest.mark.parametrize("n_inits", [1, 4, 8, 13, 19])  # the kernel takes 8, 4, then 1 a pass
def test_kernel_equals_numpy_reference(n_inits):
    from wxeval.maps import accumulate, reference

    rng = np.random.default_rng(n_inits)
    f = rng.normal(size=(n_inits, 2, 3, 5)).astype(np.float32)
    o = rng.normal(size=(n_inits, 2, 3, 5)).astype(np.float32)
    f[n_inits // 3, 0, 2, 3] = np.nan
    o[n_inits - 1, 1, 0, 0] = np.inf
    f[(5 * n_inits) // 6, 1, 1, 1] = np.nan
    for skipna in (False, True):
        np.testing.assert_allclose(accumulate(f, o, skipna=skipna),
                                   reference(f, o, skipna=skipna), rtol=1e-12, equal_nan=True)
        # and both against sums written here: count, Σd, Σd², Σ|d| over the init axis
        d = f.astype(np.float64) - o.astype(np.float64)
        ok = ~np.isnan(d) if skipna else np.ones(d.shape, bool)
        dz = np.where(ok, d, 0.0) if skipna else d
        want = np.stack([ok.sum(0), dz.sum(0), (dz**2).sum(0), np.abs(dz).sum(0)])
        np.testing.assert_allclose(accumulate(f, o, skipna=skipna), want, rtol=1e-12,
                                   equal_nan=True)


@pytest.mark.parametrize("skipna", [False, True])
def test_kernel_over_several_blocks_of_points(skipna):
    """More grid points than the kernel's block (its sums kept in cache): every block summed,
    with NaN in the first and the last block, written fresh or added to earlier sums."""
    from wxeval.maps import BLOCK, accumulate, reference

    rng = np.random.default_rng(11)
    shape = (13, 3, 80, 90)
    assert BLOCK < 3 * 80 * 90 < 2 * BLOCK
    f = rng.normal(size=shape).astype(np.float32)
    o = rng.normal(size=shape).astype(np.float32)
    f[2, 0, 0, 5] = np.nan
    f[9, 2, 79, 89] = np.nan
    want = reference(f, o, skipna=skipna)
    out = np.full((4, *shape[1:]), 7.0)
    accumulate(f, o, skipna=skipna, out=out, fresh=True)
    np.testing.assert_allclose(out, want, rtol=1e-12, equal_nan=True)
    accumulate(f, o, skipna=skipna, out=out)
    np.testing.assert_allclose(out, 2 * want, rtol=1e-12, equal_nan=True)


def test_maps_add_across_tasks(mapped, tmp_path):
    """A tiny memory budget splits the work into many tasks (init blocks, level groups): the
    sums add up to the same maps."""
    import yaml

    import wxeval.evaluate as ev

    case, root, skipna, report = mapped
    cfg = yaml.safe_load((root / "cfg.yaml").read_text())
    cfg["compute"] = {"memory_per_task": "1KiB"}
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(cfg))
    seen = []
    real = ev.compute_task

    def spy(task, *a, **k):
        seen.append(task)
        return real(task, *a, **k)

    import wxeval.api as api

    old = api.compute_task
    api.compute_task = spy
    try:
        split = score(tmp_path / "small.yaml", ["model"], tmp_path / "out")
    finally:
        api.compute_task = old
    assert len({(t.variable, t.block) for t in seen}) > 2
    for name in report.maps["model"].data_vars:
        np.testing.assert_allclose(split.maps["model"][name].values,
                                   report.maps["model"][name].values, rtol=1e-12,
                                   equal_nan=True, err_msg=name)


def test_kernel_reads_views_without_copying_them():
    """A lead of a block of leads read together is a view with gaps between inits; a view
    with a step inside a row is copied: both equal the sums written here."""
    from wxeval.maps import accumulate

    rng = np.random.default_rng(2)
    block = rng.normal(size=(5, 3, 2, 4, 6)).astype(np.float32)  # (init, lead, level, lat, lon)
    block[2, 1, 0, 3, 5] = np.nan
    o = rng.normal(size=(5, 2, 4, 6)).astype(np.float32)
    from wxeval.maps import _rows

    # the rows of a lead of the block are read where they lie; a step inside a row is copied
    assert np.shares_memory(_rows(block[:, 1])[0], block)
    assert np.shares_memory(_rows(block[::2, 1])[0], block)
    assert not np.shares_memory(_rows(block[:, 1, :, :, ::2])[0], block)
    for f in (block[:, 1], block[:, 1, :, :, ::2], block[::2, 1]):
        oo = o[:, :, :, : f.shape[-1]][: f.shape[0]]
        for skipna in (False, True):
            d = f.astype(np.float64) - oo.astype(np.float64)
            ok = ~np.isnan(d) if skipna else np.ones(d.shape, bool)
            dz = np.where(ok, d, 0.0) if skipna else d
            want = np.stack([ok.sum(0), dz.sum(0), (dz**2).sum(0), np.abs(dz).sum(0)])
            out = np.ones((4, *f.shape[1:]))  # added to what out holds
            accumulate(f, oo, skipna=skipna, out=out)
            np.testing.assert_allclose(out, want + 1, rtol=1e-12, equal_nan=True)
            out = np.full((4, *f.shape[1:]), np.nan)  # ``fresh``: what out holds is ignored
            accumulate(f, oo, skipna=skipna, out=out, fresh=True)
            np.testing.assert_allclose(out, want, rtol=1e-12, equal_nan=True)


def test_maps_file_is_the_generic_netcdf_table(mapped, tmp_path):
    """The maps writer gives the file results.write_netcdf (xarray's path) writes: the same
    variables, values, dims, coordinates and attributes once read."""
    import xarray as xr

    from wxeval.maps import write_maps
    from wxeval.results import read_table, write_netcdf

    case, root, skipna, report = mapped
    ds = report.maps["model"].copy()
    attrs = {"model": "model", "n": 3, "big": 2**40, "list": [1, "a"], "x": 0.5}
    ours = read_table(write_maps(ds.copy(), tmp_path, "model", attrs))
    generic = ds.copy()
    for name in list(generic.data_vars):  # the count attribute, as write_maps makes it
        if name.endswith(".count") and name in ours.data_vars:
            continue
        if name.endswith(".count"):
            generic[name.removesuffix(".count") + ".bias"].attrs["count"] = float(
                generic[name].values.flat[0])
            generic = generic.drop_vars(name)
    write_netcdf(generic, tmp_path / "generic.nc", attrs, dtype="float32")
    theirs = read_table(tmp_path / "generic.nc")
    xr.testing.assert_identical(ours, theirs)
    for name in ours.variables:
        assert ours[name].dtype == theirs[name].dtype, name
        assert ours[name].encoding.get("dtype") == theirs[name].encoding.get("dtype"), name
    # and as scipy's own reader parses both files: the same header and the same bytes
    from scipy.io import netcdf_file

    with netcdf_file(tmp_path / "model.maps.nc", "r", mmap=False) as a, \
            netcdf_file(tmp_path / "generic.nc", "r", mmap=False) as b:
        assert a.version_byte == b.version_byte == 2
        assert a.dimensions == b.dimensions and a._attributes == b._attributes
        assert sorted(a.variables) == sorted(b.variables)
        for name, va in a.variables.items():
            vb = b.variables[name]
            assert va.dimensions == vb.dimensions and va.typecode() == vb.typecode(), name
            assert set(va._attributes) == set(vb._attributes), name
            for k, v in va._attributes.items():
                np.testing.assert_array_equal(v, vb._attributes[k], err_msg=f"{name}.{k}")
            assert va.data.tobytes() == vb.data.tobytes(), name


def test_maps_too_big_for_their_file_are_refused_before_computing(mapped, tmp_path,
                                                                    monkeypatch):
    """A map (lead × level × grid point, float32) over classic netCDF's 4 GiB per variable is
    refused before any task runs, naming the model, the variable and the size (exit 2); here
    the limit is lowered to fall between the case's two variables' map sizes."""
    import wxeval.api as api
    from wxeval import maps
    from wxeval.config import ConfigError

    case, root, skipna, _ = mapped
    if skipna:
        pytest.skip("once is enough")
    n_points = len(case.latitude) * len(case.longitude)
    surface = len(case.lead_times) * n_points * 4  # 2m_temperature: one level
    upper = surface * len(case.levels)  # temperature at 500 and 850 hPa
    monkeypatch.setattr(maps, "FILE_VARIABLE_LIMIT", (surface + upper) // 2)
    ran = []
    monkeypatch.setattr(api, "compute_task", lambda *a, **k: ran.append(1))
    with pytest.raises(ConfigError, match="variable 'temperature'.*2 level"):
        score(root / "cfg.yaml", ["model"], tmp_path / "out")
    assert ran == []
    res = CliRunner().invoke(app, ["score", "-c", str(root / "cfg.yaml"), "-o",
                                   str(tmp_path / "cli"), "--all", "--maps"])
    assert res.exit_code == 2, res.output
    assert "temperature" in res.output and "fewer leads or levels" in res.output
    assert ran == []


def test_classic_netcdf_refuses_a_large_variable_that_is_not_the_last(tmp_path):
    """Classic netCDF states each variable's size in 32 bits: only the last variable may take
    more than 4 GiB. A larger one before it is refused before the file is created (the arrays
    here are broadcast views: nothing that big is allocated)."""
    from wxeval import netcdf_classic as nc

    big = np.broadcast_to(np.float32(0), (2**16, 2**15))  # 8 GiB as float32
    small = np.zeros((2, 3), np.float32)
    path = tmp_path / "x.nc"
    with pytest.raises(ValueError, match="'big' takes 8.0 GiB"):
        nc.write(str(path), {"y": 2**16, "x": 2**15, "a": 2, "b": 3},
                 {"big": nc.Variable(("y", "x"), big, ">f4"),
                  "small": nc.Variable(("a", "b"), small, ">f4")}, {})
    assert not path.exists()


def test_map_sizes_refused_before_computing_and_wb2_jobs_accepted():
    """WB2's 0.25° job (41 leads, 13 levels) fits both limits; 0.1° with 13 levels does not
    fit one stored chunk of a lead's sums (4 × levels × points × 8 B over Blosc's 2 GB), and
    0.25° with 85 leads of 13 levels does not fit a classic netCDF variable (float32 map
    over 4 GiB): both refused, naming the model, variable and what to reduce."""
    from wxeval.config import ConfigError
    from wxeval.maps import check_file_size

    check_file_size("hres", "temperature", 41, 13, 721 * 1440)  # no error
    with pytest.raises(ConfigError, match=r"'hres'.*'temperature'.*one lead's sums.*2\.5 GiB"):
        check_file_size("hres", "temperature", 4, 13, 1801 * 3600)
    with pytest.raises(ConfigError, match=r"'hres'.*'temperature'.*one map.*4\.3 GiB"):
        check_file_size("hres", "temperature", 85, 13, 721 * 1440)


@pytest.mark.parametrize("case", ["fields", "inits", "o_rows", "o_rows count", "out"])
def test_kernel_refuses_inputs_it_would_read_past(case):
    """The map kernel indexes unchecked: mismatched fields, truth rows outside the stack, or
    an ``out`` it could not add into in place are an error, not a silent wrong sum."""
    from wxeval.maps import accumulate

    f = np.zeros((3, 4, 5), np.float32)
    o, rows, out = np.zeros((3, 4, 5), np.float32), None, None
    if case == "fields":
        o = np.zeros((3, 4, 4), np.float32)
    elif case == "inits":
        o = np.zeros((2, 4, 5), np.float32)
    elif case == "o_rows":
        o, rows = np.zeros((6, 4, 5), np.float32), np.array([0, 2, 6])
    elif case == "o_rows count":
        o, rows = np.zeros((6, 4, 5), np.float32), np.array([0, 2])
    else:
        out = np.zeros((4, 5, 4)).transpose(0, 2, 1)  # right shape, not C-contiguous
    with pytest.raises(ValueError, match="maps: "):
        accumulate(f, o, out=out, o_rows=rows)
