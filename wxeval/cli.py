"""The ``wxeval`` command line.

Exit codes: 0 success; 1 internal error (a bug: please report it, rerun with ``--debug``);
2 usage error (bad flags, invalid or unreadable config); 3 bad input data (a store that does not
fit the schema, missing variables/levels/valid times, grids that differ, an empty selection);
4 I/O failure (a store that cannot be opened, an output that cannot be written).
Errors print one line on stderr, without traceback unless ``--debug`` is given.

Importing this module imports typer only: the scientific stack (numpy, xarray, dask, zarr,
numba) is imported inside the commands, so ``wxeval --help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from wxeval import config as config_mod

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Score weather forecasts against ERA5 exactly like WeatherBench 2, in one lazy pass.",
)

EXIT_INTERNAL, EXIT_USAGE, EXIT_DATA, EXIT_IO = 1, 2, 3, 4
_DEBUG = {"on": False}


class UsageError(ValueError):
    """A flag that cannot work (an ``--output`` folder that is a file…): exit 2."""


def _loaded(module: str, name: str) -> type | None:
    """The exception class ``module.name`` if that module was imported (an error can only be
    one of its exceptions if it was), without importing it."""
    return getattr(sys.modules.get(module), name, None)


def _is(err: BaseException, *classes: tuple[str, str]) -> bool:
    return any(
        (cls := _loaded(module, name)) is not None and isinstance(err, cls)
        for module, name in classes
    )


def _exit_code(err: BaseException) -> int:
    if isinstance(err, UsageError) or _is(err, ("wxeval.config", "ConfigError")):
        return EXIT_USAGE
    if _is(err, ("wxeval.loaders", "LoadError")):
        return EXIT_IO
    if _is(
        err,
        ("wxeval.schema", "SchemaError"),
        ("wxeval.align", "AlignmentError"),
        ("wxeval.plan", "SelectionError"),
    ):
        return EXIT_DATA
    if isinstance(err, OSError):
        return EXIT_IO
    if isinstance(err, ValueError):
        return EXIT_DATA
    return EXIT_INTERNAL


def friendly_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as err:  # noqa: BLE001 - one line for users, traceback with --debug
            if _DEBUG["on"]:
                raise
            code = _exit_code(err)
            text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if code == EXIT_INTERNAL:
                text = f"internal error ({type(err).__name__}: {text}); rerun with --debug"
            elif (
                isinstance(err, OSError)
                and not _is(err, ("wxeval.loaders", "LoadError"))
                and err.filename
            ):
                text = f"{err.filename}: {err.strerror or text}"
            typer.echo(f"wxeval: error: {text}", err=True)
            raise typer.Exit(code) from None

    return wrapper


def _print_version(value: bool) -> None:
    if value:
        from wxeval import __version__

        typer.echo(f"wxeval {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """On a terminal, long commands show what they open, tasks done/total with a rate and an
    ETA, and retries of unreachable stores; nothing of it when stderr is not a terminal."""
    from wxeval.progress import LogHandler

    _DEBUG["on"] = debug
    handler = LogHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
    if not (debug or verbose):
        # Storage libraries log every retry with a traceback; wxeval reports the final error
        # in one line (see --debug for the details).
        for name in ("gcsfs", "fsspec", "aiohttp", "google", "urllib3", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _folder(
    path: Path, flag: str, *, file_suffix: str | None = None, is_file: bool = False
) -> Path:
    """``path`` given to a folder flag; a usage error (exit 2) when it, or a folder above it,
    exists as a file. A path ending in ``file_suffix`` (any path when ``is_file``) names a file
    to write: only the folders above it must be folders."""
    names_file = is_file or (file_suffix is not None and path.suffix == file_suffix)
    what = "a folder" + (f" or a path ending in {file_suffix}" if file_suffix else "")
    for p in list(path.parents) if names_file else [path, *path.parents]:
        if p.exists():
            if p.is_dir():
                break
            if p == path:
                raise UsageError(f"{flag} {path}: must be {what} (a file of that name exists)")
            raise UsageError(f"{flag} {path}: {p} is a file, not a folder")
    return path


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [x.strip() for x in text.split(",") if x.strip()]


def _model_names(cfg: config_mod.Config, model: str | None, all_models: bool) -> list[str]:
    """The models named by ``--model a,b`` or ``--all``; a misspelt name is a usage error
    (exit 2) with a suggestion."""
    from wxeval import config as config_mod
    names = list(cfg.models) if all_models else (_split(model) or [])
    if not names:
        raise config_mod.ConfigError("name a model with --model NAME (or --all)")
    for name in names:
        cfg.model(name)
    return names


def apply_overrides(
    cfg: config_mod.Config,
    *,
    start: str | None = None,
    stop: str | None = None,
    hours: str | None = None,
    leads: str | None = None,
    variables: str | None = None,
    levels: str | None = None,
    regions: str | None = None,
    metrics: str | None = None,
) -> config_mod.Config:
    """Flags override the config's selection; the result is validated like the file."""
    from wxeval import config as config_mod
    data = cfg.model_dump(mode="python")
    ev = data["evaluation"]
    for flag, key, text in (("--start", "start", start), ("--stop", "stop", stop)):
        if text is not None:
            try:
                ev["init_times"][key] = config_mod.init_time_text(text)
            except ValueError as err:
                raise config_mod.ConfigError(f"{flag}: {err}") from err
    if hours is not None:
        try:
            ev["init_times"]["hours"] = [int(h) for h in _split(hours)]
        except ValueError as err:
            raise config_mod.ConfigError(
                f"--hours: expected integers like 0,12: {hours!r}"
            ) from err
    if leads is not None:
        ev["lead_times"] = _parse_leads(leads)
    if variables is not None:
        ev["variables"] = _split(variables)
    if levels is not None:
        try:
            ev["levels"] = [int(x) for x in _split(levels)]
        except ValueError as err:
            raise config_mod.ConfigError(
                f"--levels: expected integers like 500,850: {levels!r}"
            ) from err
    if regions is not None:
        ev["regions"] = "all" if regions == "all" else _split(regions)
    if metrics is not None:
        ev["metrics"] = _split(metrics)
    return config_mod.validate(data, source="command line")


def _parse_leads(text: str) -> dict[str, str] | list[str]:
    """``--leads 0h:240h:24h`` (a range, stop inclusive) or ``24h,120h``; bare numbers are
    hours (``0:48:12`` = 0 h, 12 h … 48 h). A problem is a usage error naming ``--leads``."""
    from pydantic import ValidationError

    from wxeval import config as config_mod

    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError("write START:STOP:STEP like 0h:240h:24h")
            bounds = dict(zip(("start", "stop", "step"), parts, strict=True))
            return config_mod.LeadRange.model_validate(bounds).model_dump()
        items = _split(text)
        if not items:
            raise ValueError("name at least one lead time, like 24h,120h")
        return [config_mod.duration_text(x) for x in items]
    except ValidationError as err:
        raise config_mod.ConfigError(f"--leads: {config_mod.first_problem(err)}") from err
    except ValueError as err:
        raise config_mod.ConfigError(f"--leads: {err}") from err


# The selection flags of `score` and `check` (they override the config's `evaluation`).
StartOption = Annotated[str | None, typer.Option(help="First init time (inclusive, UTC).")]
StopOption = Annotated[
    str | None, typer.Option(help="Last init time (inclusive; a date means the whole day).")
]
HoursOption = Annotated[str | None, typer.Option(help="Init hours, e.g. 0,12.")]
LeadsOption = Annotated[
    str | None, typer.Option(help="Lead times: 0h:240h:24h or 24h,120h (a bare number is hours).")
]
VariablesOption = Annotated[str | None, typer.Option(help="Variables, comma-separated.")]
LevelsOption = Annotated[str | None, typer.Option(help="Pressure levels (hPa), comma-separated.")]
RegionsOption = Annotated[str | None, typer.Option(help="Regions, comma-separated, or 'all'.")]
MetricsOption = Annotated[str | None, typer.Option(help="Metrics, comma-separated.")]


@app.command()
@friendly_errors
def score(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for results.")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model name(s), comma-separated.")
    ] = None,
    all_models: Annotated[
        bool, typer.Option("--all", help="Score every configured model.")
    ] = False,
    start: StartOption = None,
    stop: StopOption = None,
    hours: HoursOption = None,
    leads: LeadsOption = None,
    variables: VariablesOption = None,
    levels: LevelsOption = None,
    regions: RegionsOption = None,
    metrics: MetricsOption = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="threads (default), synchronous, local-processes, jobqueue, "
            "or a dask scheduler address."
        ),
    ] = None,
    maps: Annotated[
        bool, typer.Option("--maps", help="Also error maps: NAME.maps.nc (evaluation.maps).")
    ] = False,
    spectra: Annotated[
        bool, typer.Option("--spectra", help="Also zonal energy spectra: NAME.spectra.nc "
                           "(evaluation.spectra).")
    ] = False,
    by_valid: Annotated[
        bool,
        typer.Option("--by-valid", help="--start/--stop/--hours select valid times "
                     "(evaluation.alignment: by_valid)."),
    ] = False,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="Also write tables split by season, month and/or init_hour (comma-separated): "
            "NAME.by-season.nc/.csv, …",
        ),
    ] = None,
) -> None:
    """Score model(s): writes OUTPUT/NAME.nc, NAME.csv and NAME.json, and per-init statistics."""
    from wxeval import config as config_mod
    from wxeval.api import score as run_score

    _folder(output, "--output")
    cfg = apply_overrides(config_mod.load_config(config), start=start, stop=stop, hours=hours,
                          leads=leads, variables=variables, levels=levels, regions=regions,
                          metrics=metrics)
    if by_valid or maps or spectra:
        data = cfg.model_dump(mode="python")
        if spectra:
            data["evaluation"]["spectra"] = True
        if by_valid:
            data["evaluation"]["alignment"] = "by_valid"
        if maps:
            data["evaluation"]["maps"] = True
        cfg = config_mod.validate(data, source="command line")
    names = _model_names(cfg, model, all_models)
    from wxeval import splits

    by_splits = _split(by) or []
    for split in by_splits:
        if split not in splits.SPLITS:
            raise UsageError(f"--by {split!r}: choose one of {', '.join(splits.SPLITS)}")
    report = run_score(cfg, names, output, scheduler=scheduler, by=by_splits)
    for name, files in report.outputs.items():
        typer.echo(f"{name}: wrote {', '.join(files)}")
    typer.echo(
        f"computed {report.computed_fields} fields, reused {report.reused_fields} from the "
        "statistics store"
    )
    for name, waiting in report.pending.items():
        typer.echo(f"{name}: {len(waiting)} init(s) pending (truth not yet available)")
    for name, left_out in report.skipped.items():
        typer.echo(f"{name}: {len(left_out)} init(s) skipped (a hole in the truth; see the log)")


@app.command()
@friendly_errors
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the demo.")] = Path(
        "wxeval-demo"
    ),
) -> None:
    """Write a small synthetic WB2-layout archive and score every model in it."""
    from wxeval.demo import run_demo

    run_demo(_folder(output, "--output"), echo=typer.echo)


@app.command()
@friendly_errors
def scorecard(
    results: Annotated[Path, typer.Option("--results", "-r", help="Folder `wxeval score` wrote.")],
    models: Annotated[
        str, typer.Option("--models", "-m", help="Models to compare, comma-separated.")
    ],
    baseline: Annotated[str, typer.Option("--baseline", "-b", help="The reference model.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML report to write.")] = Path(
        "scorecard.html"
    ),
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Config, for labels.")
    ] = None,
    metrics: Annotated[str | None, typer.Option(help="Metrics, comma-separated.")] = None,
    test: Annotated[str, typer.Option(help="Test: ar2bc, ar2 (Geer 2016) or naive.")] = "ar2bc",
    preset: Annotated[
        str | None,
        typer.Option(help="Cards of a preset: headline (WeatherBench 2's headline scores)."),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="Also one report per season, month or init_hour (OUTPUT's stem.LABEL.html), "
            "with a selector on every page.",
        ),
    ] = None,
) -> None:
    """Compare models against a baseline from saved results; write one self-contained HTML."""
    if not results.is_dir():
        what = "is a file" if results.exists() else "does not exist"
        raise UsageError(
            f"--results {results}: {what}; give the folder that `wxeval score --output` wrote"
        )
    if output.is_dir():
        raise UsageError(f"--output {output}: is a folder; give the HTML file to write")
    _folder(output, "--output", is_file=True)
    from wxeval.scorecard.compare import TESTS
    from wxeval.scorecard.report import write_report

    if test not in TESTS:
        raise UsageError(f"--test {test!r}: choose one of {', '.join(TESTS)}")
    from wxeval.scorecard.presets import PRESETS

    if preset is not None and preset not in PRESETS:
        raise UsageError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    if preset is not None and metrics:
        raise UsageError("--preset and --metrics: give one (a preset fixes its metrics)")
    from wxeval.splits import SPLITS

    if by is not None and by not in SPLITS:
        raise UsageError(f"--by {by!r}: choose one of {', '.join(SPLITS)}")

    path = write_report(
        results,
        _split(models) or [],
        baseline,
        output,
        config=config,
        metrics=_split(metrics),
        method=test,
        preset=preset,
        by=by,
    )
    typer.echo(f"scorecard: {path}")


@app.command()
@friendly_errors
def check(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config file.")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model name(s), comma-separated.")
    ] = None,
    all_models: Annotated[
        bool, typer.Option("--all", help="Check every configured model.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write check.json here.")
    ] = None,
    start: StartOption = None,
    stop: StopOption = None,
    hours: HoursOption = None,
    leads: LeadsOption = None,
    variables: VariablesOption = None,
    levels: LevelsOption = None,
    regions: RegionsOption = None,
) -> None:
    """Pre-flight check (metadata and a small sample): exits 3 when scores would be wrong.
    The selection flags are those of `score`: check what that command would read."""
    from wxeval import config as config_mod
    from wxeval.check import run_check_command

    if output is not None:
        _folder(output, "--output", file_suffix=".json")
    cfg = apply_overrides(config_mod.load_config(config), start=start, stop=stop, hours=hours,
                          leads=leads, variables=variables, levels=levels, regions=regions)
    names = _model_names(cfg, model, all_models)
    code = run_check_command(cfg, names, output=output, echo=typer.echo)
    if code:
        raise typer.Exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
