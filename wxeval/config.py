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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from wxeval.align import parse_duration
from wxeval.metrics import canonical_metric


class ConfigError(ValueError):
    """The config cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(_Strict):
    path: str
    rename: dict[str, str] = Field(default_factory=dict)
    storage_options: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(_Strict):
    """A model's forecast store (``kind: zarr``) or a built-in baseline."""

    path: str | None = None
    kind: Literal["zarr", "persistence", "climatology"] = "zarr"
    label: str | None = None
    rename: dict[str, str] = Field(default_factory=dict)
    storage_options: dict[str, Any] = Field(default_factory=dict)
    truth: StoreConfig | None = None
    climatology: StoreConfig | None = None

    @field_validator("path")
    @classmethod
    def _path_given(cls, v):
        if v is not None and not str(v).strip():
            raise ValueError("path must not be empty")
        return v


class InitTimes(_Strict):
    start: str | None = None
    stop: str | None = None
    hours: list[int] | None = None

    @field_validator("start", "stop", mode="before")
    @classmethod
    def _as_text(cls, v):
        return None if v is None else str(v)

    @field_validator("hours")
    @classmethod
    def _hours(cls, v):
        if v is not None and any(not 0 <= h <= 23 for h in v):
            raise ValueError("hours must be between 0 and 23")
        return v


class LeadRange(_Strict):
    start: str = "0h"
    stop: str
    step: str

    @field_validator("start", "stop", "step", mode="before")
    @classmethod
    def _duration(cls, v):
        v = str(v)
        parse_duration(v)
        return v


class RegionBox(_Strict):
    lat: tuple[float, float]
    lon: tuple[float, float] = (0.0, 360.0)
    land: bool = False


class Evaluation(_Strict):
    init_times: InitTimes = Field(default_factory=InitTimes)
    lead_times: LeadRange | list[str] | None = None
    variables: list[str] | None = None
    levels: list[int] | None = None
    regions: Literal["all"] | list[str] = "all"
    custom_regions: dict[str, RegionBox] = Field(default_factory=dict)
    metrics: list[str] | None = None
    skipna: bool = False
    missing_truth: Literal["error", "pending", "skip"] = "error"

    @field_validator("lead_times", mode="before")
    @classmethod
    def _leads(cls, v):
        if isinstance(v, list):
            out = [str(x) for x in v]
            for x in out:
                parse_duration(x)
            return out
        return v

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v):
        return None if v is None else [canonical_metric(m) for m in v]


class JobQueue(BaseModel):
    """dask-jobqueue settings: ``kind`` (slurm, pbs, …), ``jobs`` and the cluster's own keys."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str = "slurm"
    jobs: int = 1


class Compute(_Strict):
    scheduler: str | None = (
        None  # threads (default) | synchronous | local-processes | jobqueue | tcp://…
    )
    workers: int | None = None
    memory_per_task: str = "768MiB"
    jobqueue: JobQueue | None = None


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

    def model(self, name: str) -> ModelConfig:
        """The named model; ``persistence`` and ``climatology`` are built in."""
        if name in self.models:
            return self.models[name]
        if name in ("persistence", "climatology"):
            return ModelConfig(kind=name)
        import difflib

        known = list(self.models) + ["persistence", "climatology"]
        hint = difflib.get_close_matches(name, known, n=1)
        suffix = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"unknown model {name!r}{suffix} (configured: {', '.join(known)})")


def parse_memory(text: str) -> int:
    """``"768MiB"``, ``"2GB"``, ``"1.5GiB"`` → bytes."""
    units = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 2**10, "mi": 2**20, "gi": 2**30}
    t = text.strip().lower().rstrip("b")
    for suffix in sorted(units, key=len, reverse=True):
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * units[suffix])
    return int(float(t))


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


def validate(data: dict, source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        if first["type"] == "extra_forbidden":
            msg = f"{source}: unknown key {loc!r}"
        elif first["type"] == "missing":
            msg = f"{source}: missing required key {loc!r}"
        else:
            msg = f"{source}: {loc}: {first['msg']}"
        more = len(err.errors()) - 1
        raise ConfigError(msg + (f" (+{more} more problem(s))" if more else "")) from err


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
