"""Where peak memory is measured: a process that holds nothing but the design under test.

On CUDA, in this process (the allocator's statistics can be reset). On CPU, the resident set
of a process counts whatever it ran before, so each figure comes from a clean child: forked
from a long-lived memory server that has imported torch and run nothing (0.6–0.9 s a figure
on the 2-core machine), or, where there is no fork, a fresh `python -m
paramsplit.measure.process_memory` (8–9 s: importing torch and torch._dynamo each time). The
measurement itself is `paramsplit.measure.process_memory.run_memory_request`.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import torch

from paramsplit.measure.process_memory import RESULT_KEYS, MemoryRequest, run_memory_request

MEMORY_TIMEOUT_S = 600.0


def _package_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(_package_root()), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def _release_free_heap() -> None:
    """Give the heap's free pages back to the system before forking a measuring child.

    A child's allocations that land on pages its parent left resident but free add nothing
    to its resident size, so how much of that the server happened to hold changed the
    figures: the same design measured 15, 25 and 44 MiB in servers whose imports had run
    differently (fresh or cached bytecode). With the free pages released, every child
    starts from the same state.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to release
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def serve_memory_requests() -> None:
    """The memory server's loop: one JSON request per line on stdin, each measured in a
    child forked for it, one JSON result (or {"error": ...}) per line on stdout.

    This process imports torch and runs no torch operation, so forking it is safe (no
    thread pool to lose) and each child starts as clean as a fresh interpreter.
    """
    import torch._dynamo  # noqa: F401  (SGD's constructor imports it: 3 s, paid once here)

    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever else writes to stdout must not break the protocol
    for line in sys.stdin:
        _release_free_heap()
        pid = os.fork()
        if pid == 0:  # the child: answer, and never return into this loop
            try:
                try:
                    answer = run_memory_request(MemoryRequest.from_json(line))
                except Exception as error:
                    answer = {"error": f"{type(error).__name__}: {error}"}
                results.write(json.dumps(answer) + "\n")
                results.flush()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            results.write(json.dumps({"error": f"measuring process ended: {status=}"}) + "\n")
            results.flush()


class _MemoryServer:
    """A clean interpreter that measures each request in a forked child of itself.

    A fresh interpreter per request cost 8-9 s on the 2-core machine (4 s importing torch,
    3 s importing torch._dynamo); a forked child 0.6-0.9 s after a one-off 7 s. Side by
    side on 10 digits designs, forked figures were 0-3 MB above fresh ones (library pages
    the child faults in afresh; a fresh process counts such pages too), for peaks of 2-40 MB.
    """

    def __init__(self) -> None:
        command = "import paramsplit.measure.memory_processes as m; m.serve_memory_requests()"
        self._process = subprocess.Popen(
            [sys.executable, "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=_python_env(),
            start_new_session=True,  # Ctrl-C is for us; we end it (and its child) as a group
        )

    def alive(self) -> bool:
        return self._process.poll() is None

    def ask(self, request: MemoryRequest, timeout_s: float) -> dict[str, Any]:
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(request.to_json() + "\n")
            stdin.flush()
        except BrokenPipeError:
            self.stop()
            return {"error": "the memory server died"}
        ready, _, _ = select.select([stdout], [], [], timeout_s)
        line = stdout.readline() if ready else ""
        if not line:
            self.stop()
            return {"error": "timed out" if not ready else "the memory server died"}
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()


_server: _MemoryServer | None = None
_server_lock = threading.Lock()


def _peak_in_child(request: MemoryRequest, timeout_s: float) -> dict[str, Any]:
    global _server
    with _server_lock:
        if _server is None or not _server.alive():
            _server = _MemoryServer()
        return _server.ask(request, timeout_s)


def _peak_in_fresh_interpreter(request: MemoryRequest, timeout_s: float) -> dict[str, Any]:
    """Where there is no fork (Windows): `python -m paramsplit.measure.process_memory`."""
    completed = subprocess.run(
        [sys.executable, "-m", "paramsplit.measure.process_memory", request.to_json()],
        capture_output=True,
        text=True,
        env=_python_env(),
        timeout=timeout_s,
        check=False,
    )
    if completed.returncode != 0:
        return {"error": f"exit code {completed.returncode}: {completed.stderr.strip()[-2000:]}"}
    answer: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return answer


def peak_memory_bytes(request: MemoryRequest, *, timeout_s: float = MEMORY_TIMEOUT_S) -> int:
    """Peak memory above the set-up executor (see `paramsplit.measure.process_memory`).

    CUDA is measured in this process with the allocator's statistics; the CPU in a child
    process, since this process's resident size holds whatever it ran before.
    """
    if torch.device(request.device).type == "cuda":
        result = run_memory_request(request)
    elif hasattr(os, "fork"):
        result = _peak_in_child(request, timeout_s)
    else:
        result = _peak_in_fresh_interpreter(request, timeout_s)
    if "error" in result:
        raise RuntimeError(f"memory measurement of {request.to_json()} failed: {result['error']}")
    return int(result[RESULT_KEYS[request.mode]])
