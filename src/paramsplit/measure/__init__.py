"""Measurement: what a design costs in time and memory, and how each figure was taken.

- `latency`: inference latency and throughput, timed side by side;
- `process_memory` and `memory_processes`: peak memory of a few steps, measured in a clean
  child process on CPU (resident set) or with the CUDA allocator's statistics;
- `design`: everything measured about one trained design (`measure_design`).
"""

from paramsplit.measure.design import MeasureResult, measure_design, memory_method, weights_bytes
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
from paramsplit.measure.memory_processes import peak_memory_bytes
from paramsplit.measure.process_memory import MemoryRequest

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_BUDGET_S",
    "DEFAULT_REPEATS",
    "DEFAULT_WARMUP",
    "MIN_REPEATS",
    "InferenceMeasurement",
    "MeasureResult",
    "MemoryRequest",
    "Predict",
    "executor_predictor",
    "loop_predictor",
    "measure_design",
    "measure_inference",
    "measure_inference_side_by_side",
    "memory_method",
    "peak_memory_bytes",
    "weights_bytes",
]
