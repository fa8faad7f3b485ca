"""Cloud faults: ``gs://`` reads through a fault-injecting HTTP proxy in front of the GCS emulator.

The proxy (``http.server`` on 127.0.0.1, one thread per request, bounded by timeouts) forwards
every request to the emulator unless a queued fault says otherwise: an HTTP status (503, 429,
500 …), a dropped connection (closed without an answer) or a stall (no answer for a while). A
rule can also answer a permanent status (403, 404) for every path containing a string. gcsfs is
pointed at the proxy with ``endpoint_url`` in the store's ``storage_options``.

Expectations (wxeval/loaders.py): transient faults are retried (by gcsfs per request, by wxeval
around opening a store) and logged on the ``wxeval`` logger, and the scores equal those read
from local files; a 403 or 404 fails at once with a LoadError naming the URL; faults that never
clear fail with the store and variable named; credentials never appear in logs or messages.
gcsfs's back-off sleeps (1, 2, 4, … s) and wxeval's retry delays are shortened, not the retries.
"""

from __future__ import annotations

import dataclasses
import http.client
import http.server
import logging
import socket
import threading
import time
import types
import uuid
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from builders import make_case, write_all, write_config

from wxeval import loaders
from wxeval.api import score
from wxeval.loaders import LoadError

BUCKET = "wxeval-faults"
MODEL = "model"
SECRET = "SECRET123-do-not-log"

# -- the proxy -------------------------------------------------------------------------------


class FaultProxy:
    """Forward HTTP to ``upstream``; inject queued faults and permanent per-path rules."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.split("://", 1)[1].split(":")
        self.upstream = (host, int(port))
        self.faults: deque = deque()  # ("status", code) | ("drop",) | ("stall", seconds)
        self.rules: list[tuple[str, int]] = []  # (substring of the path, status)
        self.match = ""  # queued faults apply only to paths containing this
        self.injected: list[tuple] = []
        self.requests: list[tuple[str, str, dict]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 20  # a client that goes away does not hold a thread for long

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                body = b""
                if self.headers.get("Content-Length"):
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                with proxy.lock:
                    proxy.requests.append((self.command, self.path, dict(self.headers)))
                    status = next((s for sub, s in proxy.rules if sub in self.path), None)
                    fault = None
                    if status is None and proxy.faults and proxy.match in self.path:
                        fault = proxy.faults.popleft()
                        proxy.injected.append(fault)
                if status is not None:
                    return self._reply(status, b'{"error": {"code": %d, "message": "injected"}}'
                                       % status)
                if fault is not None:
                    if fault[0] == "status":
                        return self._reply(fault[1], b'{"error": {"code": %d, "message": "x"}}'
                                           % fault[1])
                    if fault[0] == "drop":
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return None
                    if fault[0] == "stall":
                        time.sleep(fault[1])
                        self.close_connection = True
                        return None
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=20)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                skip = {"transfer-encoding", "connection", "content-length", "content-encoding"}
                hdrs = [(k, v) for k, v in resp.getheaders() if k.lower() not in skip]
                return self._reply(resp.status, data, hdrs)

            def _reply(self, status, data, headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                if not any(k.lower() == "content-type" for k, _ in headers):
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uploaded(tmp_path_factory, upload_dir):
    """A tiny case, written locally and uploaded to the emulator; its local tables."""
    case = make_case(
        nlat=5, nlon=8, levels=(500,), variables=("temperature", "2m_temperature"),
        n_inits=3, leads_h=(0, 12, 24), seed=11,
    )
    root = tmp_path_factory.mktemp("fault-stores")
    write_all(case, root)
    local = dict(case.paths)
    prefix = f"faults-{uuid.uuid4().hex[:8]}"
    remote = {r: upload_dir(p, BUCKET, f"{prefix}/{Path(p).name}") for r, p in local.items()}
    cfg = write_config(root / "local.yaml", dataclasses.replace(case, paths=local))
    tables = score(cfg, [MODEL], output=None).tables[MODEL]
    return case, local, remote, tables


@pytest.fixture
def fast(monkeypatch, gcs):
    """No back-off sleeps (gcsfs and wxeval), short socket timeouts, fresh caches."""
    import gcsfs.retry

    async def no_wait(delay, *args, **kwargs):
        return None

    monkeypatch.setattr(gcsfs.retry, "asyncio", types.SimpleNamespace(sleep=no_wait))
    monkeypatch.setattr(loaders, "RETRY_DELAYS", (0.0, 0.0))
    monkeypatch.setattr(loaders, "READ_TIMEOUT", 1.0)
    loaders._client_timeout.cache_clear()
    yield
    loaders._client_timeout.cache_clear()


@pytest.fixture
def proxy(gcs_emulator):
    with FaultProxy(gcs_emulator) as p:
        yield p


def proxied_config(path: Path, uploaded, proxy: FaultProxy, *, roles=("truth", "climatology",
                   "forecast"), token: str = "anon", **paths) -> Path:
    case, local, remote, _ = uploaded
    use = {r: (remote[r] if r in roles else local[r]) for r in local}
    use.update(paths)
    write_config(path, dataclasses.replace(case, paths=use))
    cfg = yaml.safe_load(path.read_text())
    opts = {"token": token, "endpoint_url": proxy.url}
    for key in ("truth", "climatology"):
        if key in roles:
            cfg[key]["storage_options"] = opts
    if "forecast" in roles:
        cfg["models"][MODEL]["storage_options"] = opts
    path.write_text(yaml.safe_dump(cfg))
    return path


def assert_tables_equal(got: xr.Dataset, want: xr.Dataset) -> None:
    assert sorted(got.data_vars) == sorted(want.data_vars)
    for var in want.data_vars:
        assert np.isfinite(want[var].values).all(), var
        np.testing.assert_array_equal(got[var].values, want[var].values)


def wxeval_records(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "wxeval"]


# -- transient faults: retried, logged, same numbers -----------------------------------------


def test_transient_faults_are_retried_and_scores_equal_local(uploaded, fast, proxy, tmp_path,
                                                             caplog):
    caplog.set_level(logging.INFO, logger="wxeval")
    # Faults in sequence on one object (zarr fetches several metadata objects concurrently).
    # aiohttp itself resends an idempotent request once when the connection drops: two drops
    # in a row reach gcsfs (and the log).
    proxy.match = "truth.zarr%2F.zmetadata"
    proxy.faults.extend([("status", 503)] * 3 + [("status", 429), ("drop",), ("drop",),
                                                 ("status", 500), ("status", 504)])
    cfg = proxied_config(tmp_path / "cfg.yaml", uploaded, proxy)
    start = time.monotonic()
    report = score(cfg, [MODEL], output=None)
    assert time.monotonic() - start < 20
    assert not proxy.faults, "every queued fault was served"
    assert_tables_equal(report.tables[MODEL], uploaded[3])
    logged = "\n".join(wxeval_records(caplog))
    assert "transient HTTP 503" in logged and "transient HTTP 429" in logged, logged
    assert "failed (ServerDisconnectedError)" in logged, logged
    # gcsfs gave up after 6 attempts (503, 503, 503, 429, drop, 500); wxeval reopened.
    assert "transient error opening gs://" in logged, logged


def test_faults_during_chunk_reads_are_retried(uploaded, fast, proxy, tmp_path):
    # Faults only on chunk objects of the forecast's temperature (read during compute).
    proxy.match = "model.zarr%2Ftemperature%2F0"
    proxy.faults.extend([("status", 503), ("drop",), ("status", 429)])
    cfg = proxied_config(tmp_path / "cfg.yaml", uploaded, proxy)
    report = score(cfg, [MODEL], output=None)
    assert len(proxy.injected) == 3
    assert_tables_equal(report.tables[MODEL], uploaded[3])


def test_stalled_request_times_out_and_is_retried(uploaded, fast, proxy, tmp_path):
    # READ_TIMEOUT is 1 s here: the stalled request raises ServerTimeoutError, which gcsfs
    # retries (aiohttp's default would wait 5 minutes, then fail without a retry).
    proxy.match = "model.zarr%2Ftemperature%2F0"
    proxy.faults.append(("stall", 3.0))
    cfg = proxied_config(tmp_path / "cfg.yaml", uploaded, proxy)
    start = time.monotonic()
    report = score(cfg, [MODEL], output=None)
    assert time.monotonic() - start < 15
    assert proxy.injected == [("stall", 3.0)]
    assert_tables_equal(report.tables[MODEL], uploaded[3])


def test_wxeval_retries_opening_after_gcsfs_gives_up(uploaded, fast, proxy, tmp_path, caplog):
    # gcsfs tries each request 6 times; 8 consecutive 503s on the truth's metadata outlast it,
    # wxeval's own retry around opening the store then succeeds.
    caplog.set_level(logging.INFO, logger="wxeval")
    proxy.match = "truth.zarr%2F.zmetadata"
    proxy.faults.extend([("status", 503)] * 8)
    cfg = proxied_config(tmp_path / "cfg.yaml", uploaded, proxy, roles=("truth",))
    report = score(cfg, [MODEL], output=None)
    assert not proxy.faults
    assert_tables_equal(report.tables[MODEL], uploaded[3])
    assert any("transient error opening gs://" in m for m in wxeval_records(caplog))


# -- permanent faults: fail at once, URL named ------------------------------------------------


@pytest.mark.parametrize("status", [403, 404])
def test_permanent_status_fails_fast_with_url(uploaded, fast, proxy, tmp_path, status):
    _, _, remote, _ = uploaded
    proxy.rules.append(("truth.zarr", status))
    cfg = proxied_config(tmp_path / "cfg.yaml", uploaded, proxy, roles=("truth",))
    start = time.monotonic()
    with pytest.raises(LoadError) as info:
        score(cfg, [MODEL], output=None)
    assert time.monotonic() - start < 10
    msg = str(info.value)
    assert remote["truth"] in msg and "\n" not in msg.strip(), msg
    assert ("Forbidden" in msg) if status == 403 else ("no such store" in msg), msg
    # No retry of a permanent answer: one request per probed metadata key, at most.
    truth_requests = [p for _, p, _ in proxy.requests if "truth.zarr" in p]
    assert len(truth_requests) <= 8, truth_requests


def test_forbidden_chunk_during_compute_names_store_and_variable(uploaded, fast, proxy,
                                                                   tmp_path):
    _, _, remote, _ = uploaded
    proxy.rules.append(("model.zarr%2Ftemperature%2F0", 403))
    cfg = proxied_config(tmp_path / "cfg.yaml", uploaded, proxy)
    with pytest.raises(LoadError) as info:
        score(cfg, [MODEL], output=None)
    msg = str(info.value)
    assert remote["forecast"] in msg and "'temperature'" in msg, msg


def test_fault_that_never_clears_is_an_io_error_naming_the_store(uploaded, fast, proxy,
                                                                 tmp_path):
    # 503 forever on one chunk: gcsfs gives up after 6 attempts; the error names store and
    # variable and is an I/O error (exit 4), not an internal one.
    _, _, remote, _ = uploaded
    proxy.rules.append(("model.zarr%2Ftemperature%2F0", 503))
    cfg = proxied_config(tmp_path / "cfg.yaml", uploaded, proxy)
    start = time.monotonic()
    with pytest.raises(LoadError) as info:
        score(cfg, [MODEL], output=None)
    assert time.monotonic() - start < 20
    msg = str(info.value)
    assert remote["forecast"] in msg and "'temperature'" in msg, msg


# -- credentials -----------------------------------------------------------------------------


def test_secret_options_never_logged_or_shown(uploaded, fast, proxy, tmp_path, caplog):
    # A real access token would make gcsfs validate it at oauth2.googleapis.com (the internet):
    # a secret-named option that gcsfs ignores stands in for it.
    caplog.set_level(logging.DEBUG)
    proxy.faults.extend([("status", 503), ("status", 503)])
    cfg = proxied_config(tmp_path / "cfg.yaml", uploaded, proxy)
    data = yaml.safe_load(cfg.read_text())
    for store in (data["truth"], data["climatology"], data["models"][MODEL]):
        store["storage_options"]["client_secret"] = SECRET
    cfg.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    score(cfg, [MODEL], output=out)
    assert proxy.injected
    assert SECRET not in caplog.text
    for f in out.glob("*.*"):
        assert SECRET.encode() not in f.read_bytes(), f
    # And in an error message: a 403 with the token configured.
    loaders.clear_cache()
    proxy.rules.append(("truth.zarr", 403))
    with pytest.raises(LoadError) as info:
        score(cfg, [MODEL], output=None)
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text


def test_is_transient_classification():
    import aiohttp
    from gcsfs.retry import HttpError

    assert loaders.is_transient(HttpError({"code": 503, "message": "x"}))
    assert loaders.is_transient(HttpError({"code": 429, "message": "x"}))
    assert not loaders.is_transient(HttpError({"code": 400, "message": "x"}))
    assert loaders.is_transient(TimeoutError())
    assert loaders.is_transient(aiohttp.ServerDisconnectedError())
    assert not loaders.is_transient(FileNotFoundError("gs://b/x"))
    assert not loaders.is_transient(OSError("Forbidden: b/o/x"))
    assert not loaders.is_transient(ConnectionRefusedError())
    wrapped = ValueError("decode")
    wrapped.__cause__ = HttpError({"code": 502, "message": "x"})
    assert loaders.is_transient(wrapped)
    assert loaders.safe_url("https://u:p@h:1/a/b?token=x&alt=media#f") == "https://h:1/a/b"
