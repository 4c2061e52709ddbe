"""Worker processes on this machine, sharing a study through the store as machines do.

Each worker is a fresh interpreter (spawn: the parent holds torch's thread pools and database
connections, which a fork would copy) that runs torch on its own threads. Ctrl-C reaches
the parent alone: workers start with SIGINT ignored, and the parent stops each with one
SIGTERM, which interrupts its run as Ctrl-C would, so that the run is given back.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

import torch

WAIT_POLL_S = 1.0  # how often the waiting parent reports progress
STOP_TIMEOUT_S = 60.0  # a stopped worker gives its run back in milliseconds; then it is killed


def start_workers(
    count: int, work: Callable[..., None], args: tuple[Any, ...], threads: int
) -> list[BaseProcess]:
    """Start `count` processes that each set torch to `threads` threads and call `work(*args)`.

    `work` and `args` travel by pickling: `work` must be a module-level function.
    """
    context = multiprocessing.get_context("spawn")
    processes: list[BaseProcess] = [
        context.Process(
            target=_worker_main, args=(work, args, threads), name=f"paramsplit-worker-{number}"
        )
        for number in range(1, count + 1)
    ]
    # A process started while SIGINT is ignored keeps ignoring it (Python installs its
    # KeyboardInterrupt handler only over the default), so Ctrl-C never cuts a release short.
    with _sigint_ignored():
        for process in processes:
            process.start()
    return processes


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (and only it sees Ctrl-C)
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _worker_main(work: Callable[..., None], args: tuple[Any, ...], threads: int) -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `stop`: like Ctrl-C
    torch.set_num_threads(threads)
    with contextlib.suppress(KeyboardInterrupt):  # its run was given back; nothing to say
        work(*args)


def wait_for(processes: Sequence[BaseProcess], report: Callable[[], None]) -> None:
    """Until every process has ended, call `report` about once a second."""
    while running := [process.sentinel for process in processes if process.is_alive()]:
        report()
        multiprocessing.connection.wait(running, timeout=WAIT_POLL_S)


def stop(processes: Sequence[BaseProcess]) -> None:
    """End the processes still running (each gives its run back) and reap every one."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(STOP_TIMEOUT_S)
        if process.is_alive():  # stuck: its run is taken over once its pid is gone
            process.kill()
            process.join()
