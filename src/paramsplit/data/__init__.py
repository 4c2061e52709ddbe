"""Datasets as tensors on the device, batch-wise augmentation, and per-member data orders."""

from paramsplit.data.datasets import (
    DATASETS,
    Augmentation,
    DatasetInfo,
    DatasetTensors,
    channel_statistics,
    data_root,
    dataset_names,
    get_dataset,
    load_dataset,
    stratified_split,
)
from paramsplit.data.loader import (
    augment_batch,
    augment_members,
    eval_batches,
    member_batches,
)
from paramsplit.data.sources import read_idx

__all__ = [
    "DATASETS",
    "Augmentation",
    "DatasetInfo",
    "DatasetTensors",
    "augment_batch",
    "augment_members",
    "channel_statistics",
    "data_root",
    "dataset_names",
    "eval_batches",
    "get_dataset",
    "load_dataset",
    "member_batches",
    "read_idx",
    "stratified_split",
]
