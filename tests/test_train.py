"""The training engine: executors equal k separate members, one protocol, honest metrics."""

from __future__ import annotations

import dataclasses
import functools
import math

import pytest
import torch

import paramsplit as ps
from paramsplit.data import Augmentation, load_dataset
from paramsplit.specs import DesignClass, DesignSpec, TrainConfig
from paramsplit.train import (
    EXECUTORS,
    choose_executor,
    ensemble_metrics,
    expected_calibration_error,
    lr_factor,
    make_executor,
    member_seeds,
    time_candidates,
    train_design,
)
from paramsplit.train import loop as train_loop

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def tiny_digits(digits):
    """A few hundred digits with crop-and-flip switched on, so augmentation is exercised."""
    return dataclasses.replace(
        digits,
        train_images=digits.train_images[:192],
        train_labels=digits.train_labels[:192],
        augmentation=Augmentation.CROP_FLIP,
        crop_padding=1,
    )


def _assert_states_close(expected, actual, **tolerance):
    assert len(expected) == len(actual)
    for member_expected, member_actual in zip(expected, actual, strict=True):
        assert member_expected.keys() == member_actual.keys()
        for key, value in member_expected.items():
            torch.testing.assert_close(member_actual[key], value, msg=key, **tolerance)


# The oracle (fused and vmap equal k separate members) is in test_equivalence.py.


def test_member_streams_do_not_depend_on_the_ensemble_size(tiny_digits):
    # Member 0 of a 2-member run is the same run as a 1-member run with the same seed.
    arch = ps.parse_arch("resnet-8-4")
    config = TrainConfig(epochs=1, batch_size=64)
    pair = train_design(DesignSpec(DesignClass.DEQ, 2, arch), tiny_digits, config, seed=5)
    alone = train_design(DesignSpec(DesignClass.SINGLE, 1, arch), tiny_digits, config, seed=5)
    _assert_states_close(alone.member_states, pair.member_states[:1], rtol=1e-5, atol=1e-6)


def test_members_get_different_seeds_and_runs_are_deterministic(tiny_digits):
    seeds = member_seeds(0, 4)
    assert len({s.init for s in seeds}) == len({s.data_order for s in seeds}) == 4
    design = DesignSpec(DesignClass.DEQ, 2, ps.parse_arch("resnet-8-4"))
    config = TrainConfig(epochs=1, batch_size=64)
    first, second = (
        train_design(design, tiny_digits, config, seed=1, executor="loop") for _ in range(2)
    )
    _assert_states_close(first.member_states, second.member_states, rtol=0, atol=0)
    member_a, member_b = first.member_states
    assert not torch.equal(member_a["head.fc.weight"], member_b["head.fc.weight"])


def test_schedule_is_stepped_per_epoch():
    cosine = TrainConfig(epochs=4)
    assert [lr_factor(e, cosine) for e in range(4)] == pytest.approx(
        [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))]
    )
    steps = TrainConfig(epochs=8, schedule="multistep", milestones=(0.5, 0.75))
    assert [lr_factor(e, steps) for e in range(8)] == pytest.approx(
        [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    warm = TrainConfig(epochs=5, warmup_epochs=2)
    assert [lr_factor(e, warm) for e in range(3)] == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_a_run_records_its_epochs_and_selects_by_validation(tiny_digits):
    design = DesignSpec(DesignClass.WEQ, 2, ps.parse_arch("resnet-8-4"))
    result = train_design(design, tiny_digits, TrainConfig(epochs=3, batch_size=64), seed=0)
    assert result.status == "done"
    assert [r.epoch for r in result.epochs] == [1, 2, 3]
    best = max(result.epochs, key=lambda r: (r.val.accuracy, -r.val.nll))
    assert result.best_epoch == best.epoch
    assert 0 <= result.test.accuracy <= 1 and len(result.test.member_accuracy) == 2
    assert all(r.test is None for r in result.epochs)  # the test set is not looked at per epoch
    assert result.epochs[-1].elapsed_train_s == pytest.approx(result.train_time_s)
    record = result.epochs[0]
    assert record.compute_time_s + record.data_time_s <= record.epoch_time_s
    assert result.time_to_accuracy_s(0.0) == result.epochs[0].elapsed_train_s
    assert result.time_to_accuracy_s(1.01) is None


def test_a_diverging_run_is_recorded_not_raised(tiny_digits):
    design = DesignSpec(DesignClass.SINGLE, 1, ps.parse_arch("resnet-8-4"))
    result = train_design(design, tiny_digits, TrainConfig(epochs=3, lr=1e30), seed=0)
    assert result.status == "diverged"
    assert "non-finite" in result.reason
    assert result.epochs == []


def test_auto_picks_the_executor_with_the_fastest_round(tiny_digits, monkeypatch):
    # Every executor is built, warmed up and stepped for real, but timed on a fake clock
    # that each step advances by a scripted time: vmap has the fastest round (10 ms) and the
    # slowest median (50 ms), the loop the fastest median. The fastest round must decide.
    script_s = {
        "loop": [0.020] * 5,
        "fused": [0.030] * 5,
        "vmap": [0.050, 0.050, 0.010, 0.0105, 0.050],
    }
    scripted = ScriptedSteps(script_s)

    def time_on_the_script(steps, clock=None):
        def step_then_tick(name):
            steps[name]()  # the executor's real training step
            scripted.steps[name]()

        candidates = {name: functools.partial(step_then_tick, name) for name in steps}
        return time_candidates(candidates, clock=scripted.clock)

    monkeypatch.setattr(train_loop, "time_candidates", time_on_the_script)
    design = DesignSpec(DesignClass.DEQ, 2, ps.parse_arch("resnet-8-4"))
    choice = choose_executor(design, tiny_digits, TrainConfig(batch_size=32), CPU)
    assert sorted(scripted.order) == sorted(EXECUTORS * 5)  # 5 rounds, every executor
    assert choice.name == "vmap"
    assert choice.step_ms == pytest.approx({"loop": 20, "fused": 30, "vmap": 10})
    assert choice.reason.startswith("vmap has the fastest step, 10.0 ms, against loop 20.0 ms")
    single = DesignSpec(DesignClass.SINGLE, 1, design.member)
    assert choose_executor(single, tiny_digits, TrainConfig(), CPU).name == "loop"


class ScriptedSteps:
    """Candidates whose steps take scripted times on a fake clock: load without timing."""

    def __init__(self, durations_s: dict[str, list[float]]) -> None:
        self.now_s = 0.0
        self.order: list[str] = []
        self._durations = {name: iter(times) for name, times in durations_s.items()}
        self.steps = {name: functools.partial(self._step, name) for name in durations_s}

    def clock(self) -> float:
        return self.now_s

    def _step(self, name: str) -> None:
        self.order.append(name)
        self.now_s += next(self._durations[name])


def test_a_burst_of_load_on_one_candidate_does_not_decide():
    # The case: load put 3 of the loop's 5 steps at 15.0 s against 2.25 s quiet. A
    # median would pick fused, 2x slower for the whole run; the fastest round does not.
    steps = ScriptedSteps(
        {
            "loop": [15.0, 15.0, 2.25, 15.0, 2.3],
            "fused": [4.5, 4.6, 4.5, 4.55, 4.5],
            "vmap": [5.0, 5.1, 5.0, 5.2, 5.0],
        }
    )
    choice = time_candidates(steps.steps, clock=steps.clock)
    assert choice.name == "loop"
    assert choice.step_ms == pytest.approx({"loop": 2250, "fused": 4500, "vmap": 5000})
    assert choice.rounds_ms["loop"] == pytest.approx([15000, 15000, 2250, 15000, 2300])
    assert "fastest of 5 interleaved rounds" in choice.reason
    # Interleaved, and each round starts with the next candidate.
    assert steps.order[:6] == ["loop", "fused", "vmap", "fused", "vmap", "loop"]


def test_rounds_are_timed_again_until_the_fastest_is_confirmed():
    # The loop's fastest round is alone (2.25 s, the rest loaded): more rounds are timed,
    # for every candidate, until a second one confirms it.
    loaded = [15.0] * 5
    steps = ScriptedSteps(
        {
            "loop": [15.0, 15.0, 2.25, 15.0, 15.0, 15.0, 2.26, *loaded],
            "fused": [4.5] * 15,
        }
    )
    choice = time_candidates(steps.steps, clock=steps.clock)
    assert choice.name == "loop"
    assert [len(times) for times in choice.rounds_ms.values()] == [10, 10]
    assert "timed 2 times" in choice.reason and "unsettled" not in choice.reason


def test_re_timing_stops_and_says_so_on_a_machine_that_stays_busy():
    steps = ScriptedSteps({"loop": [2.0 * 1.2**i for i in range(15)], "fused": [4.5] * 15})
    choice = time_candidates(steps.steps, clock=steps.clock)
    assert choice.name == "loop"
    assert len(choice.rounds_ms["loop"]) == 15
    assert "still unsettled after 15 rounds" in choice.reason
    assert "loop's two fastest rounds 20% apart" in choice.reason


def test_a_run_records_how_its_executor_was_chosen(tiny_digits):
    design = DesignSpec(DesignClass.DEQ, 2, ps.parse_arch("resnet-8-4"))
    config = TrainConfig(epochs=1, batch_size=64)
    auto = train_design(design, tiny_digits, config, seed=0).to_dict()
    assert auto["executor_step_ms"] == {
        name: min(times) for name, times in auto["executor_rounds_ms"].items()
    }
    assert auto["executor_reason"].startswith(f"{auto['executor']} has the fastest step")
    given = train_design(design, tiny_digits, config, seed=0, executor="vmap").to_dict()
    assert given["executor_reason"] == "set by the caller" and given["executor_rounds_ms"] == {}


def test_bf16_trains_on_cpu(tiny_digits):
    design = DesignSpec(DesignClass.DEQ, 2, ps.parse_arch("resnet-8-4"))
    config = TrainConfig(epochs=1, batch_size=64, precision="bf16")
    result = train_design(design, tiny_digits, config, seed=0, executor="fused")
    assert result.status == "done"


def test_fp16_needs_a_gpu(tiny_digits):
    design = DesignSpec(DesignClass.SINGLE, 1, ps.parse_arch("resnet-8-4"))
    with pytest.raises(ps.ParamSplitError, match="fp16 needs a CUDA device"):
        train_design(design, tiny_digits, TrainConfig(precision="fp16"), seed=0, executor="loop")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"schedule": "step"}, "schedule must be cosine or multistep"),
        ({"precision": "fp8"}, "precision must be fp32 or bf16 or fp16"),
        ({"warmup_epochs": 5, "epochs": 5}, r"warmup_epochs must be in \[0, epochs\)"),
    ],
)
def test_config_is_validated(kwargs, message):
    with pytest.raises(ps.ParamSplitError, match=message):
        TrainConfig(**kwargs)


def test_unknown_executor_is_refused():
    with pytest.raises(ps.ParamSplitError, match="unknown executor 'threads'"):
        make_executor(
            "threads", ps.parse_arch("resnet-8-4"), ps.InputSpec(), [0], TrainConfig(), CPU
        )


def test_ensemble_metrics_on_known_logits():
    # Two members, three examples, two classes. Member 0 is confident and wrong on example 2;
    # averaging probabilities and averaging logits then disagree.
    logits = torch.tensor(
        [
            [[2.0, 0.0], [1.0, 0.0]],  # both say class 0 (right)
            [[0.0, 3.0], [0.0, 1.0]],  # both say class 1 (right)
            [[9.0, 0.0], [0.0, 2.0]],  # member 0: class 0 (wrong), member 1: class 1 (right)
        ]
    )
    targets = torch.tensor([0, 1, 1])
    metrics = ensemble_metrics(logits, targets)
    assert metrics.member_accuracy == pytest.approx((2 / 3, 1.0))
    assert metrics.logit_accuracy == pytest.approx(2 / 3)  # mean logits 4.5 vs 1: class 0
    assert metrics.accuracy == pytest.approx(2 / 3)  # mean probs favour class 0 as well
    assert metrics.vote_accuracy == pytest.approx(2 / 3)  # the 1-1 tie goes to class 0
    probs = torch.softmax(logits, -1).mean(1)
    expected_nll = -torch.log(probs[torch.arange(3), targets]).mean()
    assert metrics.nll == pytest.approx(float(expected_nll))


def test_ece_is_zero_when_confidence_matches_accuracy():
    probs = torch.tensor([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, torch.tensor([0, 0, 0, 1])) == pytest.approx(0)
    assert expected_calibration_error(probs, torch.tensor([1, 1, 1, 1])) == pytest.approx(0.75)


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("name", ["loop", "fused"])
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, tiny_digits, name):
    # Stopped after epoch 2 of 3, then run again with the same checkpoint: the weights,
    # curve and test metrics are those of a run that was never stopped.
    design = DesignSpec(DesignClass.DEQ, 2, ps.parse_arch("resnet-8-4"))
    config = TrainConfig(epochs=3, batch_size=64, lr=0.05)
    straight = train_design(design, tiny_digits, config, seed=2, executor=name)

    def stop_after_second_epoch(kind, done, total, values):
        if kind == "epoch" and done == 2:
            raise _Interrupt

    path = tmp_path / "run.pt"
    with pytest.raises(_Interrupt):
        train_design(
            design, tiny_digits, config, seed=2, executor=name, checkpoint=path,
            progress=stop_after_second_epoch,
        )  # fmt: skip
    assert path.exists() and not path.with_name("run.pt.tmp").exists()
    resumed = train_design(design, tiny_digits, config, seed=2, executor=name, checkpoint=path)
    _assert_states_close(straight.member_states, resumed.member_states, rtol=0, atol=0)
    assert [r.val.accuracy for r in resumed.epochs] == [r.val.accuracy for r in straight.epochs]
    assert resumed.test == straight.test and resumed.best_epoch == straight.best_epoch


def test_channels_last_and_per_epoch_test_curves(tiny_digits):
    design = DesignSpec(DesignClass.DEQ, 2, ps.parse_arch("resnet-8-4"))
    config = TrainConfig(epochs=2, batch_size=64, channels_last=True, test_every_epoch=True)
    result = train_design(design, tiny_digits, config, seed=0, executor="fused")
    assert result.status == "done"
    assert all(record.test is not None for record in result.epochs)
