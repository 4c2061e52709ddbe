"""Running an adaptive study: the policy hands out runs as results arrive, and stops runs
at a rung when their verdict is settled.

Every worker (a local process, or the Ray driver) asks the policy (`adaptive.decide`) what
the study needs now, from what the store holds, and claims the first of those runs that no
one holds: the store's claims are the only synchronisation, and since the policy depends
only on results, every process reaches the same decision from the same results. A worker
with nothing to claim waits for results while other runs train, and stops when the policy
has nothing left to train. A killed study resumes like any: its runs go stale or are given
back, and the policy, asked again, wants them again.
"""

from __future__ import annotations

import time
from typing import Any

from paramsplit.adaptive import Decision, decide
from paramsplit.adaptive.stored import load_records, load_settings
from paramsplit.records import RunSpec
from paramsplit.store import Store
from paramsplit.study import interrupts

POLL_S = 2.0  # how often a worker with nothing to claim asks the policy again


class AdaptiveScheduler:
    """The claims and stops of one worker of an adaptive study.

    `early=False` turns early verdicts off (the Ray executor: its tasks report no epochs).
    """

    def __init__(
        self, store: Store, study: str, worker: str, *, early: bool = True, poll_s: float = POLL_S
    ) -> None:
        self.store, self.study, self.worker, self.poll_s = store, study, worker, poll_s
        self.settings = load_settings(store, study, early=early)

    def decide(self) -> Decision:
        return decide(self.settings, load_records(self.store, self.study))

    def claim(self, wait: bool = True) -> dict[str, Any] | None:
        """The next run the policy wants that no one holds; None once the policy wants
        nothing more (or, without `wait`, when nothing is free now)."""
        while True:
            decision = self.decide()
            if decision.finished:
                return None
            if decision.want:
                run = self.store.claim_next(self.study, self.worker, only=decision.want)
                if run is not None:
                    return run
            if not wait:
                return None
            time.sleep(self.poll_s)
            interrupts.raise_if_arrived()  # holds nothing now: a Ctrl-C waits one poll at most

    def should_stop(self, run: dict[str, Any], epoch: int) -> str | None:
        """Why to stop `run` after `epoch`, or None: only ensembles, from the first rung."""
        rungs = self.settings.rungs
        if not rungs or epoch < rungs[0] or epoch >= self.settings.epochs:
            return None
        if RunSpec.from_dict(run["spec"]).num_members == 1:
            return None
        return self.decide().stop.get(run["run_id"])
