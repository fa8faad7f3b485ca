"""The benchmark's decode-only baseline (scripts/decode_only.py, scripts/benchmark.py): it reads
exactly the chunk files the job needs, and decodes them to the bytes zarr-python reads."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import benchmark  # noqa: E402
from decode_only import ZarrV2Array, read_and_decode  # noqa: E402

MODEL = "graphcast_like"


@pytest.fixture
def small_job(monkeypatch):
    """Two variables (one with levels 500/850), leads 0/12/24 h, 00/12 UTC inits from
    2020-01-01 (the benchmark's own job geometry, shrunk)."""
    monkeypatch.setattr(benchmark, "VARIABLES", ("temperature", "2m_temperature"))
    monkeypatch.setattr(benchmark, "LEVELS", (500, 850))
    monkeypatch.setattr(benchmark, "LEAD_HOURS", (0, 12, 24))


def _expected(layout: str) -> set[str]:
    """By hand: stores written for 2 days of inits (2020-01-01 00 UTC … 01-02 12 UTC), job =
    day 2 only. Forecast inits at positions 2, 3; truth times 01-01 00 … 01-03 12 (6) of which
    the job verifies at positions 2-5; climatology hours (0, 12) × dayofyears (1, 2, 3) of which
    the job needs hours 0 and 12 of days 2 and 3 (positions 1, 2)."""
    files = set()
    for var, tail in (("temperature", ".0.0.0"), ("2m_temperature", ".0.0")):
        files |= {f"era5.zarr/{var}/{t}{tail}" for t in (2, 3, 4, 5)}
        files |= {f"climatology.zarr/{var}/{h}.{d}{tail}" for h in (0, 1) for d in (1, 2)}
        if layout == "lead":
            files |= {f"{MODEL}.zarr/{var}/{i}.{lead}{tail}" for i in (2, 3) for lead in (0, 1, 2)}
        else:
            files |= {f"{MODEL}.zarr/{var}/{i}.0{tail}" for i in (2, 3)}
    return files


@pytest.mark.parametrize("layout", ["lead", "init"])
@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_decode_only_reads_the_jobs_chunks_as_zarr_does(small_job, tmp_path, codec, layout):
    folder = benchmark.store_folder("64x32", "small", codec, layout)
    assert codec in folder and layout in folder
    paths = benchmark.ensure_stores(tmp_path, "64x32", {MODEL: 2}, lambda _: None,
                                    folder=folder, codec=codec, layout=layout)
    root = tmp_path / folder
    files = benchmark.job_chunk_files({k: str(v) for k, v in paths.items()}, 1, [MODEL],
                                      first_day=2)
    names = [str(path.relative_to(root)) for _, path in files]
    assert len(names) == len(set(names))  # each file once
    assert set(names) == _expected(layout)

    want_id = "blosc" if codec == "lz4" else "zstd"
    for arr, path in files:
        assert arr.compressor.codec_id == want_id
        if codec == "lz4":
            assert (arr.compressor.cname, arr.compressor.shuffle) == ("lz4", 1)
        ids = tuple(int(i) for i in path.name.split("."))
        region = tuple(slice(i * c, min((i + 1) * c, n))
                       for i, c, n in zip(ids, arr.chunks, arr.shape, strict=True))
        expected = zarr.open_group(str(path.parent.parent), mode="r")[path.parent.name][region]
        got = arr.decode(path.read_bytes())
        buffer = np.empty(arr.chunk_size, arr.dtype)
        into = arr.decode(path.read_bytes(), out=buffer)
        assert got.shape == expected.shape == arr.chunks  # no edge chunks on this grid
        assert got.dtype == expected.dtype == np.float32
        assert got.tobytes() == expected.tobytes() == into.tobytes()
        assert np.isfinite(got).all()

    totals = read_and_decode(files, threads=2, batch=3)
    assert totals["files"] == len(files)
    assert totals["file_bytes"] == sum(os.path.getsize(p) for _, p in files)
    assert totals["decoded_bytes"] == sum(4 * int(np.prod(a.chunks)) for a, _ in files)


@pytest.mark.parametrize("layout", ["lead", "init"])
def test_decode_plus_kernel_reduces_every_forecast_field_once(small_job, tmp_path, layout):
    """(f) reads and decodes the same files as (e) and runs the kernel on every forecast
    field exactly once: by hand, 2 inits × 3 leads × (2 levels of temperature + 1 surface
    field) = 18 fields, however the chunks hold them."""
    folder = benchmark.store_folder("64x32", "small", "lz4", layout)
    paths = benchmark.ensure_stores(tmp_path, "64x32", {MODEL: 2}, lambda _: None,
                                    folder=folder, codec="lz4", layout=layout)
    params = {"paths": {k: str(v) for k, v in paths.items()}, "days": 1, "models": [MODEL],
              "first_day": 2}
    files = benchmark.job_chunk_files(params["paths"], 1, [MODEL], first_day=2)
    floor = benchmark.child_floor(params)
    assert floor["kernel_fields"] == 2 * 3 * (2 + 1)
    assert floor["files"] == len(files)
    assert floor["file_bytes"] == sum(os.path.getsize(p) for _, p in files)
    assert floor["decoded_bytes"] == sum(4 * int(np.prod(a.chunks)) for a, _ in files)
    assert floor["wall"] > 0 and floor["cpu"] > 0


def test_zarr_v2_array_reads_edge_chunks_and_filters(tmp_path):
    """Edge chunks (stored at full size) and filters before the compressor, against NumPy."""
    import numcodecs

    values = np.arange(7 * 5, dtype="<f8").reshape(7, 5) * 0.5
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=values.shape, chunks=(3, 2),
                          dtype=values.dtype, zarr_format=2,
                          filters=[numcodecs.Delta(dtype="<f8")],
                          compressors=numcodecs.Blosc(cname="lz4", shuffle=1))
    z[...] = values
    arr = ZarrV2Array.open(tmp_path, "a.zarr")
    assert arr.chunks == (3, 2) and len(arr.filters) == 1
    assert arr.chunk_ids([np.array([6]), None]) == [(2, 0), (2, 1), (2, 2)]
    np.testing.assert_array_equal(arr.read(), values)
    edge = arr.decode(arr.chunk_file((2, 2)).read_bytes())
    assert edge.shape == (3, 2)
    np.testing.assert_array_equal(edge[:1, :1], values[6:, 4:])
    with pytest.raises(IndexError):
        arr.chunk_ids([np.array([7])])


@pytest.mark.parametrize("layout", ["lead", "init"])
def test_decode_plus_products_sums_every_forecast_field_as_numpy(small_job, tmp_path, layout,
                                                                 monkeypatch):
    """(g) reduces every forecast field of the job once, to the six area-weighted product sums
    against its fixed truth and climatology fields (here one of each, so that the pairing of
    fields does not matter): equal to the same sums in NumPy over the forecast store's fields
    of the job's inits (read with xarray)."""
    real = benchmark.floor_fields
    monkeypatch.setattr(benchmark, "floor_fields",
                        lambda nlon, nlat: tuple(x[:1] for x in real(nlon, nlat)))
    folder = benchmark.store_folder("64x32", "small", "lz4", layout)
    paths = benchmark.ensure_stores(tmp_path, "64x32", {MODEL: 2}, lambda _: None,
                                    folder=folder, codec="lz4", layout=layout)
    params = {"paths": {k: str(v) for k, v in paths.items()}, "days": 1, "models": [MODEL],
              "first_day": 2, "kernel": "products"}
    got = benchmark.child_floor(params)
    assert got["kernel_fields"] == 2 * 3 * (2 + 1)

    import xarray as xr

    fc = xr.open_zarr(paths[MODEL])
    lat = xr.open_zarr(paths["truth"])["latitude"].values
    fields = []
    for var in ("temperature", "2m_temperature"):
        da = fc[var].sel(time=benchmark.init_times(1, 2))
        assert da.sizes["time"] == 2 and da.dims[-2:] == ("longitude", "latitude")
        fields.append(da.values.astype(np.float64).reshape(-1, *da.shape[-2:]))
    f = np.concatenate(fields)
    assert len(f) == 18
    o, c = (x[0].astype(np.float64) for x in benchmark.floor_fields(*f.shape[1:]))
    w = np.cos(np.deg2rad(lat))[None, :]
    d, fa, oa = f - o, f - c, o - c
    want = [float((w * x).sum()) for x in (d * d, d, abs(d), fa * oa, fa * fa,
                                            np.broadcast_to(oa * oa, f.shape))]
    np.testing.assert_allclose(got["products"], want, rtol=1e-12)
