"""Open forecast, truth and climatology Zarr stores lazily and map them onto the canonical schema.

Paths may be local folders, ``gs://bucket/...`` (read anonymously unless the store's
``storage_options`` carry credentials: ``token``, a service-account file, ``"google_default"``)
or any fsspec URL. Opening reads metadata only: no data value is read until a metric is computed.
Opened stores are cached per process so that dask workers open each store once.

Faults of object storage (``gs://`` through gcsfs). gcsfs itself retries each HTTP request up to
6 times with exponential back-off (1, 2, 4, 8, 16 s plus jitter) on HTTP 408/429/5xx and on
aiohttp client errors (dropped connections), and fails at once on 403 and 404. It does not retry a
request that exceeds aiohttp's *total* timeout (a plain ``TimeoutError``), and its retry count is
fixed when gcsfs is imported. wxeval therefore adds, and only adds:

* default ``requests_timeout`` = ``aiohttp.ClientTimeout(sock_connect=30, sock_read=60)`` (no
  total limit): a stalled connection raises ``ServerTimeoutError``, which gcsfs retries, instead
  of hanging for aiohttp's default 5 minutes and then failing without retry;
* an aiohttp trace hook that reports every transient response (408/429/5xx) and every failed
  connection as it happens, numbered as gcsfs retries it ("gs://b/x.zarr/.zmetadata: attempt
  3/6 failed (DNS), retrying in ~4 s"): logged (INFO on the ``wxeval`` logger, shown with
  ``--verbose``), else shown on a terminal (:mod:`wxeval.progress`), with the URL stripped of
  its query (credentials travel in headers, never in URLs, and are never logged);
* a retry around *opening* a store (:data:`OPEN_ATTEMPTS`, :data:`RETRY_DELAYS`) for transient
  errors that gcsfs gave up on (or does not retry), logged on ``wxeval``; permanent errors (403,
  404, a refused connection, an unknown host) fail at once with the URL named (:class:`LoadError`);
* reads of data values name the store and variable when they fail: :class:`LoadError` (exit 4) for
  I/O errors, :class:`CorruptChunkError` (exit 3) when a chunk cannot be decoded.

A chunk *object* that is absent reads as the fill value (NaN): Zarr's semantics, not an error;
``wxeval check`` (and the pre-flight of ``wxeval score``) report missing chunk files of local
stores.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
import zarr  # noqa: F401 - xarray imports it on the first open_zarr; pay that at import

from wxeval import schema
from wxeval.redact import redact, scrub

log = logging.getLogger("wxeval")

#: Opening a store: attempts in all, and the sleep (s) before each retry (tests shorten these).
OPEN_ATTEMPTS = 3
RETRY_DELAYS: tuple[float, ...] = (2.0, 8.0)
#: aiohttp socket timeouts (s) for gs:// requests; a request that stalls this long is retried.
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 60.0
TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})


class LoadError(OSError):
    """A store cannot be opened (or read); the message names the store and the path."""


class CorruptChunkError(schema.SchemaError):
    """A chunk of a store cannot be decoded; the message names the store and the variable."""


@dataclass(frozen=True)
class StoreSpec:
    """Everything needed to (re)open one store, on this process or on a dask worker."""

    path: str
    role: str  # "forecast" | "truth" | "climatology"
    name: str
    rename: tuple[tuple[str, str], ...] = ()
    storage_options: str = "{}"  # JSON, so the spec is hashable and picklable

    @classmethod
    def make(
        cls,
        path: str,
        role: str,
        name: str,
        *,
        rename: Mapping[str, str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> StoreSpec:
        return cls(
            path=str(path),
            role=role,
            name=name,
            rename=tuple(sorted((rename or {}).items())),
            storage_options=json.dumps(dict(storage_options or {}), sort_keys=True),
        )

    @property
    def options(self) -> dict[str, Any]:
        return json.loads(self.storage_options)

    def redacted_options(self) -> dict[str, Any]:
        """Storage options safe to log or write to results (credentials removed)."""
        return redact(self.options)


def storage_options_for(path: str, options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """fsspec options for ``path``: ``gs://`` is anonymous unless credentials are given, with
    socket timeouts and a trace hook that logs transient faults (see the module doc); options
    the user gives win."""
    opts = dict(options or {})
    if "://" not in path:
        return None  # a local folder: zarr refuses (unused) storage options for it
    if path.startswith(("gs://", "gcs://")):
        opts.setdefault("token", "anon")
        opts.setdefault("requests_timeout", _client_timeout())
        if "session_kwargs" not in opts:
            opts["session_kwargs"] = {"trace_configs": [_trace_config()]}
    return opts or None


@functools.lru_cache(maxsize=1)
def _client_timeout():
    import aiohttp

    return aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)


@functools.lru_cache(maxsize=1)
def _trace_config():
    """One TraceConfig per process (a stable object, so fsspec reuses its cached filesystems)."""
    import aiohttp

    tc = aiohttp.TraceConfig()
    attempts = _Attempts()

    async def on_end(session, ctx, params) -> None:
        status = params.response.status
        if status in TRANSIENT_HTTP:
            attempts.failed(params.method, params.url, f"transient HTTP {status}")
        else:
            attempts.succeeded(params.method, params.url)

    async def on_exception(session, ctx, params) -> None:
        attempts.failed(params.method, params.url, _failure_kind(params.exception))

    tc.on_request_end.append(on_end)
    tc.on_request_exception.append(on_exception)
    return tc


class _Attempts:
    """Counts failed attempts of each request as gcsfs retries it, and reports each one as it
    happens: logged per request (INFO on ``wxeval``, i.e. ``--verbose``) as
    ``gs://bucket/truth.zarr/.zmetadata: attempt 3/6 failed (DNS), retrying in ~4 s``, else shown
    on a terminal once per store and attempt (zarr probes several objects of a store at once):
    ``gs://bucket/truth.zarr: attempt 3/6 failed (DNS), retrying in ~4 s``.

    gcsfs sleeps ``min(2**(n-1) + U(0, 1), 32)`` s after the n-th failure and tries
    ``GCSFileSystem.retries`` (6) times in all; a success or a permanent answer resets the count.
    """

    #: Failures of one store and attempt number within this many seconds are shown once.
    SAME_EVENT_S = 1.0

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], int] = {}
        self._shown: dict[tuple[str, int, str], float] = {}

    @staticmethod
    def _total() -> int:
        try:
            import gcsfs

            return int(getattr(gcsfs.GCSFileSystem, "retries", 6))
        except Exception:  # noqa: BLE001 - gcsfs absent: any other fsspec backend
            return 6

    def failed(self, method: str, url, why: str) -> None:
        from wxeval import progress

        key = (str(method), str(url))
        total = self._total()
        obj = object_url(url)
        store = store_of(obj)
        now = time.monotonic()
        with self._lock:
            n = self._failures.get(key, 0) + 1
            self._failures[key] = n
            if n >= total:
                del self._failures[key]
            event = (store, n, why)
            seen = now - self._shown.get(event, -1e9) < self.SAME_EVENT_S
            self._shown = {k: t for k, t in self._shown.items() if now - t < self.SAME_EVENT_S}
            if not seen:
                self._shown[event] = now
        then = f"retrying in ~{min(2 ** (n - 1), 32)} s" if n < total else "giving up"
        tail = f"attempt {n}/{total} failed ({why}), {then}"
        progress.report(f"{obj}: {tail}", display=None if seen else f"{store}: {tail}")

    def succeeded(self, method: str, url) -> None:
        with self._lock:
            self._failures.pop((str(method), str(url)), None)


def store_of(url: str) -> str:
    """The store an object URL belongs to: up to its ``*.zarr`` component, else its folder."""
    head, sep, rest = url.partition("://")
    parts = rest.split("/")
    for i, part in enumerate(parts):
        if part.endswith(".zarr") and i > 0:
            return head + sep + "/".join(parts[: i + 1])
    return head + sep + "/".join(parts[:-1]) if len(parts) > 2 else url


def _failure_kind(err: BaseException) -> str:
    """A short word for a failed request: DNS, connection refused, timeout, or the type."""
    import socket

    name = type(err).__name__
    if "DNS" in name or isinstance(getattr(err, "os_error", None), socket.gaierror):
        return "DNS"
    if isinstance(err, ConnectionRefusedError) or isinstance(
        getattr(err, "os_error", None), ConnectionRefusedError
    ):
        return "connection refused"
    if isinstance(err, TimeoutError) or "Timeout" in name:
        return "timeout"
    return name


def object_url(url) -> str:
    """``gs://bucket/object`` for a request of the GCS JSON API (credentials never travel in
    URLs, but queries are dropped anyway); any other URL as :func:`safe_url`."""
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(str(url))
    segments = parts.path.split("/")
    if "b" in segments:
        i = segments.index("b")
        if i + 1 < len(segments) and segments[i + 1]:
            bucket = segments[i + 1]
            rest = segments[i + 2 :]
            if len(rest) >= 2 and rest[0] == "o" and rest[1]:
                return f"gs://{bucket}/{unquote('/'.join(rest[1:]))}"
            prefix = parse_qs(parts.query).get("prefix", [""])[0]
            return f"gs://{bucket}/{prefix}"
    return safe_url(url)


def safe_url(url) -> str:
    """``url`` without query string, fragment or user info (safe to log)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def is_transient(err: BaseException) -> bool:
    """True for errors worth retrying: HTTP 408/429/5xx, timeouts, dropped connections.

    Permanent: 403/404 and other 4xx, missing objects, refused connections, unknown hosts.
    """
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if _is_permanent(e):
            return False
        code = getattr(e, "code", None) if type(e).__name__ == "HttpError" else None
        code = code if code is not None else getattr(e, "status", None)
        if isinstance(code, int | str) and str(code).isdigit():
            return int(code) in TRANSIENT_HTTP
        name = type(e).__name__
        if isinstance(e, TimeoutError | ConnectionError) or name in (
            "FSTimeoutError",
            "ServerDisconnectedError",
            "ClientPayloadError",
            "ClientOSError",
            "ServerTimeoutError",
            "ProxyError",
            "ChunkedEncodingError",
        ):
            return True
        e = e.__cause__ or e.__context__
    return False


def _is_permanent(e: BaseException) -> bool:
    name = type(e).__name__
    if isinstance(e, FileNotFoundError | PermissionError | ConnectionRefusedError):
        return True
    if name in ("ClientConnectorDNSError",):
        return True
    if name == "ClientConnectorError" and isinstance(
        getattr(e, "os_error", None), ConnectionRefusedError
    ):
        return True
    return isinstance(e, OSError) and str(e).startswith("Forbidden")


def open_raw(path: str, *, storage_options: Mapping[str, Any] | None = None, name: str = "store"):
    """Open a Zarr store (v2 or v3, consolidated or not) lazily, without dask, as xarray.

    Transient errors are retried (:data:`OPEN_ATTEMPTS`, :data:`RETRY_DELAYS`) and logged;
    anything else fails at once as :class:`LoadError` naming the store and ``path``."""
    opts = storage_options_for(path, storage_options)
    kwargs: dict[str, Any] = dict(
        chunks=None, decode_timedelta=True, storage_options=opts, mask_and_scale=True
    )
    from wxeval import progress

    progress.report(f"opening {scrub(name.replace(path, safe_url(path)), storage_options)}")
    attempt = 1
    while True:
        try:
            try:
                return xr.open_zarr(path, consolidated=True, **kwargs)
            except (KeyError, FileNotFoundError, ValueError) as err:
                if _looks_missing(err) and not _exists(path, opts):
                    raise
                return xr.open_zarr(path, consolidated=False, **kwargs)
        except LoadError:
            raise
        except Exception as err:  # noqa: BLE001 - turned into one clear message
            why = scrub(_describe(err), storage_options)
            if attempt < OPEN_ATTEMPTS and is_transient(err):
                delay = RETRY_DELAYS[min(attempt - 1, len(RETRY_DELAYS) - 1)]
                progress.report(
                    f"{scrub(name.replace(path, safe_url(path)), storage_options)}: transient "
                    f"error opening {safe_url(path)} ({why}): attempt {attempt}/{OPEN_ATTEMPTS}"
                    f" failed, retrying in {delay:g} s",
                    logging.WARNING,
                )
                _invalidate(path, opts)
                time.sleep(delay)
                attempt += 1
                continue
            tried = f" (after {attempt} attempts)" if attempt > 1 else ""
            message = f"{name}: cannot open Zarr store at {path!r}: {why}{tried}"
            raise LoadError(scrub(message, storage_options)) from err


def _invalidate(path: str, opts: Mapping[str, Any] | None) -> None:
    """Forget cached listings (a failed listing must not be remembered across a retry)."""
    try:
        import fsspec

        fs, _ = fsspec.core.url_to_fs(path, **(opts or {}))
        fs.invalidate_cache()
    except Exception:  # noqa: BLE001 - best effort
        pass


def _looks_missing(err: Exception) -> bool:
    return isinstance(err, FileNotFoundError | KeyError) or "not found" in str(err).lower()


def _exists(path: str, opts: Mapping[str, Any] | None) -> bool:
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(path, **(opts or {}))
        return bool(fs.exists(root))
    except Exception:  # noqa: BLE001
        return False


def _describe(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    kind = type(err).__name__
    if isinstance(err, FileNotFoundError) or "not found" in text.lower():
        return f"no such store ({kind}{': ' + text if text else ''})"
    return f"{kind}: {text}" if text else kind


@functools.lru_cache(maxsize=64)
def open_raw_store(spec: StoreSpec) -> xr.Dataset:
    """:func:`open_raw` of ``spec``, cached per process: the plan and the checks share one
    opening (:func:`open_store` then swaps in the chunk reader, reading the same values)."""
    return open_raw(spec.path, storage_options=spec.options, name=spec.name)


@functools.lru_cache(maxsize=64)
def open_store(spec: StoreSpec) -> xr.Dataset:
    """Open ``spec`` lazily and normalise it onto the canonical schema (cached per process).

    Zarr v2 arrays are read by :mod:`wxeval.chunks` (direct chunk fetch + numcodecs decode,
    ~4× faster than zarr-python's per-chunk pipeline) unless ``WXEVAL_ZARR_READS=1``."""
    import os

    from wxeval import chunks

    ds = open_raw_store(spec)
    if os.environ.get("WXEVAL_ZARR_READS", "") != "1":
        chunks.install(ds, spec.path, storage_options_for(spec.path, spec.options))
    ds = schema.normalize(ds, spec.role, name=spec.name, rename=dict(spec.rename))
    return _name_read_errors(ds, spec)


def _name_read_errors(ds: xr.Dataset, spec: StoreSpec) -> xr.Dataset:
    """Wrap each data variable so that a failed read names the store and the variable."""
    from xarray.core import indexing

    wrapped = {}
    for var in ds.data_vars:
        v = ds[var].variable
        if not isinstance(v._data, indexing.ExplicitlyIndexed):
            continue
        named = _NamedReads(v._data, spec.name, spec.path, str(var), spec.storage_options)
        wrapped[var] = xr.Variable(
            v.dims, indexing.LazilyIndexedArray(named), v.attrs, v.encoding, fastpath=True
        )
    return ds.assign(wrapped)  # one merge (assigning variables one by one aligns each time)


def _backend_array():
    from xarray.backends.common import BackendArray

    return BackendArray


class _NamedReads(_backend_array()):
    """A lazily indexed array whose read errors name the store and the variable."""

    def __init__(self, array, name: str, path: str, variable: str, options: str) -> None:
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self._name, self._path, self._variable, self._options = name, path, variable, options

    def __getitem__(self, key):
        from xarray.core import indexing

        try:
            sub = indexing.apply_indexer(self.array, key)
            if isinstance(sub, indexing.ExplicitlyIndexed):
                sub = sub.get_duck_array()
            return np.asarray(sub)
        except (LoadError, schema.SchemaError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as err:  # noqa: BLE001 - re-raised with the store and variable named
            options = json.loads(self._options)
            why = _describe(err)
            where = f"{self._name}: reading {self._variable!r} from {self._path!r} failed"
            if _is_io_error(err):
                raise LoadError(scrub(f"{where}: {why}", options)) from err
            raise CorruptChunkError(scrub(
                f"{where}: {why} (a corrupted chunk? check the store's files)", options
            )) from err


def _is_io_error(err: BaseException) -> bool:
    if is_transient(err) or isinstance(err, OSError):
        return True
    names = {type(e).__name__ for e in (err, err.__cause__, err.__context__) if e is not None}
    return bool(names & {"HttpError", "ClientError", "ClientResponseError"})


class OpenedStores:
    """The stores a plan opened (normalised, lazy), by :class:`StoreSpec`: on the driver,
    everything after the plan reads them from here instead of opening them again. Each
    store is opened once (by :func:`open_store`), the first time it is asked for.

    Driver-side only: a task sent to a dask worker carries specs, and the worker opens the
    stores itself. Hashable by identity (a cache may key on it)."""

    def __init__(self) -> None:
        self._datasets: dict[StoreSpec, xr.Dataset] = {}

    def __call__(self, spec: StoreSpec) -> xr.Dataset:
        ds = self._datasets.get(spec)
        if ds is None:
            ds = self._datasets[spec] = open_store(spec)
        return ds

    def __contains__(self, spec: StoreSpec) -> bool:
        return spec in self._datasets

    def __reduce__(self):
        raise TypeError("OpenedStores stay on the driver: send StoreSpecs to workers")


def clear_cache() -> None:
    """Forget opened stores (e.g. after a store was rewritten in place), and the region
    weights built from them (a land-sea mask rewritten in place)."""
    from wxeval import evaluate

    open_store.cache_clear()
    open_raw_store.cache_clear()
    evaluate.clear_weights()
