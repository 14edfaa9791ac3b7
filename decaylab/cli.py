"""The ``decaylab`` command line: submit, follow, list, compare and export runs.

Every command talks to the API through :class:`decaylab.Client` (``--url``/``DECAYLAB_URL``,
``--token``/``DECAYLAB_API_TOKEN``); human output by default, ``--json`` for scripts."""

import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import pandas as pd

from decaylab.client import (
    DEFAULT_URL,
    ApiError,
    Client,
    DecaylabError,
    NotFound,
    Run,
    Scope,
    Sweep,
    Unauthorized,
    format_error,
)
from decaylab.views import FINISHED, STATUSES, VIEWS

# Exit codes (also in `decaylab --help`).
EXIT_OK = 0
EXIT_RUN_FAILED = 1  # a run waited for ended failed or cancelled
EXIT_USAGE = 2  # bad command line (click's own code)
EXIT_REFUSED = 3  # the API refused the request (invalid spec or parameter, conflict, token)
EXIT_NOT_FOUND = 4  # no such run, tolerance or layer
EXIT_UNREACHABLE = 5  # the API could not be reached, or failed

EXIT_CODES_HELP = f"""Exit codes: {EXIT_OK} success; {EXIT_RUN_FAILED} a run waited for did not
succeed; {EXIT_USAGE} bad command line; {EXIT_REFUSED} the API refused the request (invalid spec
or value, conflict, token); {EXIT_NOT_FOUND} no such run, tolerance or layer;
{EXIT_UNREACHABLE} the API could not be reached or failed."""

F = TypeVar("F", bound=Callable[..., Any])


class CommandFailed(click.ClickException):
    """A client error as a message on stderr and the exit code that says what kind it was."""

    def __init__(self, error: DecaylabError) -> None:
        detail = getattr(error, "detail", None)
        if isinstance(error, ApiError) and isinstance(detail, list) and len(detail) > 1:
            # Every error of a refusal, one a line, positions 0-based as the API's loc.
            lines = [f"HTTP {error.status_code}: {len(detail)} errors"]
            super().__init__("\n  ".join(lines + [format_error(e) for e in detail]))
        else:
            message = str(error)
            if isinstance(error, Unauthorized):
                message = f"{message} (set DECAYLAB_API_TOKEN or pass --token)"
            super().__init__(message)
        if isinstance(error, NotFound):
            self.exit_code = EXIT_NOT_FOUND
        elif isinstance(error, ApiError):
            self.exit_code = EXIT_REFUSED
        else:
            self.exit_code = EXIT_UNREACHABLE


# The group's own options, which a user may also type after the command (decaylab ls --token X).
GLOBAL_OPTIONS = ("--url", "--token")


def global_options_first(args: list[str]) -> list[str]:
    """``args`` with every --url/--token (and its value) moved before the command."""
    front: list[str] = []
    rest: list[str] = []
    words = iter(args)
    for word in words:
        if word == "--":
            rest += [word, *words]
            break
        name = word.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            front.append(word)
            if "=" not in word:
                front.append(next(words, ""))
        else:
            rest.append(word)
    return front + rest


class Commands(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = global_options_first(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DecaylabError as error:
            raise CommandFailed(error) from error


class ListOf(click.ParamType):
    """A comma-separated list, e.g. ``--hidden-sizes 512,512,512``."""

    def __init__(self, item: type[int] | type[float]) -> None:
        self.item = item
        self.name = f"{item.__name__},…"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, list):
            return value
        try:
            return [self.item(part) for part in str(value).split(",")]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of {self.item.__name__}s", param)


class ScopeType(click.ParamType):
    name = "all|last2|N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value in ("all", "last2") or isinstance(value, int):
            return value
        if str(value).isdigit():
            return int(value)
        self.fail(f"{value!r} is not all, last2 or a layer index", param)


@dataclass(frozen=True)
class SpecField:
    """A field of the run spec (server/core/schemas.py RunSpec) and its ``submit`` flag."""

    name: str
    type: click.ParamType
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


# The run spec's fields, in the API's order; tests check them against the server's RunSpec.
# Bool fields are on/off flags; every other flag may be repeated (one run per value).
SPEC_FIELDS = (
    SpecField("name", click.STRING, "label of the run"),
    SpecField("weight_decay", click.FLOAT, "weight decay (L2), >= 0"),
    SpecField("epochs", click.INT, "epochs to train, 1..1000"),
    SpecField("tolerances", ListOf(float), "comma-separated tolerances, e.g. 0,0.001,0.01,0.1"),
    SpecField("learning_rate", click.FLOAT, "learning rate, > 0"),
    SpecField("momentum", click.FLOAT, "momentum (Adam's beta1), 0 <= m < 1"),
    SpecField("batch_size", click.INT, "batch size, 1..8192"),
    SpecField("hidden_sizes", ListOf(int), "comma-separated hidden layer sizes, e.g. 512,512,512"),
    SpecField("optimizer", click.Choice(["sgd", "adam", "adamw"]), "optimizer"),
    SpecField("dataset", click.Choice(["cifar10", "synthetic"]), "data set"),
    SpecField("train_size", click.INT, "train on the first N samples"),
    SpecField("test_size", click.INT, "test on the first N samples"),
    SpecField("seed", click.INT, "seed of the model's init and the shuffling"),
    SpecField("basis", click.Choice(["previous", "next"]), "reference weight of the tolerance"),
    SpecField("include_biases", click.BOOL, "also measure the bias vectors"),
    SpecField("keep_snapshots", click.BOOL, "keep every epoch's weights for download"),
    SpecField("dtype", click.Choice(["float32", "float64"]), "precision of weights and math"),
    SpecField("causes", click.BOOL, "count why each constant weight stayed constant"),
    SpecField("autocast", click.Choice(["bfloat16"]), "bfloat16 matmuls over float32 weights"),
)


def spec_options(command: F) -> F:
    """One ``submit`` flag per spec field, named after it (``--train-size`` for train_size)."""
    for spec_field in reversed(SPEC_FIELDS):
        if spec_field.type is click.BOOL:
            no_flag = "--no-" + spec_field.flag[2:]
            option = click.option(
                f"{spec_field.flag}/{no_flag}", spec_field.name, default=None, help=spec_field.help
            )
        else:
            option = click.option(
                spec_field.flag,
                spec_field.name,
                type=spec_field.type,
                multiple=True,
                help=spec_field.help,
            )
        command = option(command)
    return command


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")(
        command
    )


def run_ids(command: F) -> F:
    return click.argument("runs", nargs=-1, required=True, type=click.IntRange(min=1))(command)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def grid(base: dict[str, Any], flags: dict[str, Any]) -> list[dict[str, Any]]:
    """One spec per combination of the repeated flags' values, over ``base``.

    A run of a grid without a name is named after the values that vary (weight_decay=0.001)."""
    varied = {name: values for name, values in flags.items() if values not in ((), None)}
    repeated = [name for name, values in varied.items() if isinstance(values, tuple)]
    choices = [
        varied[name] if isinstance(varied[name], tuple) else [varied[name]] for name in varied
    ]
    specs = []
    for values in itertools.product(*choices):
        spec = base | dict(zip(varied, values, strict=True))
        several = [name for name in repeated if len(varied[name]) > 1]
        if several and "name" not in spec:
            spec["name"] = " ".join(f"{name}={_text(spec[name])}" for name in several)
        specs.append(spec)
    return specs


def _text(value: Any) -> str:
    """A flag's value as it would be typed: 0 rather than 0.0, lists comma-separated."""
    if isinstance(value, list):
        return ",".join(map(_text, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def read_spec_file(path: Path | None) -> list[dict[str, Any]]:
    """``--spec FILE.json``: one spec (an object) or several (a list of objects)."""
    if path is None:
        return [{}]
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise click.BadParameter(str(error), param_hint="--spec") from error
    specs = loaded if isinstance(loaded, list) else [loaded]
    if not all(isinstance(spec, dict) for spec in specs):
        raise click.BadParameter("must hold a JSON object or a list of them", param_hint="--spec")
    return specs


def run_line(run: Run) -> str:
    epochs = run.spec.get("epochs", "?")
    line = f"run {run.id}  {run.status:<9}  {run.epochs_done}/{epochs} epochs  {run.name or ''}"
    return line + (f"  error: {run.error}" if run.error else "")


def finish(runs: Sequence[Run], as_json: bool) -> None:
    """Print the runs that were waited for; exit 1 unless every one succeeded."""
    if as_json:
        echo_json([run.json for run in runs])
    else:
        for run in runs:
            click.echo(run_line(run))
    if any(run.status != "succeeded" for run in runs):
        click.get_current_context().exit(EXIT_RUN_FAILED)


@click.group(cls=Commands, epilog=EXIT_CODES_HELP)
@click.option(
    "--url",
    envvar="DECAYLAB_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The API (env DECAYLAB_URL).",
)
@click.option("--token", envvar="DECAYLAB_API_TOKEN", help="Bearer token (env DECAYLAB_API_TOKEN).")
@click.version_option(package_name="decaylab")
@click.pass_context
def cli(ctx: click.Context, url: str, token: str | None) -> None:
    """Submit training runs to a decaylab API, follow them, read and export their analysis.

    --url and --token may come before or after the command."""
    ctx.obj = ctx.with_resource(Client(url, token))


pass_client = click.make_pass_decorator(Client)


@cli.command(epilog=EXIT_CODES_HELP)
@spec_options
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON file with a spec (or a list of specs); flags override its fields.",
)
@click.option("--wait", is_flag=True, help="Follow the runs until they end (progress bars).")
@json_option
@pass_client
def submit(client: Client, spec_file: Path | None, wait: bool, as_json: bool, **flags: Any) -> None:
    """Submit runs: every flag is a field of the run spec; a repeated flag submits one run per
    value (all combinations when several are repeated).

    \b
    decaylab submit --dataset synthetic --epochs 5 --weight-decay 0 --weight-decay 0.001 --wait
    """
    specs = [spec for base in read_spec_file(spec_file) for spec in grid(base, flags)]
    runs = [client.submit(spec) for spec in specs]
    if wait:
        finish(client.wait(runs, progress=True), as_json)
    elif as_json:
        echo_json([run.json for run in runs])
    else:
        for run in runs:
            click.echo(f"submitted {run_line(run)}")


@cli.command(epilog=EXIT_CODES_HELP)
@run_ids
@json_option
@pass_client
def watch(client: Client, runs: tuple[int, ...], as_json: bool) -> None:
    """Progress bars of RUNS until every one has ended; exit 1 unless all succeeded."""
    finish(client.wait(runs, progress=True), as_json)


@cli.command(epilog=EXIT_CODES_HELP)
@click.option(
    "--status",
    type=click.Choice(STATUSES),
    help="Only runs in this status.",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
@pass_client
def ls(client: Client, status: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    runs = client.list_runs(status=status, limit=limit)
    if as_json:
        echo_json([run.json for run in runs])
        return
    if not runs:
        click.echo("no runs")
        return
    header = ["id", "status", "epochs", "weight_decay", "dataset", "created", "name"]
    rows = [
        [
            str(run.id),
            run.status,
            f"{run.epochs_done}/{run.spec['epochs']}",
            _text(run.spec["weight_decay"]),
            run.spec["dataset"],
            f"{run.created_at:%Y-%m-%d %H:%M:%S}",
            run.name or "",
        ]
        for run in runs
    ]
    click.echo(text_table(header, rows, numeric={"id", "epochs", "weight_decay"}))


def text_table(header: list[str], rows: list[list[str]], numeric: set[str]) -> str:
    """Columns as wide as their widest cell: numbers right-aligned, text left-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for cells in (header, *rows):
        aligned = [
            cell.rjust(width) if name in numeric else cell.ljust(width)
            for name, cell, width in zip(header, cells, widths, strict=True)
        ]
        lines.append("  ".join(aligned).rstrip())
    return "\n".join(lines)


def key_values(pairs: dict[str, Any], indent: str = "", width: int = 0) -> None:
    """``key  value`` lines, the values aligned and written as JSON writes them (a string
    bare): true, null and 0.001 as ``--json`` prints them."""
    width = width or max(map(len, pairs), default=0)
    for key, value in pairs.items():
        text = value if isinstance(value, str) else json.dumps(value)
        click.echo(f"{indent}{key:<{width}}  {text}")


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("run", type=click.IntRange(min=1))
@json_option
@pass_client
def show(client: Client, run: int, as_json: bool) -> None:
    """One run: status, progress, errors and its whole spec."""
    found = client.get(run)
    if as_json:
        echo_json(found.json)
        return
    fields = {k: v for k, v in found.json.items() if k != "spec" and v is not None}
    width = max(map(len, [*fields, *found.spec]))
    key_values(fields, width=width)
    click.echo("spec:")
    key_values(found.spec, "  ", width)


@cli.command(epilog=EXIT_CODES_HELP)
@run_ids
@json_option
@pass_client
def cancel(client: Client, runs: tuple[int, ...], as_json: bool) -> None:
    """Cancel RUNS: a queued run at once, a running one at its next batch."""
    cancelled = [client.cancel(run) for run in runs]
    if as_json:
        echo_json([run.json for run in cancelled])
        return
    for run in cancelled:
        pending = " (cancel requested)" if run.cancel_requested else ""
        click.echo(run_line(run) + pending)


@cli.command(epilog=EXIT_CODES_HELP)
@run_ids
@json_option
@pass_client
def rm(client: Client, runs: tuple[int, ...], as_json: bool) -> None:
    """Delete RUNS (not while running: cancel first), with their results and files."""
    for run in runs:
        client.delete(run)
    if as_json:
        echo_json({"deleted": list(runs)})
    else:
        click.echo(f"deleted {_runs_text(runs)}")


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("runs", nargs=-1, required=True, type=click.IntRange(min=1))
@click.option("--tol", type=float, help="One tolerance (default: every one the runs share).")
@click.option(
    "--scope",
    type=ScopeType(),
    default="all",
    show_default=True,
    help="Mean of all layers, of the last two, or one layer's index.",
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the figure to this file instead of printing a table.",
)
@json_option
@pass_client
def compare(
    client: Client,
    runs: tuple[int, ...],
    tol: float | None,
    scope: Scope,
    png: Path | None,
    as_json: bool,
) -> None:
    """% of weights constant per epoch, RUNS side by side."""
    if png is not None:
        client.compare_png(runs, tol=tol, scope=scope).save(png)
        click.echo(f"wrote {png}")
        return
    table = client.compare(runs, tol=tol, scope=scope)
    if as_json:
        click.echo(table.to_json(orient="records", indent=2))
        return
    labels = {
        row.run_id: f"run {row.run_id} (wd {row.weight_decay:g})"
        for row in table.drop_duplicates("run_id").itertuples()
    }
    for tolerance, rows in table.groupby("tolerance", sort=True):
        click.echo(f"tolerance {tolerance:g}: % of weights constant ({_scope_text(scope)})")
        # In the order RUNS were given (pivot sorts them).
        wide = rows.pivot(index="epoch", columns="run_id", values="percent")[list(labels)]
        click.echo(wide.rename(columns=labels).to_string(float_format="{:.4f}".format) + "\n")


def _scope_text(scope: Scope) -> str:
    return {"all": "mean of all layers", "last2": "mean of the last two layers"}.get(
        str(scope), f"layer {scope}"
    )


# A run's views and a sweep's, as the API's registry declares them (decaylab/views.py).
RUN_VIEWS = [name for name, v in VIEWS.items() if v.subject == "run"]
SWEEP_VIEWS = [name.removeprefix("sweep_") for name, v in VIEWS.items() if v.subject == "sweep"]


def _params(pairs: Iterable[str]) -> dict[str, Any]:
    """``NAME=VALUE`` options as a view's query (the API checks names and values)."""
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--param")
        params[name] = value
    return params


def export_options(views: list[str], summary: Callable[[str], str]) -> Callable[[F], F]:
    """What every export takes: a view of ``views``, the table's format and file, and any of
    the view's query parameters as -p NAME=VALUE."""
    options = [
        click.option(
            "--view",
            type=click.Choice(views),
            default="constancy",
            show_default=True,
            help="; ".join(f"{name}: {summary(name)}" for name in views) + ".",
        ),
        click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv"),
        click.option(
            "-p",
            "--param",
            "params",
            multiple=True,
            metavar="NAME=VALUE",
            help="A query parameter of the view, e.g. -p tol=0.001 (repeat for several).",
        ),
        click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, writable=True, path_type=Path),
            required=True,
            help="File to write.",
        ),
    ]

    def apply(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("runs", nargs=-1, required=True, type=click.IntRange(min=1))
@export_options(RUN_VIEWS, lambda name: VIEWS[name].summary)
@pass_client
def export(
    client: Client,
    runs: tuple[int, ...],
    fmt: str,
    view: str,
    params: tuple[str, ...],
    output: Path,
) -> None:
    """Write RUNS' analysis as one tidy table (a row per value, a run_id column)."""
    query = _params(params)
    table = pd.concat([client.view(view, run, **query) for run in runs], ignore_index=True)
    _write(table, fmt, output)
    click.echo(f"wrote {len(table)} rows of {view} of {_runs_text(runs)} to {output}")


def _runs_text(runs: Iterable[int]) -> str:
    return ", ".join(f"run {run}" for run in runs)


# --- sweeps -------------------------------------------------------------------------------

SPEC_BY_NAME = {spec_field.name: spec_field for spec_field in SPEC_FIELDS}
# A list field's values (hidden_sizes, tolerances) are lists: separated by semicolons.
LIST_SEPARATOR = ";"


class GridType(click.ParamType):
    """``FIELD=V1,V2,…`` (a list field's values separated by semicolons: ``32;64,64``), each
    value read as the field's ``submit`` flag reads it."""

    name = "FIELD=V1,V2"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        field_name, equals, values = str(value).partition("=")
        field_name = field_name.strip().replace("-", "_")
        if not equals or not values.strip():
            self.fail(f"{value!r} is not FIELD=V1,V2,…", param)
        spec_field = SPEC_BY_NAME.get(field_name)
        if spec_field is None or field_name == "name":
            known = ", ".join(f for f in SPEC_BY_NAME if f != "name")
            self.fail(f"{field_name!r} is not a run spec field a grid can vary ({known})", param)
        separator = LIST_SEPARATOR if isinstance(spec_field.type, ListOf) else ","
        parsed = []
        for part in values.split(separator):
            try:
                parsed.append(spec_field.type.convert(part.strip(), param, ctx))
            except click.BadParameter:
                # Sent as typed: the API's one answer names it beside every other error.
                parsed.append(part.strip())
        return field_name, parsed


def single_values(flags: dict[str, Any], hint: str) -> dict[str, Any]:
    """The spec flags given, each at most once (a sweep's base); ``hint`` says what to do
    instead of repeating one (``{name}``: the field)."""
    base: dict[str, Any] = {}
    for name, values in flags.items():
        if values in ((), None):
            continue
        if isinstance(values, tuple):
            if len(values) > 1:
                flag = SPEC_BY_NAME[name].flag
                raise click.BadParameter(
                    f"given {len(values)} times: {hint.format(name=name)}", param_hint=flag
                )
            values = values[0]
        base[name] = values
    return base


def sweep_line(sweep: Sweep) -> str:
    progress = sweep.progress
    finished = sum(progress["by_status"].get(s, 0) for s in FINISHED)
    grid = " × ".join(f"{field}={_text(values)}" for field, values in sweep.grid.items())
    return (
        f"sweep {sweep.id}  {sweep.status:<9}  {finished}/{progress['runs']} runs  "
        f"{progress['epochs_done']}/{progress['epochs_total']} epochs  {grid}  {sweep.name or ''}"
    ).rstrip()


@cli.group(epilog=EXIT_CODES_HELP)
def sweep() -> None:
    """Sweeps: a grid of runs as one experiment, averaged over seeds with 95% intervals."""


@sweep.command("submit", epilog=EXIT_CODES_HELP)
@click.option(
    "--grid",
    "grid_flags",
    type=GridType(),
    multiple=True,
    required=True,
    help="A spec field and its values, e.g. --grid weight_decay=0,0.001 --grid seed=0,1,2 "
    "(a list field's values separated by ';': --grid hidden_sizes='32;64,64').",
)
@click.option("--priority", type=int, default=0, show_default=True, help="Higher trains first.")
@spec_options
@click.option("--wait", is_flag=True, help="Follow the sweep's runs until they end.")
@json_option
@pass_client
def sweep_submit(
    client: Client,
    grid_flags: tuple[tuple[str, list[Any]], ...],
    priority: int,
    wait: bool,
    as_json: bool,
    **flags: Any,
) -> None:
    """Submit a sweep: the spec flags make the base (each given once; --name names the sweep),
    the --grid flags its grid; the last --grid varies fastest.

    \b
    decaylab sweep submit --grid weight_decay=0,0.001 --grid seed=0,1,2 \\
        --dataset synthetic --epochs 5 --wait
    """
    grid: dict[str, list[Any]] = {}
    for field_name, values in grid_flags:
        if field_name in grid:
            raise click.BadParameter(f"{field_name} is given twice", param_hint="--grid")
        grid[field_name] = values
    base = single_values(flags, "vary it with --grid {name}=…")
    name = base.pop("name", None)
    submitted = client.submit_sweep(base, grid, name=name, priority=priority)
    if wait:
        # The id first, to come back to the sweep later (on stderr under --json).
        click.echo(f"submitted {sweep_line(submitted)}", err=as_json)
        finish(client.wait(submitted, progress=True), as_json)
    elif as_json:
        echo_json(submitted.json)
    else:
        click.echo(f"submitted {sweep_line(submitted)}")
        for run in submitted.runs:
            click.echo(f"  {run_line(run)}")


@sweep.command("ls", epilog=EXIT_CODES_HELP)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
@pass_client
def sweep_ls(client: Client, limit: int, as_json: bool) -> None:
    """List sweeps, newest first."""
    found = client.sweeps(limit=limit)
    if as_json:
        echo_json([s.json for s in found])
        return
    for s in found:
        click.echo(sweep_line(s))
    if not found:
        click.echo("no sweeps")


@sweep.command("show", epilog=EXIT_CODES_HELP)
@click.argument("sweep_id", metavar="SWEEP", type=click.IntRange(min=1))
@json_option
@pass_client
def sweep_show(client: Client, sweep_id: int, as_json: bool) -> None:
    """One sweep: status, progress, base spec, grid and its runs."""
    found = client.sweep(sweep_id)
    if as_json:
        echo_json(found.json)
        return
    click.echo(sweep_line(found))
    width = max(map(len, ["priority", *found.base, *found.grid]))
    key_values({"priority": found.priority}, width=width + 2)
    click.echo("base:")
    key_values(found.base, "  ", width)
    click.echo("grid:")
    key_values(found.grid, "  ", width)
    click.echo("runs:")
    for run in found.runs:
        click.echo(f"  {run_line(run)}")


@sweep.command("cancel", epilog=EXIT_CODES_HELP)
@click.argument("sweep_id", metavar="SWEEP", type=click.IntRange(min=1))
@json_option
@pass_client
def sweep_cancel(client: Client, sweep_id: int, as_json: bool) -> None:
    """Cancel a sweep's unfinished runs: queued ones at once, running ones at their next batch."""
    cancelled = client.cancel_sweep(sweep_id)
    if as_json:
        echo_json(cancelled.json)
    else:
        click.echo(sweep_line(cancelled))


@sweep.command("rm", epilog=EXIT_CODES_HELP)
@click.argument("sweep_id", metavar="SWEEP", type=click.IntRange(min=1))
@json_option
@pass_client
def sweep_rm(client: Client, sweep_id: int, as_json: bool) -> None:
    """Delete a sweep (not while a run of it runs: cancel first) with its runs and files."""
    client.delete_sweep(sweep_id)
    if as_json:
        echo_json({"deleted": sweep_id})
    else:
        click.echo(f"deleted sweep {sweep_id}")


@sweep.command("export", epilog=EXIT_CODES_HELP)
@click.argument("sweep_id", metavar="SWEEP", type=click.IntRange(min=1))
@export_options(SWEEP_VIEWS, lambda name: VIEWS[f"sweep_{name}"].summary)
@click.option("--tol", type=float, help="One tolerance (default: every one the runs share).")
@click.option(
    "--scope",
    help="constancy: all (default), last2 or a layer index; summary: means (default), layers, "
    "all, last2 or a layer index.",
)
@click.option("--by", help="Comma-separated spec fields that make the groups (default: the "
              "grid's fields but seed; '' for one group).")  # fmt: skip
@pass_client
def sweep_export(
    client: Client,
    sweep_id: int,
    view: str,
    fmt: str,
    tol: float | None,
    scope: str | None,
    by: str | None,
    params: tuple[str, ...],
    output: Path,
) -> None:
    """Write a sweep view as one tidy table (a row per group and epoch, a column per field),
    e.g. --view difference -p a=0 -p b=1 --tol 0."""
    name = f"sweep_{view}"
    given = {"tol": tol, "scope": None if scope is None else _scope(scope), "by": by}
    query = {k: v for k, v in given.items() if k in VIEWS[name].parameters} | _params(params)
    table = client.view(name, sweep_id, **query)
    _write(table, fmt, output)
    click.echo(f"wrote {len(table)} rows of {view} of sweep {sweep_id} to {output}")


def _scope(text: str) -> Any:
    return int(text) if text.isdigit() else text


def _write(table: pd.DataFrame, fmt: str, output: Path) -> None:
    if fmt == "parquet":
        try:
            table.to_parquet(output, index=False)
        except ImportError as error:
            raise click.UsageError(
                f"--format parquet needs pyarrow: pip install 'decaylab[parquet]' ({error})"
            ) from error
    else:
        table.to_csv(output, index=False)


# --- the write-up's claims re-checked ---

# The original experiment's two runs (server/core/experiment.py holds the published numbers);
# every other spec field's default is the original's.
REPRODUCE_DECAYS = [0, 0.001]
REPRODUCE_SEEDS = 5
VARIED_BY_REPRODUCE = ("weight_decay", "seed")


@cli.command(epilog=EXIT_CODES_HELP)
@click.option(
    "--seeds",
    type=click.IntRange(1, 100),
    default=REPRODUCE_SEEDS,
    show_default=True,
    help="Seeds 0..N-1: one run per seed and weight decay.",
)
@click.option(
    "--sweep",
    "sweep_id",
    type=click.IntRange(min=1),
    help="Reuse this sweep (weight decay 0 and 0.001 × seeds) instead of submitting one.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, writable=True, path_type=Path),
    default=Path("reproduction"),
    show_default=True,
    help="Folder for report.md and its figures (PNG).",
)
@click.option("--priority", type=int, default=0, show_default=True, help="Higher trains first.")
@spec_options
@json_option
@pass_client
def reproduce(
    client: Client,
    seeds: int,
    sweep_id: int | None,
    out: Path,
    priority: int,
    as_json: bool,
    **flags: Any,
) -> None:
    """Re-check the write-up's claims: submit the original experiment as a sweep (weight decay
    0 and 0.001 × --seeds; the spec flags, each once, change the rest, e.g. --epochs, --dataset,
    --train-size, --test-size), follow it, and write --out/report.md with its figures: per claim
    the published value, the mean over the seeds with its 95% interval, and a verdict.

    \b
    decaylab reproduce --dataset synthetic --epochs 10 --train-size 2000 --test-size 1000 \\
        --hidden-sizes 128,128,128 --seeds 3 --out report
    """
    base = single_values(flags, "reproduce takes one value of each spec flag")
    if sweep_id is not None:
        if base:
            raise click.UsageError("--sweep reuses a sweep as it is: drop the spec flags")
        found = client.sweep(sweep_id)
    else:
        varied = [SPEC_BY_NAME[f].flag for f in VARIED_BY_REPRODUCE if f in base]
        if varied:
            drop = ", ".join(varied)
            raise click.UsageError(
                f"reproduce sets weight decay 0 and 0.001 × --seeds: drop {drop}"
            )
        name = base.pop("name", "reproduce")
        grid = {"weight_decay": REPRODUCE_DECAYS, "seed": list(range(seeds))}
        found = client.submit_sweep(base, grid, name=name, priority=priority)
        click.echo(f"submitted {sweep_line(found)}", err=as_json)
    if not found.finished:
        runs = client.wait(found, progress=True)
        failed = [run for run in runs if run.status != "succeeded"]
        if failed:
            for run in failed:
                click.echo(run_line(run), err=True)
            click.echo(f"sweep {found.id}: not every run succeeded; no report", err=True)
            click.get_current_context().exit(EXIT_RUN_FAILED)
    report = client.reproduction(found.id)
    path = client.write_reproduction(found.id, out)
    if as_json:
        echo_json(report)
        return
    counts = ", ".join(f"{count} {verdict}" for verdict, count in report["verdicts"].items())
    click.echo(f"sweep {found.id}: {counts} ({len(report['claims'])} claims)")
    click.echo(report["caveat"])
    click.echo(f"wrote {path} and {len(report['figures'])} figures beside it")


def main() -> None:
    cli(prog_name="decaylab")
