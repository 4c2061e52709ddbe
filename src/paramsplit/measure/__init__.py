"""Measurement: what a design costs in time and memory, and how each figure was taken.

- `latency`: inference latency and throughput, timed side by side;
- `memory` (with `counting` and `live_tensors`): the exact peak bytes of live tensors of one
  training step and one inference call, by category, loop and fused, counted without
  allocating;
- `design`: everything measured about one trained design (`measure_design`), and about a
  trained run's result (`measure_run`, restoring its executor first).
"""

from paramsplit.measure.counting import EXECUTIONS, MemoryCount
from paramsplit.measure.design import measure_design, measure_run, weights_bytes
from paramsplit.measure.latency import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_BUDGET_S,
    DEFAULT_REPEATS,
    DEFAULT_WARMUP,
    MIN_REPEATS,
    InferenceMeasurement,
    Predict,
    executor_predictor,
    loop_predictor,
    measure_inference,
    measure_inference_side_by_side,
)
from paramsplit.measure.live_tensors import CATEGORIES, LiveTensors
from paramsplit.measure.memory import (
    MEMORY_METHOD,
    DesignMemory,
    count_design_memory,
    count_inference_memory,
    count_train_memory,
)
from paramsplit.records import MeasuredRun, MeasureResult

__all__ = [
    "CATEGORIES",
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_BUDGET_S",
    "DEFAULT_REPEATS",
    "DEFAULT_WARMUP",
    "EXECUTIONS",
    "MEMORY_METHOD",
    "MIN_REPEATS",
    "DesignMemory",
    "InferenceMeasurement",
    "LiveTensors",
    "MeasureResult",
    "MeasuredRun",
    "MemoryCount",
    "Predict",
    "count_design_memory",
    "count_inference_memory",
    "count_train_memory",
    "executor_predictor",
    "loop_predictor",
    "measure_design",
    "measure_inference",
    "measure_inference_side_by_side",
    "measure_run",
    "weights_bytes",
]
