"""The written report in a real browser: Debian's headless Chromium, driven over the DevTools
protocol on a pipe (no driver, no port, no extra package).

Checks what only a browser can: every figure decodes and shows, the tables render, a click
on a header sorts, the page logs no error and asks for nothing but its own file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paramsplit.report import FIGURES, write_report
from report_sample import NUM_DESIGNS, NUM_ENSEMBLES, sample_analysis

pytestmark = pytest.mark.slow  # starting Chromium and drawing the report: about 8 s

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_S = 30.0


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """Headless Chromium speaking the DevTools protocol on file descriptors 3 (commands in)
    and 4 (replies and events out), as `--remote-debugging-pipe` defines: JSON messages,
    each ended by a NUL byte."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()
        flags = [
            "--headless=new",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "about:blank",
        ]

        def onto_3_and_4() -> None:
            # In the child, before exec: the protocol's descriptors are fixed. Lift both ends
            # above 4 first, so that placing one cannot overwrite the other.
            reading = fcntl.fcntl(to_browser, fcntl.F_DUPFD_CLOEXEC, 10)
            writing = fcntl.fcntl(from_browser, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(reading, 3)  # dup2 leaves the copy inheritable: it survives the exec
            os.dup2(writing, 4)

        self.process = subprocess.Popen(
            [executable, *flags],
            preexec_fn=onto_3_and_4,
            close_fds=False,  # Python's own descriptors are close-on-exec anyway (PEP 446)
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._replies], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise ConnectionError(f"Chromium closed the pipe (exit {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command; keep the events that arrive meanwhile; return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") != self._next_id:
                self.events.append(reply)
            elif "error" in reply:
                raise RuntimeError(f"{method} failed: {reply['error']}")
            else:
                return reply.get("result", {})

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):  # it may be gone already
            self.call("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


class Page:
    """One tab, attached with a flat session so that its events arrive on the same pipe."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = browser.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.call(method, self.session, **params)

    def open(self, url: str) -> None:
        """Navigate and wait until the page and its images have loaded.

        Polls the document rather than waiting for a load event: the tab's first
        about:blank may report its own load late, and be taken for this one.
        """
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            with contextlib.suppress(RuntimeError):  # the old document is being replaced
                if self.evaluate("[location.href, document.readyState]") == [url, "complete"]:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            time.sleep(0.05)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre, as a person would make it."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left",
                clickCount=1,
            )  # fmt: skip

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser-logged errors so far."""
        found = []
        for event in self.browser.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(details.get("exception", {}).get("description", details["text"]))
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                )
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
        return found

    def requested_urls(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.browser.events
            if e.get("method") == "Network.requestWillBeSent"
        ]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        message = "Chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must run the browser test, not skip it")
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def report_page(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    folder = tmp_path_factory.mktemp("report")
    files = write_report(sample_analysis("browser <check>"), folder / "report.html")
    browser = Browser(chromium, folder / "profile")
    try:
        page = Page(browser)
        page.open(files.html.as_uri())
        yield page
    finally:
        browser.close()


def column_values(page: Page, table: str, column: int) -> list[str]:
    return page.evaluate(
        f"Array.from(document.querySelectorAll('#{table} tbody tr'))"
        f".map(r => r.cells[{column}].getAttribute('data-sort') ?? r.cells[{column}].textContent)"
    )


def test_every_figure_loads(report_page: Page) -> None:
    images = report_page.evaluate(
        "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(images) == len(FIGURES)
    for complete, width, height in images:
        assert complete and width > 300 and height > 100


def test_tables_render_with_rows(report_page: Page) -> None:
    counts = report_page.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('table'))"
        ".map(t => [t.id, t.tBodies[0].rows.length]))"
    )
    assert counts == {"switchovers": 4, "designs": NUM_DESIGNS, "comparisons": NUM_ENSEMBLES,
                      "failed": 1}  # fmt: skip
    # Rendered means laid out, not only in the DOM: the designs table has a real height.
    height = report_page.evaluate("document.querySelector('#designs').offsetHeight")
    assert height > 20 * NUM_DESIGNS


def test_a_click_on_a_header_sorts_the_table(report_page: Page) -> None:
    accuracy = report_page.evaluate(
        "Array.from(document.querySelectorAll('#designs th')).findIndex("
        "h => h.textContent.startsWith('test accuracy'))"
    )
    header = f"#designs th:nth-child({accuracy + 1})"
    report_page.click(header)
    ascending = [float(v) for v in column_values(report_page, "designs", accuracy)]
    assert ascending == sorted(ascending) and ascending != sorted(ascending, reverse=True)
    report_page.click(header)
    descending = [float(v) for v in column_values(report_page, "designs", accuracy)]
    assert descending == sorted(ascending, reverse=True)
    report_page.click("#designs th:nth-child(1)")  # a text column sorts by its text
    assert report_page.evaluate(
        "Array.from(document.querySelectorAll('#designs tbody tr'), r => r.cells[0].textContent)"
        ".every((name, i, all) => i === 0 || all[i - 1].localeCompare(name, undefined,"
        " {numeric: true}) <= 0)"
    )


def test_unmeasured_values_sort_last_both_ways(report_page: Page) -> None:
    latency = report_page.evaluate(
        "Array.from(document.querySelectorAll('#designs th')).findIndex("
        "h => h.textContent.startsWith('latency'))"
    )
    for _ in range(2):  # ascending, then descending
        report_page.click(f"#designs th:nth-child({latency + 1})")
        values = column_values(report_page, "designs", latency)
        measured = [v for v in values if v != ""]
        assert measured and values == measured + [""] * (len(values) - len(measured))


def test_no_console_errors_and_nothing_fetched(report_page: Page) -> None:
    assert report_page.errors() == []
    assert all(url.startswith(("file:", "data:")) for url in report_page.requested_urls())
