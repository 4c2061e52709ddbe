"""What every command shares: option types and the error boundary."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from paramsplit.cli.render import error_console
from paramsplit.errors import ParamSplitError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
InputOption = Annotated[
    str, typer.Option("--input", help="Input shape CxHxW, e.g. 3x32x32 or 1x8x8.")
]
ClassesOption = Annotated[int, typer.Option("--classes", help="Number of classes.")]
BatchOption = Annotated[
    int, typer.Option("--batch", help="Batch size of the counted training step and inference.")
]

Command = TypeVar("Command", bound=Callable[..., Any])


def reports_errors(command: Command) -> Command:
    """The error boundary: a user error becomes one red line on stderr and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ParamSplitError as error:
            message = " ".join(str(error).split())
            # markup=False: the message quotes user input, which may contain [brackets].
            error_console.print(f"error: {message}", style="red", markup=False)
            raise typer.Exit(error.exit_code) from None

    return wrapper  # type: ignore[return-value]
