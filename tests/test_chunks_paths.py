"""The chunk reader's read paths (issue 16) against plain zarr-python reads of small stores.

Local stores are read with plain file reads, other stores (``memory://``, ``gs://`` on the
GCS emulator) with batched ``fs.cat``; a wholly selected chunk whose block of the output is
contiguous is decoded straight into the output, anything else into a scratch buffer and
copied. Every path must return exactly what zarr-python returns, and the NumPy array the store
was written from: C and F order, edge chunks, absent chunks (fill value), filters, codecs with
and without a stated decoded size, selections partial within a chunk.
"""

from __future__ import annotations

import numcodecs
import numpy as np
import pytest
import xarray as xr
import zarr

from wxeval import chunks
from wxeval.chunks import ChunkReader

SHAPE = (5, 7, 3, 10, 6)  # chunks (2, 3, 3, 4, 6): edge chunks on axes 0, 1 and 3
CHUNKS = (2, 3, 3, 4, 6)

CODECS = {
    "blosc-lz4": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
    "lz4": numcodecs.LZ4(),
    "zstd": numcodecs.Zstd(level=1),
    "zlib": numcodecs.Zlib(level=1),  # no decoded size in its header: the scratch path
    "none": None,
}


def write_store(path, *, order="C", codec="blosc-lz4", filters=None, dtype="f4",
                fill=np.nan, drop=(), shape=SHAPE, chunk_shape=CHUNKS, with_nan=True):
    """A Zarr v2 store with array ``x`` (dims a..e) and integer coordinates; the chunk keys
    in ``drop`` are deleted. Returns (path, the NumPy array the reader must return)."""
    rng = np.random.default_rng(11)
    data = (rng.normal(size=shape) * 100).astype(dtype)
    if data.dtype.kind == "f" and with_nan:
        data.flat[3] = np.nan
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    compressor = CODECS[codec]
    arr = root.create_array(
        "x", shape=shape, chunks=chunk_shape, dtype=dtype, order=order,
        compressors=compressor if compressor is not None else None, filters=filters,
        fill_value=fill, attributes={"_ARRAY_DIMENSIONS": list("abcde")},
    )
    arr[...] = data
    for name, n in zip("abcde", shape, strict=True):
        coord = root.create_array(name, shape=(n,), dtype="i8",
                                  attributes={"_ARRAY_DIMENSIONS": [name]})
        coord[...] = np.arange(n)
    zarr.consolidate_metadata(str(path))
    expected = data.copy()
    for key in drop:
        (path / "x" / key).unlink()
        ids = [int(i) for i in key.split(".")]
        block = tuple(slice(i * c, (i + 1) * c) for i, c in zip(ids, chunk_shape, strict=True))
        expected[block] = fill
    return path, expected


def reader_for(path, url=None) -> ChunkReader:
    ds = xr.open_zarr(path, chunks=None, mask_and_scale=False)
    holder = ds["x"].variable._data
    while not hasattr(holder, "_array"):
        holder = holder.array
    return ChunkReader(holder, url or str(path), None, "x")


def numpy_reference(data: np.ndarray, sel: tuple) -> np.ndarray:
    """``data`` indexed orthogonally, axis by axis, with plain NumPy."""
    ref = data
    for axis, s in reversed(list(enumerate(sel))):
        idx = s if isinstance(s, slice | int) else np.asarray(s)
        ref = np.take(ref, np.arange(data.shape[axis])[idx], axis=axis)
    return ref


def zarr_reference(path, sel: tuple) -> np.ndarray:
    za = zarr.open_group(str(path), mode="r")["x"]
    return za.get_orthogonal_selection(tuple(
        np.arange(*s.indices(n)) if isinstance(s, slice) and (s.step or 1) < 0 else s
        for s, n in zip(sel, za.shape, strict=True)))


SELECTIONS = {
    "all": (slice(None),) * 5,
    # whole chunks on every axis but the first: direct decodes into the output
    "whole-chunks": (slice(0, 4), slice(0, 6), slice(None), slice(0, 8), slice(None)),
    "partial-in-chunk": (slice(1, 4), 2, slice(1, 3), slice(3, 9), slice(2, 5)),
    "edge-chunks": (slice(4, 5), slice(6, 7), slice(None), slice(8, 10), slice(None)),
    "positions": (np.array([0, 3, 4]), np.array([6, 1]), slice(0, 2), slice(2, 9, 3),
                  slice(None)),
    "unsorted-repeated": (np.array([4, 0, 0]), slice(None, None, -2), 1, slice(None),
                          np.array([5, 0, 2])),
    "scalar": (4, 6, 2, 9, 5),
    "negative-int": (-1, -3, 0, slice(None), -6),
}


def check_all_selections(reader: ChunkReader, path, expected: np.ndarray) -> None:
    for name, sel in SELECTIONS.items():
        got = reader._getitem(sel)
        want = numpy_reference(expected, sel)
        assert got.shape == want.shape, name
        assert got.flags.c_contiguous, name
        np.testing.assert_array_equal(got, want, err_msg=name)
        np.testing.assert_array_equal(got, zarr_reference(path, sel), err_msg=name)


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("order", ["C", "F"])
def test_local_reads_equal_zarr(tmp_path, codec, order):
    path, expected = write_store(tmp_path / "s.zarr", order=order, codec=codec,
                                 drop=("0.0.0.0.0", "2.2.0.2.0"))
    check_all_selections(reader_for(path), path, expected)


@pytest.mark.parametrize("variant", [
    {"filters": [numcodecs.Shuffle(elementsize=4)]},
    {"filters": [numcodecs.Delta(dtype="i4")], "dtype": "i4", "fill": 0},
    {"filters": [numcodecs.Shuffle(elementsize=4)], "order": "F"},
    {"dtype": ">f4"},
    {"dtype": "i2", "fill": -7},
    {"fill": -1.5, "drop": ("1.1.0.1.0",)},
])
def test_local_reads_with_filters_dtypes_and_fill_values(tmp_path, variant):
    path, expected = write_store(tmp_path / "s.zarr", **variant)
    check_all_selections(reader_for(path), path, expected)


def test_absent_array_chunks_read_as_fill_everywhere(tmp_path):
    path, expected = write_store(tmp_path / "s.zarr", fill=2.5)
    for f in (path / "x").glob("*.*"):
        f.unlink()
    got = reader_for(path)._getitem((slice(None),) * 5)
    np.testing.assert_array_equal(got, np.full(SHAPE, 2.5, dtype="f4"))


def _spy_scratch_decodes(monkeypatch) -> list:
    """The keys of chunks decoded into a temporary (chunks._decode_chunk), as they happen."""
    calls: list = []
    real = chunks._decode_chunk
    monkeypatch.setattr(chunks, "_decode_chunk",
                        lambda *a, **k: calls.append(a[6]) or real(*a, **k))
    return calls


def test_whole_contiguous_chunks_are_decoded_into_the_output(tmp_path, monkeypatch):
    """No decode into a temporary (and copy) where the output block is contiguous: chunks of
    one init × one lead × whole trailing axes, selected whole (WeatherBench 2's layout); a
    chunk selected in part, or whose block of the output is strided, goes through scratch."""
    shape, chunk_shape = (3, 4, 3, 10, 6), (1, 1, 3, 10, 6)
    path, expected = write_store(tmp_path / "s.zarr", shape=shape, chunk_shape=chunk_shape)
    calls = _spy_scratch_decodes(monkeypatch)
    reader = reader_for(path)
    got = reader._getitem((slice(None), slice(1, 3), slice(None), slice(None), slice(None)))
    np.testing.assert_array_equal(got, expected[:, 1:3])
    assert calls == []  # 3 × 2 chunks, each decoded straight into its block
    got = reader._getitem((slice(0, 2), 0, np.array([0, 2]), slice(None), slice(None)))
    np.testing.assert_array_equal(got, expected[0:2, 0][:, [0, 2]])
    assert len(calls) == 2  # levels 0 and 2 of 3: decoded into scratch, then copied
    calls.clear()
    got = reader._getitem((slice(None), slice(None), slice(None), slice(2, 10), slice(None)))
    np.testing.assert_array_equal(got, expected[:, :, :, 2:])
    assert len(calls) == 12


def test_decoded_size_from_headers():
    """The size a header states equals the length the codec actually decodes, at sizes that
    use each of Zstd's content-size field widths (1, 2, 4 bytes)."""
    for n in (1, 3, 63, 64, 65, 300, 20_000, 70_000):
        values = np.arange(n, dtype="f4")
        for name in ("blosc-lz4", "lz4", "zstd"):
            codec = CODECS[name]
            blob = codec.encode(values)
            assert chunks._decoded_nbytes(codec, blob) == len(bytes(codec.decode(blob))), (name, n)
    assert chunks._decoded_nbytes(CODECS["zlib"], CODECS["zlib"].encode(b"abc")) is None
    assert chunks._decoded_nbytes(None, b"abcd") == 4


def test_chunk_of_the_wrong_size_is_an_error_naming_it(tmp_path):
    """A chunk that decodes cleanly to the wrong size (its header states the wrong size) is
    refused as before, never decoded into a block of the output it does not fill."""
    path, _ = write_store(tmp_path / "s.zarr")
    short = CODECS["blosc-lz4"].encode(np.zeros(np.prod(CHUNKS) - 1, dtype="f4"))
    (path / "x" / "1.1.0.1.0").write_bytes(bytes(short))
    reader = reader_for(path)
    with pytest.raises(ValueError, match=r"1\.1\.0\.1\.0 decodes to 431 values, expected"):
        reader._getitem((slice(2, 4), slice(3, 6), slice(None), slice(4, 8), slice(None)))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
@pytest.mark.parametrize("codec", ["blosc-lz4", "lz4", "zstd"])
def test_damaged_chunk_raises(tmp_path, damage, codec):
    path, _ = write_store(tmp_path / "s.zarr", codec=codec)
    chunk = path / "x" / "1.1.0.1.0"
    blob = chunk.read_bytes()
    chunk.write_bytes(b"not a chunk at all" * 3 if damage == "garbage" else blob[: len(blob) // 2])
    reader = reader_for(path)
    with pytest.raises(ValueError, match=r"chunk \S*/s\.zarr/x/1\.1\.0\.1\.0[ :]"):
        reader._getitem((slice(2, 4), slice(3, 6), slice(None), slice(4, 8), slice(None)))
    # the undamaged chunks still read
    np.testing.assert_array_equal(
        reader._getitem((slice(0, 2), slice(0, 3), slice(None), slice(None), slice(None))),
        zarr_reference(path, (slice(0, 2), slice(0, 3), slice(None), slice(None), slice(None))))


def test_local_reads_do_not_go_through_fsspec_cat(tmp_path, monkeypatch):
    from fsspec.implementations.local import LocalFileSystem

    path, expected = write_store(tmp_path / "s.zarr", drop=("0.0.0.0.0",))

    def refuse(*args, **kwargs):
        raise AssertionError("local chunk files are read without fsspec")

    monkeypatch.setattr(LocalFileSystem, "cat", refuse)
    reader = reader_for(path, url=f"file://{path}")
    np.testing.assert_array_equal(reader._getitem((slice(None),) * 5), expected)


@pytest.mark.parametrize("order", ["C", "F"])
def test_memory_store_reads_in_batches_equal_zarr(tmp_path, monkeypatch, order):
    """A non-local store (fsspec memory://): chunk objects fetched with fs.cat in batches
    (FETCH_BYTES made small: several batches), same values as zarr-python."""
    import fsspec

    path, expected = write_store(tmp_path / "s.zarr", order=order, drop=("2.2.0.2.0",))
    mem = fsspec.filesystem("memory")
    prefix = f"/io-{tmp_path.name}/s.zarr"
    for f in path.rglob("*"):
        if f.is_file():
            mem.pipe(f"{prefix}/{f.relative_to(path).as_posix()}", f.read_bytes())
    batches = []
    real_cat = type(mem).cat

    def counting_cat(self, keys, **kw):
        batches.append(len(keys))
        return real_cat(self, keys, **kw)

    monkeypatch.setattr(type(mem), "cat", counting_cat)
    monkeypatch.setattr(chunks, "FETCH_BYTES", 4 * int(np.prod(CHUNKS)) * 4)
    try:
        reader = reader_for(path, url=f"memory://{prefix}")
        check_all_selections(reader, path, expected)
    finally:
        mem.rm(prefix, recursive=True)
    assert batches and max(batches) == 4


def test_gcs_store_reads_equal_zarr(tmp_path, gcs, upload_dir):
    """The same reads from gs:// (the GCS emulator), absent and edge chunks included."""
    from wxeval.loaders import storage_options_for

    path, expected = write_store(tmp_path / "s.zarr", drop=("0.0.0.0.0",))
    assert not any(f.read_bytes().endswith(b"\r") for f in (path / "x").glob("*.*"))  # README §7
    url = upload_dir(path, "wxeval-test", f"chunks-{tmp_path.name}/s.zarr")
    ds = xr.open_zarr(path, chunks=None, mask_and_scale=False)
    holder = ds["x"].variable._data
    while not hasattr(holder, "_array"):
        holder = holder.array
    reader = ChunkReader(holder, url, storage_options_for(url, None), "x")
    assert reader.fs is not None and not reader._local
    check_all_selections(reader, path, expected)


@pytest.mark.parametrize("lead_chunk", [1, 5])
def test_score_reads_each_forecast_chunk_once(tmp_path, monkeypatch, lead_chunk):
    """One chunk per init × lead, or per init with all leads (``lead_chunk=5``, even with a
    read budget smaller than one chunk): every forecast chunk file is read (and decoded) once
    in the job, and the scores equal the hand-written NumPy reference."""
    from builders import make_case, ref_area_weights, ref_metrics, write_all, write_config
    from builders import write_forecast as write_case_forecast

    from wxeval import evaluate
    from wxeval.api import score

    case = make_case(n_inits=4, variables=("temperature",), leads_h=(0, 6, 12, 24, 48))
    write_all(case, tmp_path)
    fc = tmp_path / f"by-{lead_chunk}.zarr"
    write_case_forecast(case, fc, lead_chunk=lead_chunk)
    cfg = write_config(tmp_path / "cfg.yaml", case, regions=["global"],
                       models={"model": {"path": str(fc)}})
    reads = []
    real = chunks._read_file
    monkeypatch.setattr(chunks, "_read_file", lambda p: reads.append(p) or real(p))
    monkeypatch.setattr(evaluate, "READ_BYTES", 1)
    table = score(cfg, ["model"], None, scheduler="synchronous").tables["model"]
    forecast_reads = [p for p in reads if p.startswith(f"{fc}/temperature/")]
    assert len(forecast_reads) == len(set(forecast_reads)) == 4 * (5 // lead_chunk)
    w = ref_area_weights(case.latitude)[:, None] * np.ones(len(case.longitude))
    for level_index in (0, 1):
        got = table["temperature"].sel(region="global", level=case.levels[level_index])
        for li in range(len(case.lead_times)):
            for metric, value in ref_metrics(case, "temperature", w, level_index, li).items():
                assert float(got.sel(metric=metric).isel(lead_time=li)) == pytest.approx(
                    value, rel=1e-10), (metric, li)


@pytest.mark.parametrize("axes", [(1, 0, 2, 3, 4), (0, 1, 2, 4, 3), (4, 3, 2, 1, 0)])
def test_memory_order_changes_the_layout_not_the_values(tmp_path, monkeypatch, axes):
    """Inside chunks.memory_order(axes) a read is allocated in that axis order (its transpose
    by ``axes`` is C-contiguous), holds the same values, and a chunk whose block is contiguous
    in that order is still decoded straight into it."""
    shape, chunk_shape = (3, 4, 3, 10, 6), (1, 1, 3, 10, 6)
    path, expected = write_store(tmp_path / "s.zarr", shape=shape, chunk_shape=chunk_shape)
    calls = _spy_scratch_decodes(monkeypatch)
    reader = reader_for(path)
    sel = (slice(None), slice(1, 4), slice(None), slice(None), slice(None))
    with chunks.memory_order(axes):
        got = reader._getitem(sel)
        scalar = reader._getitem((1, 2, 0, 3, 4))  # integer indexes: the order is ignored
    np.testing.assert_array_equal(got, expected[:, 1:4])
    assert got.transpose(axes).flags.c_contiguous
    assert float(scalar) == expected[1, 2, 0, 3, 4]
    direct = axes == (1, 0, 2, 3, 4)  # lead-major: each chunk's block is still contiguous
    assert len(calls) == (1 if direct else 10)  # the scalar read (and the 9 chunks)
    assert reader._getitem(sel).flags.c_contiguous  # outside the block: C order again


def test_a_position_past_the_end_is_an_error_not_a_wrapped_read(tmp_path):
    """On an axis of length n, position n (or −n − 1) is refused, not read as row 0 (or
    n − 1); −1 still reads the last row."""
    path, expected = write_store(tmp_path / "s.zarr")
    n = expected.shape[0]
    rest = (slice(None),) * (expected.ndim - 1)
    reader = reader_for(path)
    np.testing.assert_array_equal(reader._getitem((np.array([n - 1, -1]), *rest)),
                                  expected[[n - 1, n - 1]])
    for bad in (np.array([n]), np.array([0, -n - 1]), n):
        with pytest.raises(IndexError, match="out of range"):
            reader._getitem((bad, *rest))


@pytest.mark.parametrize("skipna", [False, True])
def test_chunks_per_init_read_init_by_init_match_numpy(tmp_path, monkeypatch, skipna):
    """One chunk per init holding every lead, read a few inits at a time (each group's
    (init, lead, level) fields reduced in one call, ``evaluate._init_major``; here one init
    per group): each forecast chunk is read once and every metric equals NumPy per init and
    lead, with the truth of each field's own valid time; with ``skipna`` a NaN of the forecast
    (init 2, lead 24 h, 850 hPa, one point) leaves that field's sums and weight."""
    from builders import make_case, ref_area_weights, write_all, write_config
    from builders import write_forecast as write_case_forecast

    from wxeval import evaluate
    from wxeval.api import score

    case = make_case(n_inits=5, variables=("temperature",), leads_h=(0, 6, 12, 24, 48))
    nan_at = (2, 3, 1, 4, 7)  # init, lead, level, lat, lon
    if skipna:
        case.forecast["temperature"][nan_at] = np.nan
    write_all(case, tmp_path)
    fc = tmp_path / "by-init.zarr"
    write_case_forecast(case, fc, lead_chunk=5)
    cfg = write_config(tmp_path / "cfg.yaml", case, regions=["global"], skipna=skipna,
                       models={"model": {"path": str(fc)}})
    reads, groups = [], []
    real_read, real_plan = chunks._read_file, evaluate._init_major
    monkeypatch.setattr(chunks, "_read_file", lambda p: reads.append(p) or real_read(p))

    def plan(*args):
        got = real_plan(*args)
        groups.append(None if got is None else [g.tolist() for g in got[-1]])
        return got

    monkeypatch.setattr(evaluate, "_init_major", plan)
    monkeypatch.setattr(evaluate, "INIT_MAJOR_BYTES", 1)
    table = score(cfg, ["model"], None, scheduler="synchronous").tables["model"]
    # the path was taken in every task (init blocks), an init per group
    assert all(g is not None for g in groups)
    assert sorted(len(x) for g in groups for x in g) == [1] * 5
    forecast_reads = [p for p in reads if p.startswith(f"{fc}/temperature/")]
    assert len(forecast_reads) == len(set(forecast_reads)) == 5
    w2d = ref_area_weights(case.latitude)[:, None] * np.ones(len(case.longitude))
    for lev in (0, 1):
        got = table["temperature"].sel(region="global", level=case.levels[lev])
        for li, lead in enumerate(case.lead_times):
            se, err, ae, fo, ff, oo = [], [], [], [], [], []
            for i, t in enumerate(case.init_times):
                f = case.forecast["temperature"][i, li, lev].astype(np.float64)
                o = case.truth_at("temperature", t + lead)[lev].astype(np.float64)
                c = case.clim_at("temperature", t + lead)[lev].astype(np.float64)
                w = w2d.copy()
                if skipna and (i, li, lev) == nan_at[:3]:
                    w[nan_at[3:]] = 0.0
                    f = np.nan_to_num(f)
                se.append(np.sum(w * (f - o) ** 2) / w.sum())
                err.append(np.sum(w * (f - o)) / w.sum())
                ae.append(np.sum(w * np.abs(f - o)) / w.sum())
                fo.append(np.sum(w * (f - c) * (o - c)))
                ff.append(np.sum(w * (f - c) ** 2))
                oo.append(np.sum(w * (o - c) ** 2))
            acc = np.mean(np.array(fo) / np.sqrt(np.array(ff) * np.array(oo)))
            expected = {"rmse": np.sqrt(np.mean(se)), "bias": np.mean(err),
                        "mae": np.mean(ae), "acc": acc}
            for metric, value in expected.items():
                assert float(got.sel(metric=metric).isel(lead_time=li)) == pytest.approx(
                    value, rel=1e-10), (metric, li, lev)
