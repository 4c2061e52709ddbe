"""Write the report: the HTML page and, in a folder beside it, PNGs, CSVs and JSON.

files = write_report(analysis, Path("report.html"))
# report.html, report_files/{accuracy_vs_budget.png, ..., designs.csv, analysis.json}
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from paramsplit.adaptive.answer import Saving
from paramsplit.analysis import Analysis, DesignSummary, Recommendation, Stat
from paramsplit.errors import ReportError
from paramsplit.report.figures import render_figures
from paramsplit.report.html import render_html


@dataclass(frozen=True)
class ReportFiles:
    """The paths one `write_report` wrote."""

    html: Path
    folder: Path
    figures: tuple[Path, ...]
    tables: tuple[Path, ...]  # designs.csv, comparisons.csv, switchovers.csv
    json: Path

    def paths(self) -> list[Path]:
        return [self.html, *self.figures, *self.tables, self.json]


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become prefixed columns ('accuracy_mean'); lists become 'a;b;c'."""
    flat: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{prefix}{name}_")
        elif isinstance(value, list | tuple):
            flat[f"{prefix}{name}"] = ";".join(str(v) for v in value)
        else:
            flat[f"{prefix}{name}"] = value
    return flat


STAT_COLUMNS = ("mean", "std", "n")


def design_row(summary: DesignSummary, on_front: bool) -> dict[str, Any]:
    """A design as one CSV row. Every statistic gets its mean, std and n columns, empty where
    not measured, so that every row has the same columns."""
    row: dict[str, Any] = {"label": summary.label}
    for field in fields(summary):
        value = getattr(summary, field.name)
        if "Stat" in str(field.type):
            stat = value.to_dict() if isinstance(value, Stat) else dict.fromkeys(STAT_COLUMNS)
            row |= flatten(stat, f"{field.name}_")
        else:
            row |= flatten({field.name: value})
    return row | {"pareto": on_front}


def csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    rows = list(rows)
    columns: dict[str, None] = {}  # every row's columns, in first-seen order
    for row in rows:
        columns |= dict.fromkeys(row)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def report_data(
    analysis: Analysis, recommendation: Recommendation | None, adaptive: Saving | None = None
) -> dict[str, Any]:
    """What analysis.json holds: the whole analysis, the recommendation if one was asked,
    and for an adaptive study what it skipped and spent."""
    answer = recommendation.to_dict() if recommendation else None
    saved = {"adaptive": adaptive.to_dict()} if adaptive is not None else {}
    return analysis.to_dict() | {"recommendation": answer} | saved


def write_report(
    analysis: Analysis,
    out_path: Path | str,
    recommendation: Recommendation | None = None,
    adaptive: Saving | None = None,
) -> ReportFiles:
    """Write `out_path` and its `<stem>_files/` folder; refuse if either cannot be written.
    `adaptive`: what an adaptive study skipped and spent (`paramsplit.adaptive.answer`)."""
    out_path = Path(out_path)
    folder = out_path.with_name(f"{out_path.stem}_files")
    figures = render_figures(analysis)
    page = render_html(analysis, recommendation, figures, adaptive)
    tables = {
        "designs.csv": csv_text(design_row(d, analysis.on_front(d)) for d in analysis.designs),
        "comparisons.csv": csv_text(flatten(c.to_dict()) for c in analysis.comparisons),
        # Steps as one 'sequence' column ('5k✗ (0.93×)  10k· (failed)'), not a list of dicts.
        "switchovers.csv": csv_text(
            flatten({k: v for k, v in s.to_dict().items() if k != "steps"})
            for s in analysis.switchovers
        ),
    }
    data = json.dumps(report_data(analysis, recommendation, adaptive), indent=2, ensure_ascii=False)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for figure in figures:
            (folder / f"{figure.name}.png").write_bytes(figure.png)
        for name, content in tables.items():
            (folder / name).write_text(content, encoding="utf-8")
        (folder / "analysis.json").write_text(data + "\n", encoding="utf-8")
        # The page last: a report.html on disk means its exports beside it are complete.
        out_path.write_text(page, encoding="utf-8")
    except OSError as error:
        where = error.filename or out_path
        raise ReportError(
            f"cannot write the report to '{where}': {error.strerror or error}; "
            "choose a path in a writable folder"
        ) from None
    return ReportFiles(
        html=out_path,
        folder=folder,
        figures=tuple(folder / f"{f.name}.png" for f in figures),
        tables=tuple(folder / name for name in tables),
        json=folder / "analysis.json",
    )
