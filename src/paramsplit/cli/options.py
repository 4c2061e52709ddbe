"""What every command shares: option types, bounds on machine resources, opening the
results database, and the error boundary."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import os
import typing
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import click
import typer

from paramsplit.cli.render import error_console
from paramsplit.errors import ParamSplitError, UsageError

if TYPE_CHECKING:
    from paramsplit.store import Store

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
InputOption = Annotated[
    str, typer.Option("--input", help="Input shape CxHxW, e.g. 3x32x32 or 1x8x8.")
]
ClassesOption = Annotated[int, typer.Option("--classes", help="Number of classes.")]
BatchOption = Annotated[
    int, typer.Option("--batch", help="Batch size of the counted training step and inference.")
]

Params = ParamSpec("Params")
Returned = TypeVar("Returned")

# Set to see the traceback of an internal error (a bug) instead of its one-line summary.
DEBUG_VARIABLE = "PARAMSPLIT_DEBUG"
# An internal error, not the user's: sysexits.h's EX_SOFTWARE, apart from user errors' 1 and 2.
INTERNAL_ERROR_EXIT = 70


# Typer 0.29 has exceptions of its own (and a vendored click) beside click's: all of them
# are a command ending on purpose, never a bug.
CLICK_ENDINGS = (
    typer.Exit,
    typer.Abort,
    typer.TyperException,
    click.exceptions.Exit,
    click.exceptions.Abort,
    click.ClickException,
)


def reports_errors(command: Callable[Params, Returned]) -> Callable[Params, Returned]:
    """The error boundary: a user error becomes one red line on stderr and its exit code;
    any other exception (a bug) one line saying so, exit code 70, and how to see the
    traceback (PARAMSPLIT_DEBUG=1)."""

    @functools.wraps(command)
    def wrapper(*args: Params.args, **kwargs: Params.kwargs) -> Returned:
        try:
            return command(*args, **kwargs)
        except ParamSplitError as error:
            _print_error(f"error: {error}")
            raise typer.Exit(error.exit_code) from None
        except CLICK_ENDINGS:
            raise  # how Typer and click end a command: an exit code, Ctrl-C, a usage error
        except Exception as error:
            if os.environ.get(DEBUG_VARIABLE):
                raise
            _print_error(
                f"internal error: {type(error).__name__}: {error} (a bug in paramsplit; rerun "
                f"with {DEBUG_VARIABLE}=1 for the traceback, and report it)"
            )
            raise typer.Exit(INTERNAL_ERROR_EXIT) from None

    return wrapper


def _print_error(message: str) -> None:
    # markup=False: the message quotes user input, which may contain [brackets].
    error_console.print(" ".join(message.split()), style="red", markup=False)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system says)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_processes(flag: str, value: int | None) -> None:
    """`--threads` or `--workers`: at least 1, at most one per core (more only queue)."""
    if value is None:
        return
    cores = usable_cores()
    if not 1 <= value <= cores:
        raise UsageError(f"{flag} must be in [1, {cores}] (the cores of this machine), got {value}")


@contextlib.contextmanager
def open_store(db: str, *, create: bool = True) -> Iterator[Store]:
    """The results database for one command. With `create=False` (commands that only
    read) a missing file is an error, except that the default one falls back to the demo's
    (`demo_fallback`). A database failure while it is used (a damaged file, a corrupt stored
    value, a lock held too long) becomes one error naming it."""
    from paramsplit.store import Store
    from paramsplit.store.database import errors_named

    if not create:
        db = demo_fallback(db)
    with Store.open(db, create=create) as store, errors_named(store.url):
        yield store


# Every command's --db but the demo's: `paramsplit.store.DEFAULT_PATH`, spelled again here
# so that the command line imports no SQLAlchemy to start (tests/test_cli.py checks that
# the two agree).
DEFAULT_DB = "paramsplit.db"
DEMO_DB = "paramsplit-demo.db"  # `paramsplit demo`'s --db


def demo_fallback(db: str) -> str:
    """`db`, or the demo's database when `db` is the default, missing here, and the demo's
    is not: `paramsplit demo` then `paramsplit report` (or recommend, export...) reads the
    demo's results, as a new user expects, and a note says so."""
    if db != DEFAULT_DB or os.path.exists(db) or not os.path.exists(DEMO_DB):
        return db
    error_console.print(
        f"note: reading {DEMO_DB}, the demo's results (there is no {DEFAULT_DB} here; "
        "--db picks another database)",
        style="dim",
    )
    return DEMO_DB


@dataclasses.dataclass(frozen=True)
class Renamed:
    """Marks an option whose flag was renamed: `Annotated[str, typer.Option(...),
    Renamed("--executor", "--backend")]`. The old spelling still works, hidden from the help,
    and prints a one-line deprecation note."""

    old_flag: str
    new_flag: str


def takes_option_groups(command: Callable[..., Returned]) -> Callable[..., Returned]:
    """Let a command take typed option objects, as `TrainConfig` groups training settings.

    Typer reads options from a function's parameters only, so each parameter annotated with
    a dataclass is spread into the dataclass's fields, in order (each field an
    `Annotated[type, typer.Option(...)]` with its default), and the object is built from
    them before the command runs. The help lists the options as if written out one by one.
    """
    hints = typing.get_type_hints(command, include_extras=True)
    flat: list[inspect.Parameter] = []
    groups: dict[str, Any] = {}
    renamed: dict[str, tuple[str, Any, Renamed]] = {}  # hidden alias -> field, default, flags
    for name, parameter in inspect.signature(command).parameters.items():
        group = hints[name]
        if not dataclasses.is_dataclass(group):
            flat.append(_keyword(name, group, parameter.default))
            continue
        groups[name] = group
        field_hints = typing.get_type_hints(group, include_extras=True)
        for field in dataclasses.fields(group):
            annotation, flags = _split_renamed(field_hints[field.name])
            flat.append(_keyword(field.name, annotation, field.default))
            if flags is not None:
                alias = f"{field.name}_renamed"
                hidden = typer.Option(flags.old_flag, hidden=True, show_default=False)
                flat.append(
                    _keyword(alias, Annotated[_value_type(annotation) | None, hidden], None)
                )
                renamed[alias] = (field.name, field.default, flags)

    @functools.wraps(command)
    def with_groups(**values: Any) -> Returned:
        for alias, (field_name, default, flags) in renamed.items():
            _take_old_spelling(command.__name__, values, alias, field_name, default, flags)
        built = {
            name: group(
                **{field.name: values.pop(field.name) for field in dataclasses.fields(group)}
            )
            for name, group in groups.items()
        }
        return command(**values, **built)

    # What inspect.signature, and so Typer, reads in place of the command's own parameters.
    with_groups.__dict__["__signature__"] = inspect.Signature(flat)
    with_groups.__annotations__ = {parameter.name: parameter.annotation for parameter in flat}
    return with_groups


def _keyword(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    """A parameter as Typer reads it; a field without a default is a required option."""
    if default is dataclasses.MISSING:
        default = inspect.Parameter.empty
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def _value_type(annotation: Any) -> Any:
    """`str` of `Annotated[str, typer.Option(...)]`."""
    if typing.get_origin(annotation) is Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def _split_renamed(annotation: Any) -> tuple[Any, Renamed | None]:
    """The annotation Typer reads, without its `Renamed` mark; the mark, if any."""
    if typing.get_origin(annotation) is not Annotated:
        return annotation, None
    base, *marks = typing.get_args(annotation)
    kept = [mark for mark in marks if not isinstance(mark, Renamed)]
    flags = next((mark for mark in marks if isinstance(mark, Renamed)), None)
    return Annotated[(base, *kept)] if kept else base, flags


def _take_old_spelling(
    command: str, values: dict[str, Any], alias: str, field_name: str, default: Any, flags: Renamed
) -> None:
    """The old flag's value into its field, with a note. The new flag at its default counts
    as not given (Typer does not say which); set to anything else, it must agree."""
    old = values.pop(alias)
    if old is None:
        return
    new = values[field_name]
    if new != default and new != old:
        raise UsageError(
            f"{flags.new_flag} '{new}' and {flags.old_flag} '{old}' disagree; give "
            f"{flags.new_flag} only"
        )
    error_console.print(
        f"note: paramsplit {command} {flags.old_flag} is deprecated; use {flags.new_flag} (the "
        "same values)",
        style="yellow",
        markup=False,
    )
    values[field_name] = old
