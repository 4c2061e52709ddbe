"""A finished run's ensemble as one deployable model: ONNX, TorchScript or a torch.export
program, checked in its runtime before it is reported done (`export_run`).

ONNX needs the `export` extra (`pip install 'paramsplit[export]'`); the other formats need
only PyTorch.
"""

from paramsplit.export.choose import pick_run, recommended_run
from paramsplit.export.exporter import FORM_CHOICES, ExportReport, export_run
from paramsplit.export.formats import FORMATS, check_format, load_runner, write_model
from paramsplit.export.model import FORMS, EnsembleModel, build_ensemble, build_members
from paramsplit.export.verify import LOGIT_TOLERANCE, PROBABILITY_TOLERANCE

__all__ = [
    "FORMATS",
    "FORMS",
    "FORM_CHOICES",
    "LOGIT_TOLERANCE",
    "PROBABILITY_TOLERANCE",
    "EnsembleModel",
    "ExportReport",
    "build_ensemble",
    "build_members",
    "check_format",
    "export_run",
    "load_runner",
    "pick_run",
    "recommended_run",
    "write_model",
]
