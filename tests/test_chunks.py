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


def test_only_the_readers_own_chunk_checks_pass_unwrapped(tmp_path, monkeypatch):
    """A chunk failing wxeval's own checks raises ChunkCheckError as it is; any other decode
    error becomes a DamagedArrayError naming the array, told apart by type (a codec's message
    that happens to read like ours is wrapped too)."""
    from wxeval import chunks

    path, _ = _store(tmp_path)
    (path / "x" / "1.1.0.0.0").write_bytes(b"not zstd at all")  # not decoded in place
    ds = xr.open_zarr(path, chunks=None)
    install(ds, str(path), None)

    def codec_error(blob, compressor, filters, dtype, shape, order, key, scratch=False):
        raise ValueError(f"chunk {key} is what a codec might say")

    monkeypatch.setattr(chunks, "_decode_chunk", codec_error)
    with pytest.raises(chunks.DamagedArrayError, match="cannot decode .ValueError: chunk "):
        _ = ds["x"].isel(a=3, b=4).values

    def own_check(blob, compressor, filters, dtype, shape, order, key, scratch=False):
        raise chunks.ChunkCheckError(f"chunk {key} decodes to 3 values, expected {shape}")

    monkeypatch.setattr(chunks, "_decode_chunk", own_check)
    with pytest.raises(chunks.ChunkCheckError, match="decodes to 3 values") as got:
        _ = ds["x"].isel(a=3, b=4).values
    assert not isinstance(got.value, chunks.DamagedArrayError)


# ---------------------------------------------------------------------------------------------
# Reads in reused memory (wxeval.chunks.reused_results): memory still used is never handed out


def test_reused_results_never_hand_out_memory_still_in_use():
    import weakref

    from wxeval import chunks

    try:
        with chunks.reused_results():
            a = chunks._result((4, 5), "f4")
            a[:] = 1.0
            view = a[1:]  # a view keeps the memory in use after `a` is gone
            del a
            b = chunks._result((4, 5), "f4")
            assert not np.shares_memory(b, view)
            b[:] = 2.0
            np.testing.assert_array_equal(view, 1.0)
            b_memory = weakref.ref(b.base)  # no reference of its own
            del b
            c = chunks._result((2, 5), "f4")  # smaller: fits b's free buffer
            assert c.base is b_memory()
            assert c.dtype == np.float32 and c.shape == (2, 5) and c.flags.c_contiguous
            d = chunks._result((3,), "f8")  # the other two are in use: new memory
            assert not np.shares_memory(d, c) and not np.shares_memory(d, view)
            strings = chunks._result((3,), object)  # objects: never in a byte buffer
            strings[:] = "x"
            assert strings.dtype == object and list(strings) == ["x"] * 3
        # outside the block: plain new arrays, never a kept buffer
        e = chunks._result((2, 5), "f4")
        assert all(not np.shares_memory(e, x) for x in (c, d, view))
    finally:
        chunks.release_results()


def test_reused_results_across_threads_and_release():
    import threading

    from wxeval import chunks

    got: dict = {}

    def worker(step):
        with chunks.reused_results():
            x = chunks._result((100,), "f4")
            if step == 0:
                got["first"] = x  # handed to another thread: still in use
            else:
                got["second"] = x

    try:
        t = threading.Thread(target=worker, args=(0,))
        t.start()
        t.join()
        # the same thread object is gone; a new thread has its own buffers, and a thread's
        # buffer held elsewhere is never reused by it either
        with chunks.reused_results():
            mine = chunks._result((100,), "f4")
            mine[:] = 7.0
            got["first"][:] = 3.0
            again = chunks._result((100,), "f4")
            assert not np.shares_memory(again, mine)
            assert not np.shares_memory(again, got["first"])
            np.testing.assert_array_equal(mine, 7.0)
        assert chunks._RESULTS.buffers
        chunks.release_results()
        assert chunks._RESULTS.buffers == [] and chunks._ALL_RESULTS == []
    finally:
        chunks.release_results()


def test_free_buffers_too_small_are_replaced_by_a_larger_one():
    from wxeval import chunks

    try:
        with chunks.reused_results():
            small = chunks._result((10,), "f8")
            del small
            large = chunks._result((1000,), "f8")
            assert len(chunks._RESULTS.buffers) == 1 and large.base is chunks._RESULTS.buffers[0]
    finally:
        chunks.release_results()


@pytest.mark.parametrize("variant", [{}, {"drop_chunk": True, "fill": -1.5}, {"order": "F"}])
def test_reads_in_reused_memory_equal_zarr(tmp_path, variant):
    """Every value of a read in reused memory is the store's: the memory held an earlier
    read's other values (or garbage), so a value not written (an absent chunk's fill, a
    partly selected chunk) would show."""
    from wxeval import chunks

    path, data = _store(tmp_path, **variant)
    ds = xr.open_zarr(path, chunks=None, mask_and_scale=False)
    holder = ds["x"].variable._data
    while not hasattr(holder, "_array"):
        holder = holder.array
    reader = ChunkReader(holder, str(path), None, "x")
    selections = [(slice(0, 2), slice(0, 3)), (slice(3, 5), slice(4, 7)),
                  (slice(1, 3), slice(2, 5)), (slice(0, 2), slice(0, 3))]
    try:
        with chunks.reused_results():
            for _ in range(2):
                for sel in selections:
                    full = (*sel, slice(None), slice(None), slice(None))
                    got = reader._getitem(full)
                    np.testing.assert_array_equal(got, data[full])
                    got[...] = 12345.0  # what a stale value would look like next time
                    del got
            assert len(chunks._RESULTS.buffers) == 1  # each read reused the first's memory
    finally:
        chunks.release_results()
