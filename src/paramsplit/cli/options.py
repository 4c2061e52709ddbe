"""What every command shares: option types, bounds on machine resources, opening the
results database, and the error boundary."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

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

Command = TypeVar("Command", bound=Callable[..., Any])

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


def reports_errors(command: Command) -> Command:
    """The error boundary: a user error becomes one red line on stderr and its exit code;
    any other exception (a bug) one line saying so, exit code 70, and how to see the
    traceback (PARAMSPLIT_DEBUG=1)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
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

    return wrapper  # type: ignore[return-value]


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
    read) a missing file is an error. A database failure while it is used (a damaged file,
    a corrupt stored value, a lock held too long) becomes one error naming it."""
    from paramsplit.store import Store
    from paramsplit.store.database import errors_named

    with Store.open(db, create=create) as store, errors_named(store.url):
        yield store
