"""The planner: designs sized to a parameter budget, from exact counts.

- `accounting`: exact parameters, FLOPs and activations of one network (meta device);
- `matching`: the rules and the exact search that size members to a target count;
- `plan`: the design space, single networks and their deq/weq ensembles matched to |S|.
"""

from paramsplit.planner.matching import MatchRule
from paramsplit.planner.plan import PlannedDesign, plan, plan_budget, plan_single, plan_warnings

__all__ = ["MatchRule", "PlannedDesign", "plan", "plan_budget", "plan_single", "plan_warnings"]
