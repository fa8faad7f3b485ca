"""The YAML configuration, validated with pydantic (unknown keys are errors that name the key).

Example::

    truth: {path: gs://weatherbench2/datasets/era5/...zarr}
    climatology: {path: gs://weatherbench2/datasets/era5-hourly-climatology/...zarr}
    models:
      graphcast: {path: gs://.../graphcast/...zarr, rename: {lat: latitude, lon: longitude}}
      hres: {path: gs://.../hres/...zarr, truth: {path: gs://.../hres_t0/...zarr}}
    evaluation:
      init_times: {start: "2020-01-01", stop: "2020-12-31", hours: [0, 12]}
      lead_times: {start: 0h, stop: 240h, step: 24h}    # or a list: [12h, 24h, 120h]
      variables: [geopotential, temperature, 2m_temperature]
      levels: [500, 700, 850]
      regions: all                                       # or a list of names
      custom_regions: {alps: {lat: [44, 48.5], lon: [5, 16.5]}}
      metrics: [rmse, acc, bias, mae]

Configs are data: they are read with ``yaml.safe_load`` and never executed.

Values are read explicitly, never coerced into something else:

- Durations (lead times): ``"6h"``, ``"10d"``, ``"90min"``, or a number, which is hours (also
  ``"24"`` in quotes and on the command line). Negative or unreadable durations are refused.
- Init times: a date or date-time (``2020-01-01``, ``"2020-01-01T06:00"``); times are UTC. A
  time with a UTC offset (``Z``, ``+00:00``, ``+06:00``) is converted to UTC (naive, as the
  stores are). Words relative to today (``yesterday``, ``now``…) are refused: a config names a
  fixed period.
- Names that become file names or object keys (model names, custom region names, variable
  names and ``rename`` targets) must be one plain path component (:mod:`wxeval.names`).
- ``true``/``false`` are refused where a number is expected (pydantic would read them as 1/0).

Every problem is a :class:`ConfigError` (exit 2) naming the file and the key.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from wxeval.align import parse_duration
from wxeval.metrics import canonical_metric
from wxeval.names import RESERVED, check_name

#: Words pandas would read relative to the clock (or not at all): refused, a config names a
#: fixed period.
_RELATIVE_DATES = frozenset({"now", "today", "yesterday", "tomorrow"})


class ConfigError(ValueError):
    """The config cannot be used; the message names the file and the key."""


def duration_text(value: Any) -> str:
    """One lead time as checked text: a number (or numeric text) of hours becomes ``"<n>h"``
    (``"<n>min"``/``"<n>s"`` when not whole hours, rounded to the second); other text must read
    as a non-negative duration (``"6h"``, ``"10d"``, ``"90min"``) and is kept as written.

    Raises ``ValueError`` (without the key: the caller names it)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(
            f"expected a duration like '24h' or a number of hours, got {value!r}"
        )
    number: float | None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    else:
        number = float(value)
    lead = parse_duration(value)  # numbers are hours there too
    if lead < np.timedelta64(0, "ns"):
        raise ValueError(f"a lead time cannot be negative: {value!r}")
    if number is None:
        return value.strip()  # type: ignore[union-attr]
    seconds = int(lead // np.timedelta64(1, "s"))
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}min"
    return f"{seconds}s"


def init_time_text(value: Any) -> str | None:
    """An init ``start``/``stop`` as checked text for label slicing (a date-only ``stop`` keeps
    meaning the whole day). A time with a UTC offset is converted to naive UTC; YAML's own
    dates and date-times are accepted. Raises ``ValueError`` (the caller names the key)."""
    if value is None:
        return None
    hint = "write a date like '2020-01-01' or a UTC time like '2020-01-01T06:00'"
    if isinstance(value, _dt.datetime):
        ts = pd.Timestamp(value)
        text = None
    elif isinstance(value, _dt.date):
        text = value.isoformat()
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)  # a year (2020) or 20200101
    elif isinstance(value, str):
        text = value.strip()
        if text.lower() in _RELATIVE_DATES:
            raise ValueError(
                f"{value!r} depends on the day the run happens; {hint} "
                "(a nightly job passes --stop \"$(date -u +%F)\")"
            )
    else:
        raise ValueError(f"expected a date, got {value!r}; {hint}")
    if text is not None:
        try:
            ts = pd.Timestamp(text)
        except (ValueError, TypeError, OverflowError) as err:
            raise ValueError(f"cannot read date {value!r}; {hint}") from err
    if pd.isna(ts):
        raise ValueError(f"cannot read date {value!r}; {hint}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)  # the stores' times are naive UTC
        text = None
    try:
        ts.as_unit("ns")
    except (ValueError, OverflowError) as err:
        raise ValueError(f"date {value!r} is outside the years 1678-2261") from err
    if text is None:
        text = ts.isoformat()
    try:  # exactly what plan/align will do with it
        pd.DatetimeIndex(["2000-01-01"]).slice_indexer(text, text)
    except (ValueError, TypeError, KeyError, OverflowError) as err:
        raise ValueError(f"cannot read date {value!r}; {hint}") from err
    return text


def _no_bool(value: Any) -> Any:
    """YAML ``true``/``false`` where a number is expected is a mistake, not 1/0."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value


Int = Annotated[int, BeforeValidator(_no_bool)]
Float = Annotated[float, BeforeValidator(_no_bool)]


def _checked_rename(mapping: dict[str, str]) -> dict[str, str]:
    """``rename`` targets become variable/dimension names, and variable names become parts of
    statistics paths."""
    for target in mapping.values():
        check_name(target, "rename target")
    return mapping


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(_Strict):
    path: str
    rename: dict[str, str] = Field(default_factory=dict)
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("rename")
    @classmethod
    def _rename(cls, v):
        return _checked_rename(v)


class ModelConfig(_Strict):
    """A model's forecast store (``kind: zarr``) or a built-in baseline."""

    path: str | None = None
    kind: Literal["zarr", "persistence", "climatology"] = "zarr"
    label: str | None = None
    rename: dict[str, str] = Field(default_factory=dict)
    storage_options: dict[str, Any] = Field(default_factory=dict)
    truth: StoreConfig | None = None
    climatology: StoreConfig | None = None
    #: The store's ensemble member dimension when not one of the names recognised by itself
    #: (``number``, ``realization``, ``sample``, ``member``, ``ensemble``).
    ensemble_dim: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _ensemble_dim(cls, data):
        """``ensemble_dim: d`` is ``rename: {d: member}`` (the canonical member dimension)."""
        if isinstance(data, dict) and data.get("ensemble_dim"):
            data = {**data, "rename": {**(data.get("rename") or {}),
                                       str(data["ensemble_dim"]): "member"}}
        return data

    @field_validator("path")
    @classmethod
    def _path_given(cls, v):
        if v is not None and not str(v).strip():
            raise ValueError("path must not be empty")
        return v

    @field_validator("rename")
    @classmethod
    def _rename(cls, v):
        return _checked_rename(v)


class InitTimes(_Strict):
    start: str | None = None
    stop: str | None = None
    hours: list[Int] | None = None

    @field_validator("start", "stop", mode="before")
    @classmethod
    def _as_text(cls, v):
        return init_time_text(v)

    @field_validator("hours")
    @classmethod
    def _hours(cls, v):
        if v is not None and any(not 0 <= h <= 23 for h in v):
            raise ValueError("hours must be between 0 and 23")
        return v


class LeadRange(_Strict):
    """``start, start + step, … ≤ stop`` (bounds inclusive); numbers are hours."""

    start: str = "0h"
    stop: str
    step: str

    @field_validator("start", "stop", "step", mode="before")
    @classmethod
    def _duration(cls, v):
        return duration_text(v)

    @model_validator(mode="after")
    def _ordered(self):
        start, stop, step = (parse_duration(x) for x in (self.start, self.stop, self.step))
        if step <= np.timedelta64(0, "ns"):
            raise ValueError(f"step must be positive, got {self.step!r}")
        if stop < start:
            raise ValueError(f"stop {self.stop!r} is before start {self.start!r}")
        return self


class RegionBox(_Strict):
    lat: tuple[Float, Float]
    lon: tuple[Float, Float] = (0.0, 360.0)
    land: bool = False

    @field_validator("lat", "lon")
    @classmethod
    def _finite_bounds(cls, v):
        return tuple(_finite(x) for x in v)


class Evaluation(_Strict):
    init_times: InitTimes = Field(default_factory=InitTimes)
    lead_times: LeadRange | list[str] | None = None
    variables: list[str] | None = None
    levels: list[Int] | None = None
    regions: Literal["all"] | list[str] = "all"
    custom_regions: dict[str, RegionBox] = Field(default_factory=dict)
    metrics: list[str] | None = None
    skipna: bool = False
    missing_truth: Literal["error", "pending", "skip"] = "error"
    #: ``by_valid``: the init range selects valid times instead (:mod:`wxeval.by_valid`).
    alignment: Literal["by_init", "by_valid"] = "by_init"
    #: Per-grid-point error maps (:mod:`wxeval.maps`), ``<model>.maps.nc``.
    maps: bool = False
    #: Zonal energy spectra (:mod:`wxeval.spectra`), ``<model>.spectra.nc``.
    spectra: bool = False

    @field_validator("lead_times", mode="before")
    @classmethod
    def _leads(cls, v):
        """A list (or one value) of durations, or a range mapping; numbers are hours."""
        if v is None or isinstance(v, LeadRange):
            return v
        if isinstance(v, dict):  # a range: named here, not as a member of the union
            try:
                return LeadRange.model_validate(v)
            except ValidationError as err:
                raise ValueError(first_problem(err)) from None
        items = v if isinstance(v, list) else [v]
        if not items:
            raise ValueError("an empty list selects no lead time; omit the key for all leads")
        out = []
        for i, x in enumerate(items):
            try:
                out.append(duration_text(x))
            except ValueError as err:
                raise ValueError(f"item {i}: {err}") from err
        return out

    @field_validator("variables")
    @classmethod
    def _variable_names(cls, v):
        return None if v is None else [check_name(x, "variable") for x in v]

    @field_validator("custom_regions")
    @classmethod
    def _region_names(cls, v):
        from wxeval.regions import LAND_REGIONS, STANDARD_REGIONS

        for name in v:
            check_name(name, "region name")
            if name in STANDARD_REGIONS or name in LAND_REGIONS or name == "all":
                raise ValueError(
                    f"region name {name!r} is a built-in region; give the box another name"
                )
        return v

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v):
        return None if v is None else [canonical_metric(m) for m in v]


class JobQueue(BaseModel):
    """dask-jobqueue settings: ``kind`` (slurm, pbs, …), ``jobs`` and the cluster's own keys."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str = "slurm"
    jobs: Int = Field(1, ge=1)


class Compute(_Strict):
    scheduler: str | None = (
        None  # threads (default) | synchronous | local-processes | jobqueue | tcp://…
    )
    workers: Int | None = Field(None, ge=1)
    memory_per_task: str = "768MiB"
    jobqueue: JobQueue | None = None

    @field_validator("memory_per_task")
    @classmethod
    def _memory(cls, v):
        try:
            size = parse_memory(v)
        except ValueError as err:
            raise ValueError(
                f"cannot read memory size {v!r}; write it like '768MiB' or '2GB'"
            ) from err
        if size <= 0:
            raise ValueError(f"memory size must be positive, got {v!r}")
        return v


class Output(_Strict):
    statistics: str | None = None  # where the statistics store lives (default: output folder)
    storage_options: dict[str, Any] = Field(default_factory=dict)


class Config(_Strict):
    truth: StoreConfig
    climatology: StoreConfig | None = None
    land_sea_mask: StoreConfig | None = None
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    compute: Compute = Field(default_factory=Compute)
    output: Output = Field(default_factory=Output)

    @field_validator("models")
    @classmethod
    def _model_names(cls, v):
        """Model names become ``OUTPUT/<name>.nc`` … and statistics folders."""
        folded: dict[str, str] = {}
        for name in v:
            check_name(name, "model name")
            if name.lower() in RESERVED:
                raise ValueError(
                    f"model name {name!r} is reserved (wxeval writes {name.lower()}.json "
                    "into the output folder)"
                )
            other = folded.setdefault(name.casefold(), name)
            if other != name:
                raise ValueError(
                    f"model names {other!r} and {name!r} differ only in case (their files "
                    "would be the same on case-insensitive file systems)"
                )
        return v

    def model(self, name: str) -> ModelConfig:
        """The named model; ``persistence`` and ``climatology`` are built in."""
        if name in self.models:
            return self.models[name]
        if name in ("persistence", "climatology"):
            return ModelConfig(kind=name)
        import difflib

        known = list(self.models) + [
            b for b in ("persistence", "climatology") if b not in self.models
        ]
        hint = difflib.get_close_matches(name, known, n=1)
        suffix = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"unknown model {name!r}{suffix} (configured: {', '.join(known)})")


def parse_memory(text: str) -> int:
    """``"768MiB"``, ``"2GB"``, ``"1.5GiB"`` → bytes."""
    units = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 2**10, "mi": 2**20, "gi": 2**30}
    t = text.strip().lower().rstrip("b")
    for suffix in sorted(units, key=len, reverse=True):
        if t.endswith(suffix):
            value = float(t[: -len(suffix)]) * units[suffix]
            break
    else:
        value = float(t)
    if not math.isfinite(value):
        raise ValueError(f"cannot read memory size {text!r}")
    return int(value)


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config; errors name the file and the offending key."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text (YAML) file") from err
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror or err})") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping, got {type(data).__name__}")
    _resolve_relative_paths(data, path.parent)
    return validate(data, source=str(path))


def first_problem(err: ValidationError) -> str:
    """The first problem of ``err`` as ``"<key>: <what is wrong>"`` (keys dotted). An unknown
    key comes first: a misspelt key also makes the intended one missing."""
    errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = ".".join(str(x) for x in first["loc"])
    if first["type"] == "extra_forbidden":
        msg = f"unknown key {loc!r}"
    elif first["type"] == "missing":
        msg = f"missing required key {loc!r}"
    else:
        text = first["msg"].removeprefix("Value error, ")
        msg = f"{loc}: {text}" if loc else text
    more = len(err.errors()) - 1
    return msg + (f" (+{more} more problem(s))" if more else "")


def validate(data: dict, source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {first_problem(err)}") from err


def _resolve_relative_paths(data: dict, base: Path) -> None:
    """Relative local paths in a config file are relative to the file's folder."""

    def fix(store: Any) -> None:
        if isinstance(store, dict) and isinstance(store.get("path"), str):
            p = store["path"]
            if "://" not in p and not Path(p).is_absolute():
                store["path"] = str((base / p).resolve())

    for key in ("truth", "climatology", "land_sea_mask"):
        fix(data.get(key))
    for model in (data.get("models") or {}).values():
        fix(model)
        if isinstance(model, dict):
            fix(model.get("truth"))
            fix(model.get("climatology"))
