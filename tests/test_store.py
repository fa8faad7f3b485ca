"""The statistics store's parts: plain Zarr v2 groups other tools can read, committed by marker."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from wxeval.metrics import STATISTICS
from wxeval.store import LIST_ATTEMPTS, MARKER, StatisticsStore


def _stats(n_inits=3, n_leads=2, levels=(500, 850), seed=0):
    rng = np.random.default_rng(seed)
    shape = (len(STATISTICS), n_inits, n_leads, 2, len(levels))
    values = rng.normal(size=shape)
    values[1, 0, 1, 0, 0] = np.nan
    return xr.DataArray(
        values,
        dims=("statistic", "init_time", "lead_time", "region", "level"),
        coords={
            "statistic": list(STATISTICS),
            "init_time": pd.date_range("2020-01-01", periods=n_inits, freq="12h").values,
            "lead_time": (np.arange(n_leads) * 6).astype("timedelta64[h]").astype("m8[ns]"),
            "region": ["global", "tropics"],
            "level": list(levels),
        },
    )


@pytest.mark.filterwarnings("ignore:Object at .wxeval-complete:UserWarning")
def test_part_is_a_zarr_v2_group_readable_by_zarr_and_xarray(tmp_path):
    store = StatisticsStore(str(tmp_path / "stats"))
    da = _stats()
    path = store.write_part("m", "temperature", "key1", 3, da, ["kg", "kt"])
    arr = zarr.open_array(path + "/stats", mode="r")
    np.testing.assert_array_equal(arr[...], da.values)  # NaN included
    assert arr.metadata.zarr_format == 2
    ds = xr.open_zarr(path, consolidated=False)
    assert ds["stats"].dims == da.dims
    np.testing.assert_array_equal(ds["stats"].values, da.values)
    index = json.loads((tmp_path / "stats" / "m" / "temperature" / "key1" / path.rsplit("/", 1)[-1]
                        / MARKER).read_text())
    assert index["level"] == [500, 850] and index["region_keys"] == ["kg", "kt"]
    assert ds["stats"].attrs["index"] == index
    assert ds["stats"].attrs["block"] == 3


def test_load_assembles_parts_by_coordinates(tmp_path):
    store = StatisticsStore(str(tmp_path / "stats"))
    a, b = _stats(seed=1), _stats(seed=2)
    b = b.assign_coords(init_time=b.init_time + np.timedelta64(3, "D"))
    store.write_part("m", "t", "k", 0, a, ["kg", "kt"])
    store.write_part("m", "t", "k", 1, b.isel(level=[1, 0]), ["kg", "kt"])  # other level order
    inits = np.concatenate([b.init_time.values[::-1], a.init_time.values[:1]])
    got = StatisticsStore(str(tmp_path / "stats")).load(
        "m", "t", "k", inits, a.lead_time.values, (850, 500), ["tropics", "global"], ["kt", "kg"]
    )
    assert got.dims == ("statistic", "init_time", "lead_time", "region", "level")
    want = np.concatenate([b.values[:, ::-1], a.values[:, :1]], axis=1)[:, :, :, ::-1, ::-1]
    np.testing.assert_array_equal(got.values, want)


def test_parts_of_an_earlier_compressor_are_still_read(tmp_path, monkeypatch):
    """Parts carry their codec: a store written with zstd (wxeval before LZ4) mixes with new
    parts."""
    import numcodecs

    from wxeval import store as store_mod

    store = StatisticsStore(str(tmp_path / "stats"))
    a, b = _stats(seed=1), _stats(seed=2)
    b = b.assign_coords(init_time=b.init_time + np.timedelta64(3, "D"))
    with monkeypatch.context() as m:
        m.setattr(store_mod, "PART_COMPRESSOR", numcodecs.Blosc("zstd", 3, numcodecs.Blosc.SHUFFLE))
        old = store.write_part("m", "t", "k", 0, a, ["kg", "kt"])
    new = store.write_part("m", "t", "k", 1, b, ["kg", "kt"])
    codecs = [json.loads(open(f"{p}/stats/.zarray").read())["compressor"]["cname"]
              for p in (old, new)]
    assert codecs == ["zstd", "lz4"]
    inits = np.concatenate([a.init_time.values, b.init_time.values])
    got = StatisticsStore(str(tmp_path / "stats")).load(
        "m", "t", "k", inits, a.lead_time.values, (500, 850), ["global", "tropics"], ["kg", "kt"]
    )
    np.testing.assert_array_equal(got.values, np.concatenate([a.values, b.values], axis=1))


def test_damaged_marker_makes_the_part_invisible(tmp_path):
    store = StatisticsStore(str(tmp_path / "stats"))
    path = store.write_part("m", "t", "k", 0, _stats(), ["kg", "kt"])
    (tmp_path / "stats" / "m" / "t" / "k" / path.rsplit("/", 1)[-1] / MARKER).write_text("{oops")
    fresh = StatisticsStore(str(tmp_path / "stats"))
    assert fresh.parts("m", "t", "k") == []
    have = fresh.coverage("m", "t", "k", _stats().init_time.values, _stats().lead_time.values,
                          (500, 850), ["kg", "kt"])
    assert not have.any()


def test_only_float_arrays_are_written():
    from wxeval.chunks import single_chunk_group
    from wxeval.store import PART_COMPRESSOR

    with pytest.raises(TypeError, match="floating"):
        single_chunk_group("x", np.arange(3), {}, PART_COMPRESSOR)


def _daily_parts(store, n_parts, seed=0):
    """n_parts parts of one init each (consecutive days), like nightly runs; returns all
    values as one (statistic, init, lead, region, level) array and the inits."""
    parts = []
    for i in range(n_parts):
        da = _stats(n_inits=1, seed=seed + i)
        da = da.assign_coords(init_time=da.init_time + np.timedelta64(i, "D"))
        store.write_part("m", "t", "k", i, da, ["kg", "kt"])
        parts.append(da)
    full = xr.concat(parts, dim="init_time")
    return full.values, full.init_time.values


def test_compaction_merges_parts_and_keeps_every_number(tmp_path):
    root = str(tmp_path / "stats")
    store = StatisticsStore(root)
    want, inits = _daily_parts(store, 6)
    other = _stats(n_inits=2, n_leads=3, seed=99)  # another lead layout: merged separately
    other = other.assign_coords(init_time=other.init_time + np.timedelta64(30, "D"))
    store.write_part("m", "t", "k", 50, other, ["kg", "kt"])
    leads = _stats().lead_time.values
    assert len(store.parts("m", "t", "k")) == 7
    assert store.compact("m", "t", "k", min_parts=7) == 0  # no group is that large
    assert store.compact("m", "t", "k", min_parts=4) == 6
    fresh = StatisticsStore(root)
    names = [p.rsplit("/", 1)[-1] for p in fresh.parts("m", "t", "k")]
    assert len(names) == 2 and sum(n.startswith("c") for n in names) == 1
    got = fresh.load("m", "t", "k", inits, leads, (500, 850), ["global", "tropics"], ["kg", "kt"])
    np.testing.assert_array_equal(got.values, want)
    got = fresh.load("m", "t", "k", other.init_time.values, other.lead_time.values, (500, 850),
                     ["global", "tropics"], ["kg", "kt"])
    np.testing.assert_array_equal(got.values, other.values)
    assert fresh.coverage("m", "t", "k", inits, leads, (500, 850), ["kg", "kt"]).all()
    leftovers = [p for p in (tmp_path / "stats" / "m" / "t" / "k").iterdir()
                 if p.name.startswith("b+00000")]
    assert leftovers == []  # merged-away parts are deleted


@pytest.mark.parametrize("stale", [1, 3, LIST_ATTEMPTS])
def test_reader_with_stale_listings_reads_the_merged_part(tmp_path, stale):
    """Another job merged the parts this reader listed: it lists again (up to LIST_ATTEMPTS
    times, while the deletions go on) and reads the merged part; then it gives up loudly."""
    root = str(tmp_path / "stats")
    want, inits = _daily_parts(StatisticsStore(root), 5)
    reader = StatisticsStore(root)
    assert len(reader.parts("m", "t", "k")) == 5  # listed before another job compacts
    assert StatisticsStore(root).compact("m", "t", "k", min_parts=2) == 5
    real_parts = reader.parts
    calls = []

    def stale_then_fresh(*args):
        calls.append(1)
        if len(calls) <= stale:  # these listings still name the deleted parts
            return sorted(p for p in reader._indexes if "/b" in p)
        return real_parts(*args)

    reader.parts = stale_then_fresh
    args = ("m", "t", "k", inits, _stats().lead_time.values, (500, 850), ["global", "tropics"],
            ["kg", "kt"])
    if stale == LIST_ATTEMPTS:
        with pytest.raises(FileNotFoundError, match="no Zarr v2 array metadata"):
            reader.load(*args)
        return
    got = reader.load(*args)
    assert len(calls) == stale + 1
    np.testing.assert_array_equal(got.values, want)


def test_overlapping_parts_later_one_wins_after_compaction(tmp_path):
    root = str(tmp_path / "stats")
    store = StatisticsStore(root)
    a = _stats(seed=1)
    b = _stats(seed=2)  # same inits, different numbers (a store rewritten in place)
    store.write_part("m", "t", "k", 0, a, ["kg", "kt"])
    store.write_part("m", "t", "k", 1, b, ["kg", "kt"])
    args = ("m", "t", "k", a.init_time.values, a.lead_time.values, (500, 850),
            ["global", "tropics"], ["kg", "kt"])
    before = StatisticsStore(root).load(*args).values
    np.testing.assert_array_equal(before, b.values)
    StatisticsStore(root).compact("m", "t", "k", min_parts=2)
    np.testing.assert_array_equal(StatisticsStore(root).load(*args).values, b.values)


def test_merged_parts_are_capped_and_never_merged_again(tmp_path, monkeypatch):
    from wxeval import store as store_mod

    per_part = store_mod._part_bytes({"init_time": [0], "lead_time": [0, 1], "level": [1, 2],
                                      "region_keys": ["a", "b"]})
    monkeypatch.setattr(store_mod, "MERGED_PART_BYTES", 3 * per_part)
    root = str(tmp_path / "stats")
    want, inits = _daily_parts(StatisticsStore(root), 7)
    assert StatisticsStore(root).compact("m", "t", "k", min_parts=2) == 6
    names = sorted(p.rsplit("/", 1)[-1][:1] for p in StatisticsStore(root).parts("m", "t", "k"))
    assert names == ["b", "c", "c"]  # days 1-3 and 4-6 merged (the cap), day 7 left alone
    # parts of 3 days are "large" (> half the cap): a new compaction leaves them alone
    assert StatisticsStore(root).compact("m", "t", "k", min_parts=2) == 0
    got = StatisticsStore(root).load("m", "t", "k", inits, _stats().lead_time.values, (500, 850),
                                     ["global", "tropics"], ["kg", "kt"])
    np.testing.assert_array_equal(got.values, want)


def test_parts_a_failed_merge_could_not_delete_are_not_merged_twice(tmp_path, monkeypatch):
    root = str(tmp_path / "stats")
    want, inits = _daily_parts(StatisticsStore(root), 4)
    failing = StatisticsStore(root)

    def no_permission(path):
        raise PermissionError(f"403: cannot delete {path}")

    monkeypatch.setattr(failing, "_remove_part", no_permission)
    with pytest.raises(PermissionError):
        failing.compact("m", "t", "k", min_parts=2)
    assert len(StatisticsStore(root).parts("m", "t", "k")) == 5  # 4 sources + the merged part
    # Next run: the four sources are covered by the merged part: deleted, not merged again.
    assert StatisticsStore(root).compact("m", "t", "k", min_parts=2) == 4
    names = [p.rsplit("/", 1)[-1] for p in StatisticsStore(root).parts("m", "t", "k")]
    assert len(names) == 1 and names[0].startswith("c")
    got = StatisticsStore(root).load("m", "t", "k", inits, _stats().lead_time.values, (500, 850),
                                     ["global", "tropics"], ["kg", "kt"])
    np.testing.assert_array_equal(got.values, want)


def test_remove_tmp_clears_unmarked_parts_only(tmp_path):
    from wxeval.store import remove_tmp

    root = tmp_path / "stats"
    store = StatisticsStore(str(root))
    kept = store.write_part("x.zarr", "t", "k", 0, _stats(), ["kg", "kt"])  # model "x.zarr"
    cut_short = root / "x.zarr" / "t" / "k" / "b+00001-deadbeef.zarr"  # a deletion cut short
    (cut_short / "stats").mkdir(parents=True)
    (root / "x.zarr" / "t" / "k" / ".tmp-b+00002-x.zarr").mkdir()
    remove_tmp(str(root))
    assert not cut_short.exists()
    assert not (root / "x.zarr" / "t" / "k" / ".tmp-b+00002-x.zarr").exists()
    assert os.path.exists(kept) and (root / "x.zarr").is_dir()


def test_a_part_removed_by_another_job_leaves_this_jobs_listing(tmp_path):
    """Job A lists, job B deletes a part (as its compaction does), A's own removal of it
    finds it gone: A's listing forgets it (no failed read and retry later)."""
    a = StatisticsStore(str(tmp_path / "stats"))
    b = StatisticsStore(str(tmp_path / "stats"))
    first = a.write_part("m", "t", "k", 0, _stats(seed=1), ["kg", "kt"])
    a.write_part("m", "t", "k", 1, _stats(seed=2).assign_coords(
        init_time=_stats().init_time + np.timedelta64(3, "D")), ["kg", "kt"])
    assert len(a.parts("m", "t", "k")) == 2
    assert b._remove_part(first) == 1
    assert a._remove_part(first) == 0
    assert first not in a.parts("m", "t", "k") and len(a.parts("m", "t", "k")) == 1


@pytest.mark.parametrize("damaged", ["stats/0.0.0.0.0", "stats/.zarray"])
def test_damaged_part_is_named_and_recomputed_once_deleted(tmp_path, damaged):
    """Bytes of a committed part lost or garbled on disk: a clear error naming the part and
    what to do (no codec traceback); once it is deleted its inits are simply missing."""
    from wxeval.chunks import DamagedArrayError

    store = StatisticsStore(str(tmp_path / "stats"))
    a = _stats(seed=1)
    part = store.write_part("m", "t", "k", 0, a, ["kg", "kt"])
    with open(os.path.join(part, damaged), "r+b") as fh:
        fh.seek(16)
        fh.write(b"\xff" * 24)
    args = ("m", "t", "k", a.init_time.values, a.lead_time.values, (500, 850))
    with pytest.raises(DamagedArrayError, match=f"part {re.escape(part)} is damaged.*delete that"):
        StatisticsStore(str(tmp_path / "stats")).load(*args, ["global", "tropics"], ["kg", "kt"])
    shutil.rmtree(part)
    fresh = StatisticsStore(str(tmp_path / "stats"))
    assert not fresh.coverage(*args, ["kg", "kt"]).any()


def _record_commits(monkeypatch):
    """Patch os.fsync and os.replace: for each rename of a part's temporary folder (its
    commit), the names of the files under it and those of its files and folders that were not
    yet fsynced."""
    synced: set[str] = set()
    unsynced_at_commit: list[list[str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        synced.add(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    def replace(src, dst):
        if os.path.basename(str(src)).startswith(".tmp-"):
            under = [os.path.realpath(os.path.join(d, n)) for d, dirs, files in os.walk(src)
                     for n in [*dirs, *files]]
            names = {n for _, _, files in os.walk(src) for n in files}
            unsynced_at_commit.append(
                (names, [p for p in [os.path.realpath(src), *under] if p not in synced]))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return unsynced_at_commit


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_every_file_of_a_part_is_durable_before_its_commit(tmp_path, monkeypatch):
    """A power loss must not leave a committed part with empty files (ext4 may persist the
    rename before the data): statistics parts, merged parts and map-sum parts alike."""
    from wxeval import sum_parts

    commits = _record_commits(monkeypatch)
    store = StatisticsStore(str(tmp_path / "stats"))
    da = _stats()
    path = store.write_part("m", "t", "k", 0, da, ["kg", "kt"])
    store.write_part("m", "t", "k", 1, _stats(seed=1).assign_coords(
        init_time=da.init_time.values + np.timedelta64(3, "D")), ["kg", "kt"])
    assert store.compact("m", "t", "k", min_parts=2) == 2  # writes a merged part
    sums = np.arange(2 * 3 * 4 * 5, dtype=float).reshape(2, 3, 4, 5)
    sum_parts.write_part(store, "maps", "m", "t", "k", 0, sums, da.init_time.values,
                         da.lead_time.values, None, ("bias", "mse", "mae"), {})
    assert len(commits) == 4
    for names, unsynced in commits:
        # its group and array metadata, chunks and commit marker: all fsynced
        assert {MARKER, ".zgroup", ".zarray"} <= names
        assert any(n.startswith("0.") for n in names)
        assert unsynced == []
    assert not os.path.exists(path)  # merged away


def _result(block, seed=0):
    from types import SimpleNamespace

    da = _stats(seed=seed)
    inits = da.init_time.values + np.timedelta64(3 * block, "D")
    arr = da.transpose("init_time", "lead_time", "level", "region", "statistic").values
    return SimpleNamespace(
        per_model={"m": (inits, da.lead_time.values, arr)}, model_levels={"m": [500, 850]},
        regions=["global", "tropics"], statistics=list(STATISTICS), variable="t", block=block)


def test_collector_writes_parts_in_the_background_and_raises_a_failed_write(tmp_path):
    """Parts are written on the collector's own thread; each one stored as given, and a failed
    write is raised (at the next add, or at close/collect), never lost."""
    from wxeval.store import Collector

    store = StatisticsStore(str(tmp_path / "stats"))
    col = Collector(store, {("m", "t"): "k"}, [])
    col.region_keys = ["kg", "kt"]
    col.add(_result(0))
    col.add(_result(1, seed=1))
    col.close()
    parts = store.parts("m", "t", "k")
    assert len(parts) == 2
    for block, seed in ((0, 0), (1, 1)):
        (path,) = [p for p in parts if f"/b{block:+06d}-" in p]
        np.testing.assert_array_equal(
            zarr.open_array(path + "/stats", mode="r")[...], _stats(seed=seed).values)

    calls = []

    def failing(*args, **kwargs):
        calls.append(args[3])
        raise OSError("disk full")

    store.write_part = failing
    col.add(_result(2))
    with pytest.raises(OSError, match="disk full"):
        col.close()
    col.add(_result(3))
    col._pool.shutdown(wait=True)  # the write has failed
    with pytest.raises(OSError, match="disk full"):
        col.add(_result(4))
    assert calls == [2, 3]
