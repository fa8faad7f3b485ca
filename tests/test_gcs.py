"""Reading (and writing statistics to) ``gs://`` against a local GCS emulator, never the internet.

Small WB2-layout stores are written locally with tests/builders.py, uploaded file by file with
google-cloud-storage (see tests/conftest.py and README §7), then scored from ``gs://``; the
tables must equal those scored from the same local stores.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from builders import make_case, write_all, write_config

from wxeval.api import score
from wxeval.loaders import LoadError

BUCKET = "wxeval-test"
MODEL = "model"
CLI_TIMEOUT = 60


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def case_and_paths(tmp_path_factory, upload_dir):
    """One tiny case (~0.5 MB), written locally and uploaded to ``gs://BUCKET/<unique>/``."""
    case = make_case(
        nlat=5,
        nlon=8,
        levels=(500,),
        variables=("temperature", "2m_temperature"),
        n_inits=4,
        leads_h=(0, 12, 24),
        seed=7,
    )
    root = tmp_path_factory.mktemp("gcs-stores")
    write_all(case, root)
    local = dict(case.paths)
    prefix = f"stores-{uuid.uuid4().hex[:8]}"
    remote = {
        role: upload_dir(path, BUCKET, f"{prefix}/{Path(path).name}")
        for role, path in local.items()
    }
    return case, local, remote


@pytest.fixture(scope="module")
def local_tables(case_and_paths, tmp_path_factory):
    case, local, _ = case_and_paths
    cfg = write_config(
        tmp_path_factory.mktemp("local-cfg") / "local.yaml",
        dataclasses.replace(case, paths=local),
    )
    return score(cfg, [MODEL], output=None).tables[MODEL]


def gs_config(path: Path, case_and_paths, **overrides) -> Path:
    """A config whose truth, climatology and model all live on ``gs://`` (anonymous access)."""
    case, _, remote = case_and_paths
    paths = dict(remote)
    paths.update({k: v for k, v in overrides.items() if k in ("truth", "climatology", "forecast")})
    write_config(path, dataclasses.replace(case, paths=paths))
    output = overrides.get("output")
    if output:
        cfg = yaml.safe_load(path.read_text())
        cfg["output"] = output
        path.write_text(yaml.safe_dump(cfg))
    return path


def assert_tables_equal(got: xr.Dataset, want: xr.Dataset) -> None:
    assert sorted(got.data_vars) == sorted(want.data_vars)
    for var in want.data_vars:
        g, w = got[var], want[var]
        assert g.dims == w.dims, var
        for dim in w.dims:
            np.testing.assert_array_equal(g[dim].values, w[dim].values)
        assert np.isfinite(w.values).any(), var
        np.testing.assert_allclose(g.values, w.values, rtol=1e-12, atol=0, equal_nan=True)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m wxeval.cli ARGS`` with this process's environment (emulator settings)."""
    return subprocess.run(
        [sys.executable, "-m", "wxeval.cli", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=dict(os.environ),
    )


# -- reading ---------------------------------------------------------------------------------


def test_score_from_gs_equals_local(case_and_paths, local_tables, gcs, tmp_path):
    _, _, remote = case_and_paths
    assert all(p.startswith(f"gs://{BUCKET}/") for p in remote.values())
    cfg = gs_config(tmp_path / "gs.yaml", case_and_paths)
    report = score(cfg, [MODEL], output=tmp_path / "out")
    assert report.computed_fields > 0
    assert_tables_equal(report.tables[MODEL], local_tables)
    manifest = yaml.safe_load((tmp_path / "out" / f"{MODEL}.json").read_text())
    assert manifest["inputs"]["truth"]["path"] == remote["truth"]
    assert manifest["inputs"]["forecast"]["path"] == remote["forecast"]


def test_cli_score_from_gs(case_and_paths, local_tables, gcs, tmp_path):
    cfg = gs_config(tmp_path / "gs.yaml", case_and_paths)
    out = tmp_path / "out"
    res = run_cli("score", "--config", str(cfg), "--output", str(out), "--model", MODEL)
    assert res.returncode == 0, res.stderr
    assert (out / f"{MODEL}.csv").exists()
    with xr.open_dataset(out / f"{MODEL}.nc") as ds:
        assert_tables_equal(ds.load(), local_tables)


# -- errors ----------------------------------------------------------------------------------

MISSING = {
    "missing-object": f"gs://{BUCKET}/no/such/truth.zarr",
    "missing-bucket": "gs://wxeval-no-such-bucket/truth.zarr",
}


@pytest.mark.parametrize("where", sorted(MISSING))
def test_missing_gs_store_is_a_load_error(case_and_paths, gcs, tmp_path, where):
    path = MISSING[where]
    cfg = gs_config(tmp_path / "gs.yaml", case_and_paths, truth=path)
    start = time.monotonic()
    with pytest.raises(LoadError) as info:
        score(cfg, [MODEL], output=None)
    assert time.monotonic() - start < 30
    msg = str(info.value)
    assert path in msg
    assert "\n" not in msg.strip()


def test_cli_missing_gs_store_exits_4(case_and_paths, gcs, tmp_path):
    path = MISSING["missing-object"]
    cfg = gs_config(tmp_path / "gs.yaml", case_and_paths, forecast=path)
    start = time.monotonic()
    res = run_cli("score", "-c", str(cfg), "-o", str(tmp_path / "out"), "-m", MODEL)
    assert time.monotonic() - start < 30
    assert res.returncode == 4, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("wxeval: error:")
    assert path in lines[0]
    assert "Traceback" not in res.stderr


def test_unreachable_gcs_endpoint_is_a_load_error(case_and_paths, gcs, tmp_path, monkeypatch):
    # Nothing listens on the port. gcsfs retries a refused connection 6 times with a fixed
    # exponential backoff (~31 s, not configurable per instance); skip the waiting, not the
    # retries, so the test is quick.
    import types

    import gcsfs.retry

    async def no_wait(delay, *args, **kwargs):
        return None

    monkeypatch.setattr(gcsfs.retry, "asyncio", types.SimpleNamespace(sleep=no_wait))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    _, local, _ = case_and_paths
    path = f"gs://{BUCKET}/unreachable/truth.zarr"
    cfg = gs_config(
        tmp_path / "gs.yaml",
        case_and_paths,
        truth=path,
        climatology=local["climatology"],
        forecast=local["forecast"],
    )
    start = time.monotonic()
    with pytest.raises(LoadError) as info:
        score(cfg, [MODEL], output=None)
    assert time.monotonic() - start < 30
    msg = str(info.value)
    assert path in msg
    assert "connect" in msg.lower()
    assert "\n" not in msg.strip()


# -- statistics store on gs:// ---------------------------------------------------------------


def _local_twin_has_trailing_cr(case_and_paths, tmp_path: Path) -> bool:
    """Whether the same statistics, stored locally, hold an object ending in ``\\r``: the
    emulator corrupts exactly those when they are uploaded through gcsfs (README §7)."""
    case, local, _ = case_and_paths
    cfg = write_config(tmp_path / "twin.yaml", dataclasses.replace(case, paths=local))
    score(cfg, [MODEL], output=tmp_path / "twin")
    files = [p for p in (tmp_path / "twin" / "statistics").rglob("*") if p.is_file()]
    assert files
    return any(p.read_bytes().endswith(b"\r") for p in files)


def test_statistics_store_on_gs_is_reused(case_and_paths, local_tables, gcs, tmp_path):
    # The store is written through gcsfs, whose uploads the emulator corrupts when an object
    # ends in "\r" (README §7). With this case no object does (the bytes are deterministic);
    # should a library update change that, say so instead of failing obscurely.
    if _local_twin_has_trailing_cr(case_and_paths, tmp_path):
        pytest.xfail(
            "a statistics chunk ends in \\r: the GCS emulator drops that byte when "
            "gcsfs uploads it (README §7); not a wxeval bug"
        )
    stats = f"gs://{BUCKET}/stats-{uuid.uuid4().hex[:8]}"
    output = {"statistics": stats, "storage_options": {"token": "anon"}}
    cfg = gs_config(tmp_path / "gs.yaml", case_and_paths, output=output)

    first = score(cfg, [MODEL], output=tmp_path / "out1")
    assert first.computed_fields > 0
    assert first.reused_fields == 0
    assert_tables_equal(first.tables[MODEL], local_tables)

    import gcsfs

    fs = gcsfs.GCSFileSystem(token="anon")
    assert fs.find(stats.removeprefix("gs://")), "nothing written to the statistics store"

    gcsfs.GCSFileSystem.clear_instance_cache()
    second = score(cfg, [MODEL], output=tmp_path / "out2")
    assert second.computed_fields == 0
    assert second.reused_fields == first.computed_fields
    assert_tables_equal(second.tables[MODEL], local_tables)


def test_statistics_parts_merge_on_gs(case_and_paths, gcs):  # the fixture makes the bucket
    """Compaction through gcsfs: the merged part is committed, the others deleted, and a fresh
    reader gets every number back."""
    import gcsfs
    from test_store import _stats

    from wxeval.store import StatisticsStore, _part_objects

    def ends_in_cr(values) -> bool:  # the emulator corrupts such uploads (README §7)
        chunk = _part_objects(values, {})["stats/0.0.0.0.0"]
        return chunk.endswith(b"\r")

    root = f"gs://{BUCKET}/merge-{uuid.uuid4().hex[:8]}"
    store = StatisticsStore(root, {"token": "anon"})
    parts, seed = [], 0
    while len(parts) < 4:
        da = _stats(n_inits=1, seed=seed)
        seed += 1
        if ends_in_cr(da.values):
            continue
        da = da.assign_coords(init_time=da.init_time + np.timedelta64(len(parts), "D"))
        store.write_part("m", "t", "k", len(parts), da, ["kg", "kt"])
        parts.append(da)
    want = xr.concat(parts, dim="init_time")
    if ends_in_cr(want.values):
        pytest.xfail("the merged chunk ends in \\r, which the GCS emulator corrupts (README §7)")
    assert store.compact("m", "t", "k", min_parts=3) == 4
    gcsfs.GCSFileSystem.clear_instance_cache()
    fresh = StatisticsStore(root, {"token": "anon"})
    names = [p.rsplit("/", 1)[-1] for p in fresh.parts("m", "t", "k")]
    assert len(names) == 1 and names[0].startswith("c")
    got = fresh.load("m", "t", "k", want.init_time.values, want.lead_time.values, (500, 850),
                     ["global", "tropics"], ["kg", "kt"])
    np.testing.assert_array_equal(got.values, want.values)
