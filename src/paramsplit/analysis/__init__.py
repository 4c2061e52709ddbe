"""The answer, from run records alone (no torch): where ensembles start to win, at what cost,
and what to build.

    analysis = analyse_store(Store.open("paramsplit.db"))       # the latest study
    for switchover in analysis.switchovers:
        print(switchover.describe())
    answer = recommend(analysis.select("resnet", "digits"), budget=50_000)
"""

from __future__ import annotations

from paramsplit.analysis.answer import Analysis, DesignCurve, analyse, analyse_store, latest_study
from paramsplit.analysis.compare import (
    DEFAULT_ALPHA,
    Comparison,
    TimeToTarget,
    compare_to_single,
    time_to_target,
)
from paramsplit.analysis.designs import DesignKey, DesignSummary, summarise
from paramsplit.analysis.heatmap import HEAT_CLASSES, HeatMap, heat_maps
from paramsplit.analysis.matching import (
    DEFAULT_MATCH_TOLERANCE,
    is_matched,
    parse_match_tolerance,
)
from paramsplit.analysis.pareto import ParetoFront, pareto_fronts
from paramsplit.analysis.recommend import (
    RECOMMEND_OBJECTIVES,
    Candidate,
    Constraints,
    Recommendation,
    largest_budget,
    recommend,
)
from paramsplit.analysis.records import (
    ACCURACY_COLUMNS,
    DEFAULT_ACCURACY,
    CurvePoint,
    RunRecord,
    record_from_row,
    records_from_store,
)
from paramsplit.analysis.stats import SeedTest, Stat, p_value_greater, seed_test, stat_of
from paramsplit.analysis.switchover import EstStep, Switchover, est_of, find_switchovers

__all__ = [
    "ACCURACY_COLUMNS",
    "DEFAULT_ACCURACY",
    "DEFAULT_ALPHA",
    "DEFAULT_MATCH_TOLERANCE",
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
    "EstStep",
    "HeatMap",
    "ParetoFront",
    "Recommendation",
    "RunRecord",
    "SeedTest",
    "Stat",
    "Switchover",
    "TimeToTarget",
    "analyse",
    "analyse_store",
    "compare_to_single",
    "est_of",
    "find_switchovers",
    "heat_maps",
    "is_matched",
    "largest_budget",
    "latest_study",
    "p_value_greater",
    "pareto_fronts",
    "parse_match_tolerance",
    "recommend",
    "record_from_row",
    "records_from_store",
    "seed_test",
    "stat_of",
    "summarise",
    "time_to_target",
]
