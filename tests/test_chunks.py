"""The direct chunk reader returns exactly what zarr-python returns, for every selection kind."""

from __future__ import annotations

import numcodecs
import numpy as np
import pytest
import xarray as xr
import zarr

from wxeval.chunks import ChunkReader, install


def _store(tmp_path, *, order="C", separator=".", filters=None, drop_chunk=False, fill=np.nan,
           dtype="f4"):
    path = tmp_path / f"s-{order}-{separator == '/'}-{bool(filters)}-{drop_chunk}-{dtype}.zarr"
    rng = np.random.default_rng(3)
    data = rng.normal(size=(5, 7, 3, 10, 6)).astype(dtype)
    data[1, 2, 0, 0, 0] = np.nan
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    arr = root.create_array(
        "x", shape=data.shape, chunks=(2, 3, 3, 10, 6), dtype=dtype, order=order,
        compressors=numcodecs.Zstd(level=1), filters=filters, fill_value=fill,
        chunk_key_encoding={"name": "v2", "separator": separator},
        attributes={"_ARRAY_DIMENSIONS": list("abcde")},
    )
    arr[...] = data
    for name, n in zip("abcde", data.shape, strict=True):
        coord = root.create_array(name, shape=(n,), dtype="i8", attributes={
            "_ARRAY_DIMENSIONS": [name]})
        coord[...] = np.arange(n)
    zarr.consolidate_metadata(str(path))
    if drop_chunk:
        key = path / "x" / ("0.0.0.0.0" if separator == "." else "0/0/0/0/0")
        key.unlink()
        data[0:2, 0:3] = fill
    return path, data


SELECTIONS = [
    (slice(None),) * 5,
    (slice(1, 4), 2, slice(None), slice(None), slice(None)),
    (np.array([0, 3, 4]), np.array([6, 1]), slice(0, 2), slice(2, 9, 3), slice(None)),
    (4, 6, 2, 9, 5),
    (np.array([4, 0]), slice(None, None, -2), 1, slice(None), np.array([5, 0, 2])),
]


@pytest.mark.parametrize("variant", [
    {}, {"order": "F"}, {"separator": "/"}, {"filters": [numcodecs.Shuffle(elementsize=4)]},
    {"drop_chunk": True}, {"drop_chunk": True, "fill": -1.5}, {"dtype": ">f4"}, {"dtype": "f8"},
])
def test_reader_equals_zarr(tmp_path, variant):
    path, data = _store(tmp_path, **variant)
    za = zarr.open_group(str(path), mode="r")["x"]
    ds = xr.open_zarr(path, chunks=None, mask_and_scale=False)
    holder = ds["x"].variable._data
    while not hasattr(holder, "_array"):
        holder = holder.array
    reader = ChunkReader(holder, str(path), None, "x")
    for sel in SELECTIONS:
        expected = za.get_orthogonal_selection(tuple(
            s if not isinstance(s, slice) or s.step is None or s.step > 0
            else np.arange(*s.indices(n)) for s, n in zip(sel, data.shape, strict=True)))
        got = reader._getitem(sel)
        np.testing.assert_array_equal(got, expected)
        # and against the NumPy array the store was written from
        ref = data
        for axis, s in reversed(list(enumerate(sel))):
            idx = s if isinstance(s, slice | int) else np.asarray(s)
            ref = np.take(ref, np.arange(data.shape[axis])[idx], axis=axis)
        np.testing.assert_array_equal(got, ref)


def test_install_keeps_xarray_semantics(tmp_path):
    path, data = _store(tmp_path, drop_chunk=True)
    plain = xr.open_zarr(path, chunks=None)
    fast = xr.open_zarr(path, chunks=None)
    assert install(fast, str(path), None) == 1
    a = plain["x"].isel(a=[0, 4], b=slice(None, None, -1), d=3).values
    b = fast["x"].isel(a=[0, 4], b=slice(None, None, -1), d=3).values
    np.testing.assert_array_equal(a, b)
    # pointwise (vectorized) selections are decomposed by xarray into outer reads
    sel = {"a": xr.DataArray([0, 2, 4], dims="p"), "b": xr.DataArray([1, 1, 6], dims="p")}
    np.testing.assert_array_equal(plain["x"].isel(sel).values, fast["x"].isel(sel).values)


def test_corrupted_chunk_raises(tmp_path):
    path, _ = _store(tmp_path)
    (path / "x" / "1.1.0.0.0").write_bytes(b"not zstd at all")
    ds = xr.open_zarr(path, chunks=None)
    install(ds, str(path), None)
    with pytest.raises(Exception, match="(?i)zstd|decompress|error|size"):
        _ = ds["x"].isel(a=3, b=4).values
