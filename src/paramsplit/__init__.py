"""paramsplit: one CNN or an ensemble of smaller ones under the same parameter budget?

The public API. Names load lazily, so `import paramsplit` stays light (no torch) for code
that only reads results.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # errors
    "ParamSplitError": "paramsplit.errors",
    "UsageError": "paramsplit.errors",
    "UnknownFamilyError": "paramsplit.errors",
    "SpecError": "paramsplit.errors",
    "BudgetError": "paramsplit.errors",
    "InputShapeError": "paramsplit.errors",
    # families and names
    "FAMILIES": "paramsplit.families",
    "FamilyInfo": "paramsplit.families",
    "get_family": "paramsplit.families",
    "family_names": "paramsplit.families",
    "ArchSpec": "paramsplit.specs",
    "DesignClass": "paramsplit.specs",
    "DesignSpec": "paramsplit.specs",
    "InputSpec": "paramsplit.specs",
    "parse_arch": "paramsplit.specs",
    "parse_design": "paramsplit.specs",
    "parse_input": "paramsplit.specs",
    "parse_budget": "paramsplit.quantities",
    "format_budget": "paramsplit.quantities",
    "parse_members": "paramsplit.quantities",
    "MATCH_TOLERANCE": "paramsplit.specs",
    "is_matched": "paramsplit.specs",
    # models and accounting
    "build_model": "paramsplit.models",
    "merge_members": "paramsplit.models",
    "split_members": "paramsplit.models",
    "count_params": "paramsplit.planner.accounting",
    "profile_arch": "paramsplit.planner.accounting",
    "describe": "paramsplit.planner.accounting",
    # data and training
    "load_dataset": "paramsplit.data",
    "DatasetTensors": "paramsplit.data",
    "dataset_names": "paramsplit.data",
    "TrainConfig": "paramsplit.specs",
    "ConfigError": "paramsplit.errors",
    "DatasetError": "paramsplit.errors",
    "train_design": "paramsplit.train",
    "TrainResult": "paramsplit.train",
    # a run's records, from the study to the store to the analysis
    "RunSpec": "paramsplit.records",
    "TrainSummary": "paramsplit.records",
    "MeasureResult": "paramsplit.records",
    "RunResult": "paramsplit.records",
    # the results database
    "Store": "paramsplit.store",
    "StoreError": "paramsplit.errors",
    "StudyError": "paramsplit.errors",
    "StudyFileError": "paramsplit.errors",
    # the planner
    "MatchRule": "paramsplit.planner",
    "PlannedDesign": "paramsplit.planner",
    "plan": "paramsplit.planner",
    "plan_budget": "paramsplit.planner",
    "plan_single": "paramsplit.planner",
    "plan_warnings": "paramsplit.planner",
    # studies and the answer
    "StudyDefinition": "paramsplit.study",
    "run_study": "paramsplit.study",
    "Analysis": "paramsplit.analysis",
    "analyse": "paramsplit.analysis",
    "analyse_store": "paramsplit.analysis",
    "Constraints": "paramsplit.analysis",
    "recommend": "paramsplit.analysis",
    "write_report": "paramsplit.report",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'paramsplit' has no attribute {name!r}")
