"""The command line: the only place that reads argv, prints or exits."""

from __future__ import annotations

from paramsplit.cli.app import app


def main() -> None:
    """Console-script entry point."""
    app(prog_name="paramsplit")


__all__ = ["app", "main"]
