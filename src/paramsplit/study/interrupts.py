"""Ctrl-C and SIGTERM stop a study the same way: a KeyboardInterrupt, so that every run in
progress is given back by the `try` around its training.

Between a claim's commit and that `try` lie a few statements (the claim's return, the
progress callback, the call into training). An interrupt that lands there would leave the
run `running` under a worker that has stopped, until a later call takes it over. So a claim
is made with interrupts held off (`held_off`), and the training lets a held interrupt
through (`let_through`) only once it is inside the `try` that gives the run back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C."""


def interrupt_once(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C, once: a second one (a worker's stop and its parent's death both send
    one) must not cut short the release that the first set going."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within, SIGTERM stops this process as Ctrl-C does (`Terminated`, a KeyboardInterrupt,
    once), so that a study stopped by a job scheduler or `timeout` gives its runs back.
    Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt_once)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
# The handlers that interrupt by raising; any other (ignored, default, the caller's own) is
# left alone by `held_off`.
_RAISING: tuple[Handler, ...] = (signal.default_int_handler, interrupt_once)


@dataclasses.dataclass
class _Hold:
    previous: dict[int, Handler]
    arrived: list[int]


_hold: _Hold | None = None  # only the main thread receives signals, so one is enough


@contextlib.contextmanager
def held_off() -> Iterator[None]:
    """Within, a Ctrl-C or SIGTERM waits: it is raised at `let_through()`, or where the block
    ends. Blocks do not nest (an inner one holds nothing more); main thread only."""
    global _hold
    if threading.current_thread() is not threading.main_thread() or _hold is not None:
        yield
        return
    hold = _Hold({signum: signal.getsignal(signum) for signum in _SIGNALS}, [])

    def wait(signum: int, frame: FrameType | None) -> None:
        hold.arrived.append(signum)

    for signum, handler in hold.previous.items():
        if handler in _RAISING:
            signal.signal(signum, wait)
    _hold = hold
    try:
        yield
    finally:
        let_through()


def raise_if_arrived() -> None:
    """Within `held_off`, raise an interrupt that has arrived, ending the hold: for a block
    that waits (while no run is claimed), so that Ctrl-C is not held for the whole wait."""
    if _hold is not None and _hold.arrived:
        let_through()


def let_through() -> None:
    """End the hold that `held_off` set, if any: its handlers are back, and the first
    interrupt that arrived meanwhile is raised here, as it would have been then."""
    global _hold
    hold, _hold = _hold, None
    if hold is None:
        return
    for signum, handler in hold.previous.items():
        signal.signal(signum, handler)
    if hold.arrived:
        first = hold.arrived[0]
        handler = hold.previous[first]
        assert callable(handler)  # only raising handlers were replaced
        handler(first, None)


_SIGNALS = (signal.SIGINT, signal.SIGTERM)
