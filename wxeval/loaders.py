"""Open forecast, truth and climatology Zarr stores lazily and map them onto the canonical schema.

Paths may be local folders, ``gs://bucket/...`` (read anonymously unless the store's
``storage_options`` carry credentials: ``token``, a service-account file, ``"google_default"``)
or any fsspec URL. Opening reads metadata only: no data value is read until a metric is computed.
Opened stores are cached per process so that dask workers open each store once.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import xarray as xr

from wxeval import schema


class LoadError(OSError):
    """A store cannot be opened; the message names the store and the path."""


@dataclass(frozen=True)
class StoreSpec:
    """Everything needed to (re)open one store, on this process or on a dask worker."""

    path: str
    role: str  # "forecast" | "truth" | "climatology"
    name: str
    rename: tuple[tuple[str, str], ...] = ()
    storage_options: str = "{}"  # JSON, so the spec is hashable and picklable
    extra: tuple[tuple[str, Any], ...] = field(default=())

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
        return {k: ("<redacted>" if _is_secret(k) else v) for k, v in self.options.items()}


_SECRET_WORDS = ("token", "secret", "key", "password", "credential", "auth")


def _is_secret(key: str) -> bool:
    return any(w in key.lower() for w in _SECRET_WORDS)


def storage_options_for(path: str, options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """fsspec options for ``path``: ``gs://`` is anonymous unless credentials are given."""
    opts = dict(options or {})
    if path.startswith(("gs://", "gcs://")):
        opts.setdefault("token", "anon")
    return opts or None


def open_raw(path: str, *, storage_options: Mapping[str, Any] | None = None, name: str = "store"):
    """Open a Zarr store (v2 or v3, consolidated or not) lazily, without dask, as xarray."""
    opts = storage_options_for(path, storage_options)
    kwargs: dict[str, Any] = dict(
        chunks=None, decode_timedelta=True, storage_options=opts, mask_and_scale=True
    )
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
        raise LoadError(f"{name}: cannot open Zarr store at {path!r}: {_describe(err)}") from err


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
def open_store(spec: StoreSpec) -> xr.Dataset:
    """Open ``spec`` lazily and normalise it onto the canonical schema (cached per process)."""
    ds = open_raw(spec.path, storage_options=spec.options, name=spec.name)
    return schema.normalize(ds, spec.role, name=spec.name, rename=dict(spec.rename))


def clear_cache() -> None:
    """Forget opened stores (e.g. after a store was rewritten in place)."""
    open_store.cache_clear()
