"""The answer, from run records alone (no torch): where ensembles start to win, at what cost,
and what to build.

    analysis = analyse_store(Store.open("paramsplit.db"))       # the latest study
    for switchover in analysis.switchovers:
        print(switchover.describe())
    answer = recommend(analysis.select("resnet", "digits"), budget=50_000)
"""

from __future__ import annotations

from paramsplit.analysis.answer import Analysis, DesignCurve, analyse, analyse_store, latest_study
from paramsplit.analysis.compare import DEFAULT_ALPHA, Comparison, compare_to_single
from paramsplit.analysis.designs import DesignKey, DesignSummary, summarise
from paramsplit.analysis.pareto import ParetoFront, pareto_fronts
from paramsplit.analysis.recommend import (
    RECOMMEND_OBJECTIVES,
    Candidate,
    Constraints,
    Recommendation,
    recommend,
)
from paramsplit.analysis.records import CurvePoint, RunRecord, record_from_row, records_from_store
from paramsplit.analysis.stats import Stat, p_value_greater, stat_of
from paramsplit.analysis.switchover import (
    HEAT_CLASSES,
    HeatMap,
    Switchover,
    est_of,
    find_switchovers,
    heat_maps,
)

__all__ = [
    "DEFAULT_ALPHA",
    "HEAT_CLASSES",
    "RECOMMEND_OBJECTIVES",
    "Analysis",
    "Candidate",
    "Comparison",
    "Constraints",
    "CurvePoint",
    "DesignCurve",
    "DesignKey",
    "DesignSummary",
    "HeatMap",
    "ParetoFront",
    "Recommendation",
    "RunRecord",
    "Stat",
    "Switchover",
    "analyse",
    "analyse_store",
    "compare_to_single",
    "est_of",
    "find_switchovers",
    "heat_maps",
    "latest_study",
    "p_value_greater",
    "pareto_fronts",
    "recommend",
    "record_from_row",
    "records_from_store",
    "stat_of",
    "summarise",
]
