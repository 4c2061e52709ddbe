"""The report: one self-contained HTML page with its PNG, CSV and JSON exports, from a
hand-written study (tests/report_sample.py) and from studies with parts missing."""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from paramsplit.analysis import Analysis, Constraints, Recommendation, RunRecord, analyse, recommend
from paramsplit.errors import ParamSplitError, ReportError
from paramsplit.report import FIGURES, ReportFiles, render_figures, render_html, write_report
from report_sample import BUDGETS, NUM_DESIGNS, NUM_ENSEMBLES, sample_analysis, sample_records

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PageParts(HTMLParser):
    """What the tests look at in a page: tags, attributes, table rows, headers."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: dict[str, int] = {}
        self.headers: dict[str, list[str]] = {}
        self._table: str | None = None
        self._in_body = self._in_header = False
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._table = dict(attrs)["id"]
            self.rows[self._table] = 0
            self.headers[self._table] = []
        elif tag in ("tbody", "th"):
            setattr(self, "_in_body" if tag == "tbody" else "_in_header", True)
        elif tag == "tr" and self._in_body and self._table:
            self.rows[self._table] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("tbody", "th"):
            setattr(self, "_in_body" if tag == "tbody" else "_in_header", False)

    def handle_data(self, data: str) -> None:
        if self._in_header and self._table:
            self.headers[self._table].append(data)

    def images(self) -> list[str]:
        return [str(attrs["src"]) for tag, attrs in self.tags if tag == "img"]


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    return sample_analysis()


@pytest.fixture(scope="module")
def answer(analysis: Analysis) -> Recommendation:
    return recommend(analysis.select(), 50_000, Constraints(max_latency_ms=2.0))


@pytest.fixture(scope="module")
def written(
    analysis: Analysis, answer: Recommendation, tmp_path_factory: pytest.TempPathFactory
) -> ReportFiles:
    return write_report(analysis, tmp_path_factory.mktemp("out") / "report.html", answer)


@pytest.fixture(scope="module")
def page(written: ReportFiles) -> str:
    return written.html.read_text(encoding="utf-8")


def test_importing_the_report_leaves_torch_out() -> None:
    code = "import sys, paramsplit.report; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_each_section_has_its_table_with_a_row_per_item(page: str) -> None:
    rows = PageParts(page).rows
    assert rows == {
        "switchovers": 4,  # deq and weq at k = 2 and 4
        "candidates": 5,  # the five designs at the recommended budget
        "designs": NUM_DESIGNS,
        "comparisons": NUM_ENSEMBLES,
        "failed": 1,
    }


def test_every_figure_is_an_embedded_png(page: str, written: ReportFiles) -> None:
    images = PageParts(page).images()
    assert len(images) == len(FIGURES) == len(written.figures)
    for src, path in zip(images, written.figures, strict=True):
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        png = base64.b64decode(src.removeprefix(prefix), validate=True)
        assert png.startswith(PNG_SIGNATURE) and png == path.read_bytes()


def test_the_page_fetches_nothing(page: str) -> None:
    for tag, attrs in PageParts(page).tags:
        for name in ("src", "href"):
            assert not str(attrs.get(name) or "").startswith(("http:", "https:", "//")), tag
    assert "http://" not in page and "https://" not in page and "@import" not in page


def test_the_page_says_the_answer_and_how_to_read_it(
    page: str, analysis: Analysis, answer: Recommendation
) -> None:
    for switchover in analysis.switchovers:
        assert html.escape(switchover.describe()) in page
        assert html.escape(switchover.sequence) in page
    assert answer.choice is not None and f"<strong>{answer.choice.design}</strong>" in page
    assert "How to read this" in page and "Ensemble Switchover Threshold" in page


def test_numeric_headers_name_their_units(page: str) -> None:
    headers = PageParts(page).headers
    designs = " ".join(headers["designs"])
    for unit in ("(%)", "(s)", "(ms)", "(MiB)", "(params)"):
        assert unit in designs
    assert sum("(×)" in h for h in headers["comparisons"]) >= 6


def test_every_comparison_shows_its_params_ratio_interval_and_seeds_reached(
    page: str, written: ReportFiles
) -> None:
    headers = PageParts(page).headers
    for header in ("params ratio (×)", "gain interval, 90% (points)", "smallest possible p",
                   "ensemble time to target (s)", "single time to target (s)"):  # fmt: skip
        assert header in headers["comparisons"]
    assert "params / single (×)" in headers["candidates"]
    assert "0.979" in page and "(3/3 seeds)" in page
    with (written.folder / "comparisons.csv").open(encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert float(row["params_ratio"]) == pytest.approx(0.95 / 0.97, abs=1e-4)
    assert row["matched"] == "True"
    assert {"test_gain_low", "test_gain_high", "test_smallest_p_value",
            "ensemble_time_to_target_num_reached"} <= set(row)  # fmt: skip
    with (written.folder / "switchovers.csv").open(encoding="utf-8") as f:
        sequences = [r["sequence"] for r in csv.DictReader(f)]
    assert "20k✗ (0.98×)  50k✗ (0.98×)  100k✓ (0.98×)" in sequences  # weq k=4


def test_unmatched_comparisons_and_gaps_are_shown_and_counted() -> None:
    records = [
        dataclasses.replace(r, total_params=r.total_params // 2)
        if (r.design_class, r.num_members, r.budget_params) == ("deq", 2, BUDGETS[0])
        else dataclasses.replace(r, status="failed", test_accuracy=None, reason="diverged")
        if (r.design_class, r.num_members, r.budget_params) == ("deq", 4, BUDGETS[1])
        else r
        for r in sample_records()
    ]
    page = render_html(analyse("gaps", records, matched_only=True), figures=[])
    assert "1 of 11 comparisons are unmatched" in page  # deq k=4 at 50k failed: 11 left
    assert "they are left out of the EST (shown as gaps)" in page
    assert "20k· (unmatched, 0.49×)" in page  # deq k=2
    assert html.escape("20k✗ (0.98×)  50k· (failed)  100k✓ (0.98×)") in page  # deq k=4
    assert "≤ 100k" in page  # deq k=4: the gap below 100k bounds its EST from above


def test_numbers_sort_by_value_not_by_text(page: str) -> None:
    # '93.40 ± 0.30' shows, 93.4... sorts: every numeric cell carries its value, or '' when
    # not measured.
    cells = [attrs for tag, attrs in PageParts(page).tags if tag == "td" and "data-sort" in attrs]
    assert cells
    for attrs in cells:
        value = attrs["data-sort"]
        assert value == "" or float(str(value)) == float(str(value))


def test_user_strings_are_escaped() -> None:
    evil = [
        dataclasses.replace(r, dataset="digits<b>", reason="<img src=x onerror=alert(1)>")
        if r.status == "failed"
        else dataclasses.replace(r, dataset="digits<b>")
        for r in sample_records()
    ]
    page = render_html(analyse("<script>alert(1)</script>", evil), figures=[])
    assert "<script>alert(1)" not in page and "<img src=x" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    parts = PageParts(page)
    assert [tag for tag, _ in parts.tags].count("script") == 1  # the page's own sorter
    assert not any(name.startswith("on") for _, attrs in parts.tags for name in attrs)


def test_csv_rows_match_the_designs(written: ReportFiles, analysis: Analysis) -> None:
    folder = written.folder
    assert folder.name == "report_files" and folder.parent == written.html.parent
    with (folder / "designs.csv").open(encoding="utf-8") as f:
        designs = list(csv.DictReader(f))
    assert [(r["design"], int(r["budget_params"])) for r in designs] == [
        (d.design, d.budget_params) for d in analysis.designs
    ]
    assert float(designs[0]["accuracy_mean"]) == pytest.approx(analysis.designs[0].accuracy.mean)
    weq = next(r for r in designs if r["design_class"] == "weq")
    assert weq["latency_ms_batch1_mean"] == ""  # not measured: empty, never 0
    with (folder / "comparisons.csv").open(encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == NUM_ENSEMBLES
    with (folder / "switchovers.csv").open(encoding="utf-8") as f:
        ests = {(r["design_class"], r["num_members"]): r["est_budget"] for r in csv.DictReader(f)}
    assert ests == {("deq", "2"): "20000", ("deq", "4"): "50000", ("weq", "2"): "",
                    ("weq", "4"): "100000"}  # fmt: skip


def test_json_round_trips(written: ReportFiles, analysis: Analysis, answer: Recommendation) -> None:
    data = json.loads(written.json.read_text(encoding="utf-8"))
    expected = analysis.to_dict() | {"recommendation": answer.to_dict()}
    assert data == json.loads(json.dumps(expected))
    assert data["failed"][0]["reason"] == "out of memory at batch size 512"


def test_written_paths_exist(written: ReportFiles) -> None:
    names = sorted(p.name for p in written.paths())
    assert names == sorted(
        ["report.html", "analysis.json", "designs.csv", "comparisons.csv", "switchovers.csv"]
        + [f"{name}.png" for name, *_ in FIGURES]
    )
    assert all(path.is_file() for path in written.paths())


def test_an_unwritable_destination_is_refused_in_one_line(
    tmp_path: Path, analysis: Analysis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("paramsplit.report.exports.render_figures", lambda _: [])
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the report's folder should go")
    with pytest.raises(ReportError, match=r"cannot write the report to .*not-a-folder") as error:
        write_report(analysis, blocker / "report.html")
    assert isinstance(error.value, ParamSplitError) and "\n" not in str(error.value)


def _without_costs(record: RunRecord) -> RunRecord:
    return dataclasses.replace(
        record, train_time_s=None, epoch_time_s=None, latency_ms_batch1=None,
        peak_train_memory_bytes=None, curve=(),
    )  # fmt: skip


EDGE_CASES = {
    "one seed": lambda r: r.seed == 0,  # and a second dataset: see below
    "no ensembles": lambda r: r.design_class == "single",
    "one budget, no weq": lambda r: r.budget_params == BUDGETS[1] and r.design_class != "weq",
    "nothing finished": lambda r: r.status == "failed",
}


@pytest.mark.parametrize("case", [*EDGE_CASES, "nothing measured"])
def test_figures_and_page_cope_with_missing_data(case: str) -> None:
    records = sample_records()
    if case == "nothing measured":
        records = [_without_costs(r) for r in records]
    else:
        records = [r for r in records if EDGE_CASES[case](r)]
    if case == "one seed":  # panels and table columns per family and dataset
        records += [dataclasses.replace(r, dataset="cifar10") for r in records]
    analysis = analyse(case, records)
    figures = render_figures(analysis)
    assert [f.name for f in figures] == [name for name, *_ in FIGURES]
    assert all(f.png.startswith(PNG_SIGNATURE) for f in figures)
    assert PageParts(render_html(analysis, figures=figures)).images()
