"""The four families, each able to compute k members as one network."""

from paramsplit.models.layers import MemberNetwork
from paramsplit.models.members import merge_members, split_members
from paramsplit.models.registry import BUILDERS, build_model, count_parameters

__all__ = [
    "BUILDERS",
    "MemberNetwork",
    "build_model",
    "count_parameters",
    "merge_members",
    "split_members",
]
