"""Worker processes on this machine, sharing a study through the store as machines do.

Each worker is a fresh interpreter (spawn: the parent holds torch's thread pools and database
connections, which a fork would copy) that runs torch on its own threads. Ctrl-C reaches
the parent alone: workers start with SIGINT ignored, and the parent stops each with one
SIGTERM, which interrupts its run as Ctrl-C would, so that the run is given back.

Workers end with their parent, however it ends (SIGKILL included, as job schedulers and
`timeout` send): on Linux the kernel sends each a SIGTERM when the parent dies
(`PR_SET_PDEATHSIG`), and everywhere a thread in each worker watches a pipe that only the
parent holds open, and stops the worker when it closes. Either way the worker gives its run
back and exits; one that has not ended `STOP_TIMEOUT_S` later is ended at once. The kernel's
signal follows the parent *thread* that started the worker: `start_workers` is called from
the thread that then waits for the workers (`run_study` does), never from a short-lived one.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

import torch

from paramsplit.errors import ParamSplitError
from paramsplit.study.interrupts import interrupt_once

WAIT_POLL_S = 1.0  # how often the waiting parent reports progress
STOP_TIMEOUT_S = 60.0  # a stopped worker gives its run back in milliseconds; then it is killed
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def start_workers(
    count: int, work: Callable[..., None], args: tuple[Any, ...], threads: int
) -> list[BaseProcess]:
    """Start `count` processes that each set torch to `threads` threads and call `work(*args)`.

    `work` and `args` travel by pickling: `work` must be a module-level function.
    """
    context = multiprocessing.get_context("spawn")
    parent_pid = os.getpid()
    processes: list[BaseProcess] = [
        context.Process(
            target=_worker_main,
            args=(work, args, threads, parent_pid),
            name=f"paramsplit-worker-{number}",
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


def _worker_main(
    work: Callable[..., None], args: tuple[Any, ...], threads: int, parent_pid: int
) -> None:
    signal.signal(signal.SIGTERM, interrupt_once)  # `stop`, or the parent's death
    _end_with_parent(parent_pid)
    torch.set_num_threads(threads)
    try:
        work(*args)
    except KeyboardInterrupt:  # its run was given back; nothing to say
        pass
    except ParamSplitError as error:  # e.g. the database refused a write: the study pauses
        # This process's own error boundary: one line, as the command line prints one.
        message = " ".join(str(error).split())
        print(f"error: {multiprocessing.current_process().name}: {message}", file=sys.stderr)
        sys.exit(error.exit_code)


def _end_with_parent(parent_pid: int) -> None:
    """Have this worker stopped (SIGTERM) when its parent dies, by the kernel where it can
    and by a thread watching the parent's pipe everywhere."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)
    parent = multiprocessing.parent_process()
    if parent is not None and parent.sentinel is not None:
        threading.Thread(
            target=_stop_when_closed, args=(parent.sentinel,), daemon=True, name="parent-watch"
        ).start()


def _stop_when_closed(sentinel: int) -> None:
    """Wait for the parent's end of the pipe to close (it died), then stop this worker as
    `stop` would; end it at once if that has not ended it within STOP_TIMEOUT_S."""
    multiprocessing.connection.wait([sentinel])
    os.kill(os.getpid(), signal.SIGTERM)
    threading.Event().wait(STOP_TIMEOUT_S)
    os._exit(1)


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
