"""An opened store (:class:`_Store`) and the store's own names for canonical dims and variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import xarray as xr

from wxeval import schema
from wxeval.loaders import StoreSpec
from wxeval.schema import INIT_TIME, VALID_TIME


@dataclass
class _Store:
    spec: StoreSpec
    raw: xr.Dataset | None = None
    ds: xr.Dataset | None = None  # normalised

    @property
    def name(self) -> str:
        return self.spec.name


def _raw_name(st: _Store, canonical: str) -> str:
    """The store's own name for a canonical dim (inverse of the config rename and common names)."""
    for own, canon in st.spec.rename:
        if canon == canonical:
            return own
    if canonical in st.raw.variables:
        return canonical
    for own, canon in schema.COMMON_RENAMES.items():
        if canon == canonical and own in st.raw.variables:
            return own
    if canonical in (INIT_TIME, VALID_TIME) and "time" in st.raw.variables:
        return "time"
    return canonical


def _canonical(st: _Store, own: str) -> str:
    mapping = dict(st.spec.rename)
    if own in mapping:
        return mapping[own]
    if own in schema.COMMON_RENAMES:
        return schema.COMMON_RENAMES[own]
    if own == "time":
        return schema.ROLE_TIME_NAME.get(st.spec.role) or own
    return own


def _raw_var(st: _Store, var: str) -> str:
    for own, canon in st.spec.rename:
        if canon == var:
            return own
    return var


def _local_root(path: str) -> Path | None:
    if path.startswith("file://"):
        path = path[len("file://"):]
    elif "://" in path:
        return None
    p = Path(path)
    return p if p.is_dir() else None
