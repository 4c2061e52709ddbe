"""The report (no torch): one self-contained HTML page, its figures as PNGs, CSV and JSON.

from paramsplit.analysis import analyse_store
files = write_report(analyse_store(store), "report.html")
files.paths()   # report.html, report_files/accuracy_vs_budget.png, ..., analysis.json
"""

from __future__ import annotations

from paramsplit.report.exports import ReportFiles, write_report
from paramsplit.report.figures import (
    FIGURES,
    ReportFigure,
    accuracy_figure,
    heat_map_figure,
    pareto_figure,
    render_figures,
)
from paramsplit.report.figures_detail import cost_ratio_figure, curves_figure
from paramsplit.report.html import render_html

__all__ = [
    "FIGURES",
    "ReportFigure",
    "ReportFiles",
    "accuracy_figure",
    "cost_ratio_figure",
    "curves_figure",
    "heat_map_figure",
    "pareto_figure",
    "render_figures",
    "render_html",
    "write_report",
]
