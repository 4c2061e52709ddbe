"""Ctrl-C and SIGTERM held off between a claim and the `try` that gives its run back."""

from __future__ import annotations

import os
import signal

import pytest

from paramsplit.study.interrupts import (
    Terminated,
    held_off,
    let_through,
    raise_if_arrived,
    sigterm_as_interrupt,
)


def test_a_ctrl_c_within_the_hold_is_raised_where_it_is_let_through():
    reached = []
    with pytest.raises(KeyboardInterrupt), held_off():
        os.kill(os.getpid(), signal.SIGINT)
        reached.append("after the signal")  # the hold lets the block go on
        let_through()
        reached.append("after let_through")
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler back


def test_a_ctrl_c_within_the_hold_is_raised_where_the_block_ends():
    with pytest.raises(KeyboardInterrupt), held_off():
        os.kill(os.getpid(), signal.SIGINT)
    with held_off():  # nothing arrived: nothing raised
        pass


def test_a_sigterm_within_the_hold_is_terminated_once():
    with sigterm_as_interrupt():
        with pytest.raises(Terminated), held_off():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # the parent's stop and its death: one stop
        # The first SIGTERM ignores those after it, so the release it set going is not cut.
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_raise_if_arrived_raises_only_what_arrived():
    with held_off():
        raise_if_arrived()  # nothing yet
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            raise_if_arrived()
        raise_if_arrived()  # the hold has ended: nothing is raised twice


def test_a_handler_of_the_callers_own_is_left_alone():
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        with held_off():
            os.kill(os.getpid(), signal.SIGINT)
            assert caught == [signal.SIGINT]  # ran at once: it does not raise, nothing to hold
    finally:
        signal.signal(signal.SIGINT, previous)
