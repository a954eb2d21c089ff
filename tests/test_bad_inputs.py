"""Bad input never corrupts state: malformed calls raise a clear error and change nothing.

Explicit tests pin the non-finite rules (see docs/checkpoints.md, "Bad inputs"):

* a NaN or infinity in a reward or observation passed to ``observe`` (or a reward too large for
  float32) raises ``ValueError`` before anything is stored;
* a non-finite loss in ``learn`` (e.g. from a finite but huge reward) skips that gradient step
  with a ``RuntimeWarning`` and counts it in ``skipped_updates``; the networks, targets,
  temperature and optimizer states are untouched.

Property-based tests (hypothesis, derandomized so CI is reproducible) throw malformed inputs at
``act``, ``observe``, ``SQNConfig`` and ``SQNAgent.load`` and check that every one ends in the
expected error (Gymnasium's convention: ``TypeError`` for a wrong type, ``ValueError`` for a wrong
value; ``CheckpointError`` for a bad checkpoint) with the agent's parameters, replay, RNGs and
counters unchanged, and that the agent still works afterwards.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_state import assert_same_state, group_path, read_manifest, replace_file_rehashed, snapshot
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.checkpoint import MANIFEST, CheckpointError

torch.set_num_threads(1)

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
CONFIG = SQNConfig(hidden_sizes=(16,), batch_size=8, buffer_size=64, learning_starts=8, replay="uniform")

# Three agents that cover the input checks: float vector observations with a Discrete space that
# has a start offset, a MultiDiscrete space with offsets, and uint8 observations.
KINDS = {
    "discrete": (gym.spaces.Box(-5, 5, (4,), np.float32), gym.spaces.Discrete(3, start=-1)),
    "multidiscrete": (gym.spaces.Box(-5, 5, (4,), np.float32), gym.spaces.MultiDiscrete([3, 4], start=[1, 0])),
    "uint8": (gym.spaces.Box(0, 255, (6,), np.uint8), gym.spaces.Discrete(2)),
}
BATCH = 3  # batched calls use 3 sub-envs


def valid_transition(kind: str, batched: bool, rng: np.random.Generator) -> dict[str, Any]:
    obs_space, act_space = KINDS[kind]
    n = BATCH if batched else 1

    def obs():
        if obs_space.dtype == np.uint8:
            x = rng.integers(0, 256, (n, *obs_space.shape)).astype(np.uint8)
        else:
            x = rng.uniform(-5, 5, (n, *obs_space.shape)).astype(np.float32)
        return x if batched else x[0]

    if isinstance(act_space, gym.spaces.Discrete):
        a = rng.integers(act_space.start, act_space.start + act_space.n, n)
    else:
        a = rng.integers(act_space.start, act_space.start + act_space.nvec, (n, len(act_space.nvec)))
    flags = rng.random((2, n)) < 0.1
    return {
        "obs": obs(),
        "action": a if batched else (int(a[0]) if a.ndim == 1 else a[0]),
        "reward": rng.normal(size=n).astype(np.float32) if batched else float(rng.normal()),
        "next_obs": obs(),
        "terminated": flags[0] if batched else bool(flags[0, 0]),
        "truncated": flags[1] if batched else bool(flags[1, 0]),
    }


def make_agent(kind: str, batched: bool = False, seed: int = 0) -> SQNAgent:
    """A small agent that has learned a little (non-empty replay, Adam moments, non-zero counters)."""
    obs_space, act_space = KINDS[kind]
    agent = SQNAgent(obs_space, act_space, CONFIG, seed=seed, device="cpu", autoreset_mode="disabled")
    rng = np.random.default_rng(seed)
    for _ in range(12):
        agent.observe(**valid_transition(kind, batched, rng))
        agent.learn()
    assert agent.gradient_steps > 0
    return agent


@functools.cache
def shared_agent(kind: str, batched: bool) -> SQNAgent:
    """One agent per kind for all examples of a property (each example snapshots it first)."""
    return make_agent(kind, batched)


def still_works(agent: SQNAgent, kind: str, batched: bool, seed: int) -> None:
    """A valid act / observe / learn after a rejected call succeeds."""
    t = valid_transition(kind, batched, np.random.default_rng(seed))
    action = agent.act(t["obs"])
    assert agent.action_space.contains(action if batched is False else action[0])
    before = agent.env_steps
    agent.observe(**t)
    assert agent.env_steps == before + (BATCH if batched else 1)
    agent.learn()


Errors = type[Exception] | tuple[type[Exception], ...]


def refused(agent: SQNAgent, call, match: str | None = None, error: Errors = ValueError) -> Exception:
    """``call()`` raises ``error`` (with ``match``) and leaves the agent exactly as it was."""
    before = snapshot(agent)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow/cast warnings leak out of a refused call
        with pytest.raises(error, match=match) as info:
            call()
    assert_same_state(before, snapshot(agent))
    return info.value


# ---------------------------------------------------------------------- non-finite values, explicitly
@pytest.mark.parametrize(
    "field, value, match",
    [
        ("reward", float("nan"), "reward must be finite"),
        ("reward", float("inf"), "reward must be finite"),
        ("reward", -np.inf, "reward must be finite"),
        ("reward", 1e39, r"reward must be finite \(and within float32 range\)"),  # finite in Python, inf in float32
        ("obs", [0.0, np.nan, 0.0, 0.0], "obs contains NaN or infinity"),
        ("next_obs", [0.0, 0.0, np.inf, 0.0], "next_obs contains NaN or infinity"),
        ("obs", np.array([0.0, 0.0, 0.0, -1e300]), r"obs contains NaN or infinity \(as float32\)"),
        ("terminated", float("nan"), "terminated must be a bool"),
        ("truncated", 0.5, "truncated must be a bool"),
    ],
)
def test_non_finite_values_in_observe_are_refused_before_anything_is_stored(field, value, match):
    agent = make_agent("discrete")
    t = valid_transition("discrete", False, np.random.default_rng(1))
    t[field] = value
    refused(agent, lambda: agent.observe(**t), match)
    still_works(agent, "discrete", False, seed=2)


def test_one_bad_row_in_a_batch_refuses_the_whole_batch():
    agent = SQNAgent(*KINDS["discrete"], CONFIG, seed=0, device="cpu")  # next_step autoreset bookkeeping on
    rng = np.random.default_rng(0)
    t = valid_transition("discrete", True, rng)
    t["terminated"] = np.array([True, False, False])
    agent.observe(**t)  # sub-env 0 is done: its next row is a reset step and will be dropped
    t = valid_transition("discrete", True, rng)
    t["reward"] = np.array([1.0, np.nan, 0.0])
    refused(agent, lambda: agent.observe(**t), "reward must be finite")
    np.testing.assert_array_equal(agent.intake.prev_done, [True, False, False])  # bookkeeping untouched
    t["reward"] = np.array([1.0, 2.0, 0.0])
    agent.observe(**t)
    assert agent.env_steps == 5  # 3 + 2: the reset row of sub-env 0 was dropped


def _final_obs(*rows):
    out = np.empty(len(rows), dtype=object)
    out[:] = list(rows)
    return out


@pytest.mark.parametrize(
    "info, match, error",
    [
        (None, r"pass info=info from envs.step\(\)", ValueError),
        ([("final_obs", 1)], r"pass info=info from envs.step\(\)", ValueError),
        ({"final_obs": None}, "no final observation for done sub-env 1", ValueError),
        ({"final_obs": _final_obs(None)}, "no final observation for done sub-env 1", ValueError),
        ({"final_obs": _final_obs(None, None, None)}, r"info\['final_obs'\]\[1\] has dtype object", TypeError),
        ({"final_obs": _final_obs(None, np.array([0.5], np.float32), None)}, r"info\['final_obs'\]\[1\] has shape \(1,\)",
         ValueError),
        ({"final_obs": _final_obs(None, np.array([0, np.nan, 0, 0], np.float32), None)},
         r"info\['final_obs'\]\[1\] contains NaN", ValueError),
    ],
    ids=["no-info", "not-a-dict", "none", "short", "none-row", "shape", "nan"],
)
def test_same_step_autoreset_with_a_malformed_final_obs_is_refused(info, match, error):
    agent = SQNAgent(*KINDS["discrete"], CONFIG, seed=0, device="cpu", autoreset_mode="same_step")
    t = valid_transition("discrete", True, np.random.default_rng(0))
    t["terminated"], t["truncated"] = np.array([False, True, False]), np.zeros(3, bool)
    refused(agent, lambda: agent.observe(**t, info=info), match, error)
    final = np.full(4, 0.25, np.float32)
    agent.observe(**t, info={"final_obs": _final_obs(None, final, None)})
    np.testing.assert_array_equal(agent.replay.next_obs[1], final)  # the real last observation, not the reset one
    np.testing.assert_array_equal(agent.replay.next_obs[[0, 2]], t["next_obs"][[0, 2]])


def test_an_empty_batch_is_refused():
    agent = make_agent("discrete", batched=True)
    empty = {"obs": np.zeros((0, 4), np.float32), "action": np.zeros(0, int), "reward": np.zeros(0),
             "next_obs": np.zeros((0, 4), np.float32), "terminated": np.zeros(0, bool), "truncated": np.zeros(0, bool)}
    refused(agent, lambda: agent.observe(**empty), "empty batch")
    still_works(agent, "discrete", True, seed=3)


@pytest.mark.parametrize(("mode", "error"), [(1, TypeError), (None, TypeError), ("sometimes", ValueError)])
def test_a_bad_autoreset_mode_is_refused_by_type_and_by_value(mode, error):
    with pytest.raises(error, match="autoreset_mode"):
        SQNAgent(*KINDS["discrete"], CONFIG, seed=0, device="cpu", autoreset_mode=mode)


def _learnable_params(agent: SQNAgent) -> dict[str, Any]:
    s = snapshot(agent)
    return {k: s[k] for k in ("q_nets", "target_nets", "log_alpha", "q_optimizer", "alpha_optimizer")}


def test_a_non_finite_loss_skips_the_update_with_a_warning(monkeypatch):
    agent = make_agent("discrete")
    sample = agent.replay.sample

    def poisoned(batch_size, **kwargs):  # kwargs: the n-step arguments
        batch = sample(batch_size, **kwargs)
        return batch._replace(rewards=np.full_like(batch.rewards, np.inf))

    monkeypatch.setattr(agent.replay, "sample", poisoned)
    before, counters = _learnable_params(agent), snapshot(agent)["counters"]
    agent.observe(**valid_transition("discrete", False, np.random.default_rng(5)))
    # The skip happens on the device: learn() returns the step's metrics, and reading them warns.
    metrics = agent.learn()
    with pytest.warns(RuntimeWarning, match=r"skipped 1 gradient step\(s\) \(the Q loss was not finite\); 1 skipped so far"):
        assert not np.isfinite(metrics["q_loss"])
    assert_same_state(before, _learnable_params(agent))
    env_steps, updates, gradient_steps, skipped = (
        counters[k] for k in ("env_steps", "updates", "gradient_steps", "skipped_updates")
    )
    assert (agent.env_steps, agent.updates, agent.gradient_steps, agent.skipped_updates) == (
        env_steps + 1, updates + 1, gradient_steps + 1, skipped + 1  # gradient_steps counts skipped steps too
    )

    monkeypatch.setattr(agent.replay, "sample", sample)  # healthy batches: learning goes on
    agent.observe(**valid_transition("discrete", False, np.random.default_rng(6)))
    metrics = agent.learn()
    assert metrics and all(np.isfinite(v) for v in metrics.values())
    assert agent.gradient_steps == gradient_steps + 2


def test_a_huge_but_finite_reward_is_stored_and_its_updates_are_skipped():
    """No monkeypatching: 3e38 fits float32, so observe() stores it; the squared TD error overflows."""
    agent = SQNAgent(*KINDS["discrete"], CONFIG, seed=0, device="cpu")
    rng = np.random.default_rng(0)
    for _ in range(CONFIG.learning_starts):
        agent.observe(**{**valid_transition("discrete", False, rng), "reward": 3e38})
    before = _learnable_params(agent)
    agent.learn()
    with pytest.warns(RuntimeWarning, match="skipped 1 gradient step"):
        assert agent.skipped_updates == 1 and agent.gradient_steps == 1  # gradient_steps counts skipped steps too
    after = _learnable_params(agent)
    for name in ("q_optimizer", "alpha_optimizer"):  # fused Adam creates its state (step 0, zero moments), the
        assert not before[name]["state"]  # same as none, at its first step, even a skipped one
        assert all(not v.any() for state in after[name]["state"].values() for v in state.values())
        after[name]["state"] = {}
    assert_same_state(before, after)


# ---------------------------------------------------------------------- strategies of malformed values
def _with_non_finite(base: np.ndarray, data: st.DataObject) -> np.ndarray:
    arr = base.astype(data.draw(st.sampled_from([np.float32, np.float64]))).copy()
    index = data.draw(st.integers(0, arr.size - 1))
    arr.reshape(-1)[index] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return arr


def _other_shape(shape: tuple[int, ...], item_shape: tuple[int, ...] | None = None) -> st.SearchStrategy:
    """Shapes other than ``shape``; with ``item_shape``, also neither ``item_shape`` nor ``(k, *item_shape)``."""
    shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5).filter(lambda s: s != shape)
    if item_shape is not None:
        shapes = shapes.filter(lambda s: s != item_shape and s[1:] != item_shape)
    return shapes


def bad_obs(base: np.ndarray, space: gym.spaces.Box, data: st.DataObject, for_act: bool = False) -> tuple[Any, Errors]:
    """An observation (single or batch, like ``base``) that observe() must refuse, and the error it must raise;
    ``for_act``: that act() must refuse (act() takes a single observation or a batch of any size, so fewer
    shapes are wrong)."""
    value, how = _bad_obs(base, space, data, for_act)
    return value, TypeError if how in ("complex", "text", "none", "float") else ValueError


def _bad_obs(base: np.ndarray, space: gym.spaces.Box, data: st.DataObject, for_act: bool) -> tuple[Any, str]:
    choices = ["shape", "complex", "text", "none", "ragged"]
    if space.dtype == np.uint8:
        choices += ["float", "int-range"]
    else:
        choices += ["non-finite", "float32-overflow"]
    how = data.draw(st.sampled_from(choices), label="bad obs")
    if how == "shape":
        return np.zeros(data.draw(_other_shape(base.shape, space.shape if for_act else None)), base.dtype), how
    if how == "complex":
        return base.astype(np.complex64), how
    if how == "text":
        return base.astype(str), how
    if how == "none":
        return (None if data.draw(st.booleans()) else [None] * base.shape[-1]), how
    if how == "ragged":
        return [[0.0] * base.shape[-1], [0.0]], how
    if how == "float":  # floats into uint8: refused even when integral
        return base.astype(data.draw(st.sampled_from([np.float16, np.float32, np.float64]))), how
    if how == "int-range":
        arr = base.astype(np.int64)
        arr.reshape(-1)[data.draw(st.integers(0, arr.size - 1))] = data.draw(
            st.one_of(st.integers(256, 2**40), st.integers(-(2**40), -1))
        )
        return arr, how
    if how == "non-finite":
        return _with_non_finite(base, data), how
    arr = base.astype(np.float64)  # float32-overflow
    arr.reshape(-1)[data.draw(st.integers(0, arr.size - 1))] = data.draw(st.sampled_from([1e39, -1e300]))
    return arr, how


def bad_action(base: Any, space: gym.spaces.Space, data: st.DataObject) -> tuple[Any, Errors]:
    """An action that observe() must refuse, and the error it must raise."""
    value, how = _bad_action(base, space, data)
    if how == "none":  # None has shape (): the shape check or the dtype check refuses it, whichever comes first
        return value, (TypeError, ValueError)
    return value, TypeError if how in ("text", "bool") else ValueError


def _bad_action(base: Any, space: gym.spaces.Space, data: st.DataObject) -> tuple[Any, str]:
    base = np.asarray(base)
    how = data.draw(st.sampled_from(["range", "fraction", "non-finite", "shape", "text", "none", "bool", "ragged"]),
                    label="bad action")
    if how == "range":
        low = np.asarray(space.start)
        high = low + (space.n if isinstance(space, gym.spaces.Discrete) else space.nvec) - 1
        arr = base.astype(np.int64).copy()
        flat, i = arr.reshape(-1), data.draw(st.integers(0, base.size - 1))
        lo, hi = np.broadcast_to(low, arr.shape).reshape(-1)[i], np.broadcast_to(high, arr.shape).reshape(-1)[i]
        flat[i] = data.draw(st.one_of(st.integers(hi + 1, 2**62), st.integers(-(2**62), lo - 1)))
        return (arr if arr.ndim else int(arr)), how
    if how == "fraction":
        return base + 0.5, how
    if how == "non-finite":
        return _with_non_finite(base, data), how
    if how == "shape":
        return np.zeros(data.draw(_other_shape(base.shape)), np.int64), how
    if how == "text":
        return base.astype(str), how
    if how == "none":
        return None, how
    if how == "bool":
        return np.ones(base.shape, bool), how
    return [[0, 1], [0]], how  # ragged


def bad_scalars(base: Any, data: st.DataObject, flag: bool) -> tuple[Any, Errors]:
    """A reward (``flag=False``) or terminated/truncated flag (``flag=True``) that observe() must refuse,
    and the error: TypeError for a value of the wrong type (text, or None where one value is due)."""
    n = np.size(base)
    how = data.draw(st.sampled_from(["value", "shape", "text", "none", "ragged"]), label="bad scalar")
    if how == "value":
        values = [np.nan, 0.5, 2.0, -1.0, np.inf] if flag else [np.nan, np.inf, -np.inf, 1e39]
        arr = np.array(base, dtype=np.float64, copy=True)
        arr.reshape(-1)[data.draw(st.integers(0, n - 1))] = data.draw(st.sampled_from(values))
        return (arr if arr.ndim else float(arr)), ValueError
    if how == "shape":
        shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)
                          .filter(lambda s: int(np.prod(s)) != n or len(s) > 1))
        return np.zeros(shape), ValueError
    if how == "text":
        return ("yes" if n == 1 else ["1"] * n), TypeError
    if how == "none":
        return None, TypeError if n == 1 else ValueError  # one None has the right shape but no number
    return [[1.0], [1.0, 2.0]], ValueError  # ragged


# ---------------------------------------------------------------------- properties: act and observe
@PROPERTY
@given(kind=st.sampled_from(sorted(KINDS)), batched=st.booleans(), deterministic=st.sampled_from([None, True, False]),
       data=st.data())
def test_act_refuses_malformed_observations_and_changes_nothing(kind, batched, deterministic, data):
    agent = shared_agent(kind, batched)
    base = valid_transition(kind, batched, np.random.default_rng(0))["obs"]
    obs, error = bad_obs(base, agent.observation_space, data, for_act=True)
    refused(agent, lambda: agent.act(obs, deterministic=deterministic), "obs", error)
    still_works(agent, kind, batched, seed=data.draw(st.integers(0, 2**16)))


@PROPERTY
@given(kind=st.sampled_from(sorted(KINDS)), batched=st.booleans(),
       field=st.sampled_from(["obs", "action", "reward", "next_obs", "terminated", "truncated"]), data=st.data())
def test_observe_refuses_one_malformed_argument_and_changes_nothing(kind, batched, field, data):
    agent = shared_agent(kind, batched)
    t = valid_transition(kind, batched, np.random.default_rng(data.draw(st.integers(0, 2**16))))
    error: Errors
    if field in ("obs", "next_obs"):
        t[field], error = bad_obs(t[field], agent.observation_space, data)
    elif field == "action":
        t[field], error = bad_action(t[field], agent.action_space, data)
    else:
        t[field], error = bad_scalars(t[field], data, flag=field != "reward")
    refused(agent, lambda: agent.observe(**t), error=error)
    still_works(agent, kind, batched, seed=data.draw(st.integers(0, 2**16)))


@PROPERTY
@given(kind=st.sampled_from(sorted(KINDS)), batched=st.booleans(), seed=st.integers(0, 2**16))
def test_valid_inputs_of_any_dtype_are_accepted(kind, batched, seed):
    """The other side of the contract: lossless casts (ints into float spaces, float64, lists) are fine."""
    agent = shared_agent(kind, batched)
    t = valid_transition(kind, batched, np.random.default_rng(seed))
    if agent.observation_space.dtype == np.uint8:
        t["obs"] = t["obs"].astype(np.int64)
    else:
        t["obs"] = t["obs"].astype(np.float64).tolist()
    t["reward"] = np.asarray(t["reward"], np.float64)
    t["terminated"] = np.asarray(t["terminated"], np.int64)
    t["action"] = np.asarray(t["action"], np.float64)  # integral floats are accepted, like np.int64(2.0)
    before = agent.env_steps
    agent.observe(**t)
    assert agent.env_steps == before + (BATCH if batched else 1)


# ---------------------------------------------------------------------- properties: SQNConfig
_POSITIVE = ["learning_rate", "alpha_learning_rate", "initial_alpha", "max_grad_norm"]
_INTS = {"batch_size": 1, "buffer_size": 1, "train_freq": 1, "gradient_steps": 1, "learning_starts": 0}
_UNIT = {"gamma": (0.0, 1.0, "[)"), "tau": (0.0, 1.0, "(]"), "target_entropy_ratio": (0.0, 1.0, "()")}
_CHOICES = ["loss", "multidiscrete_target", "replay"]
_BOOLS = ["autotune_alpha", "shared_alpha"]
_JUNK = st.one_of(st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=2), st.complex_numbers(),
                  st.just(float("nan")), st.just(float("inf")), st.just(-float("inf")))


def bad_config_value(field: str, data: st.DataObject) -> Any:
    junk = data.draw(_JUNK)
    if field in _POSITIVE:
        bad = st.one_of(st.floats(max_value=0.0), st.integers(max_value=0), st.booleans(),
                        _JUNK.filter(lambda v: v is not None or field != "max_grad_norm"))
    elif field in _INTS:
        low = _INTS[field]
        bad = st.one_of(st.integers(max_value=low - 1), st.floats(allow_nan=True), st.booleans(), _JUNK)
    elif field in _UNIT:
        lo, hi, ends = _UNIT[field]
        outside = st.one_of(st.floats(max_value=lo, exclude_max=ends[0] == "["), st.floats(min_value=hi, exclude_min=ends[1] == "]"))
        bad = st.one_of(outside, st.booleans(), _JUNK)
    elif field in _CHOICES:
        bad = st.one_of(st.text(max_size=8).filter(lambda s: s not in ("mse", "huber", "independent", "mean", "auto",
                                                                       "uniform", "frame_stack")),
                        st.integers(), st.none(), st.just(["mse"]))
    elif field in _BOOLS:
        bad = st.one_of(st.integers(0, 1), st.none(), st.text(max_size=3), st.just(np.bool_(True)))
    elif field == "hidden_sizes":
        bad = st.one_of(st.just(()), st.just([]), st.none(), st.integers(), st.text(min_size=1, max_size=3),
                        st.lists(st.one_of(st.integers(max_value=0), st.booleans(), st.floats(), st.text(max_size=2)),
                                 min_size=1, max_size=3).map(tuple))
    else:
        raise AssertionError(field)
    return data.draw(st.one_of(bad, st.just(junk)) if field not in _BOOLS + _CHOICES else bad)


@PROPERTY
@given(field=st.sampled_from(_POSITIVE + list(_INTS) + list(_UNIT) + _CHOICES + _BOOLS + ["hidden_sizes"]),
       data=st.data())
def test_sqnconfig_refuses_malformed_fields_naming_them(field, data):
    value = bad_config_value(field, data)
    with pytest.raises(config_error(field, value), match=field):
        SQNConfig(**{field: value})


def config_error(field: str, value: Any) -> type[Exception]:
    """The error SQNConfig owes a bad ``value``: TypeError when its type is wrong for the field, else ValueError."""
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if field in _POSITIVE or field in _UNIT:
        right_type = is_int(value) or isinstance(value, float)
    elif field in _INTS:
        right_type = is_int(value)
    elif field in _CHOICES:
        right_type = isinstance(value, str)
    elif field in _BOOLS:
        right_type = isinstance(value, bool)
    else:  # hidden_sizes
        right_type = isinstance(value, (tuple, list)) and all(map(is_int, value))
    event(f"{field}: {'ValueError' if right_type else 'TypeError'}")
    return ValueError if right_type else TypeError


def test_sqnconfig_batch_larger_than_buffer_is_refused():
    with pytest.raises(ValueError, match=r"batch_size \(64\) must not exceed buffer_size \(32\)"):
        SQNConfig(batch_size=64, buffer_size=32)


@pytest.mark.parametrize("value", [64, 1.5, None, "64", {64: 1}, range(2, 0)])
def test_sqnconfig_hidden_sizes_that_is_not_a_sequence(value):
    with pytest.raises(TypeError, match="hidden_sizes must be a non-empty tuple of positive ints"):
        SQNConfig(hidden_sizes=value)


@PROPERTY
@given(
    gamma=st.floats(0.0, 1.0, exclude_max=True), tau=st.floats(0.0, 1.0, exclude_min=True),
    learning_rate=st.floats(1e-8, 10.0), batch_size=st.integers(1, 64), extra=st.integers(0, 1000),
    hidden_sizes=st.lists(st.integers(1, 512), min_size=1, max_size=3).map(tuple),
    max_grad_norm=st.one_of(st.none(), st.floats(1e-3, 1e3)), loss=st.sampled_from(["mse", "huber"]),
)
def test_valid_sqnconfigs_round_trip_through_the_checkpoint_dict(gamma, tau, learning_rate, batch_size, extra,
                                                               hidden_sizes, max_grad_norm, loss):
    cfg = SQNConfig(gamma=gamma, tau=tau, learning_rate=learning_rate, batch_size=batch_size,
                    buffer_size=batch_size + extra, hidden_sizes=hidden_sizes, max_grad_norm=max_grad_norm, loss=loss)
    assert SQNConfig.from_dict(cfg.to_dict()) == cfg
    assert dataclasses.asdict(SQNConfig.from_dict(cfg.to_dict())) == dataclasses.asdict(cfg)


# ---------------------------------------------------------------------- properties: corrupted checkpoints
@functools.cache
def reference_checkpoint() -> tuple[Path, dict[str, Any]]:
    """A saved checkpoint (with replay) of a small trained agent, and the state it must load as."""
    agent = make_agent("multidiscrete")
    directory = Path(tempfile.mkdtemp(prefix="sqn-bad-inputs-")) / "agent"
    agent.save(directory, include_replay=True)
    return directory, snapshot(SQNAgent.load(directory, device="cpu"))


def _copy_reference(tmp: str) -> Path:
    directory = Path(tmp) / "agent"
    shutil.copytree(reference_checkpoint()[0], directory)
    return directory


def _mutate(data: bytes, draw) -> bytes:
    how = draw(st.sampled_from(["flip", "truncate", "append"]))
    if how == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 3))):
            out[draw(st.integers(0, len(out) - 1))] ^= draw(st.integers(1, 255))
        return bytes(out)
    if how == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    return data + draw(st.binary(min_size=1, max_size=16))


def _poison_value(data: bytes, draw) -> bytes:
    """Overwrite 4 aligned bytes of a safetensors file's tensor data with an absurd float32 (NaN, inf,
    negative, huge): the edits a random flip rarely makes, and the ones that hurt (NaN weights, negative
    Adam second moments, out-of-range action indices, ...)."""
    header = 8 + int.from_bytes(data[:8], "little")
    if header + 4 > len(data):
        return _mutate(data, draw)
    at = header + 4 * draw(st.integers(0, (len(data) - header) // 4 - 1))
    value = np.float32(draw(st.sampled_from([np.nan, np.inf, -np.inf, -1.0, -1e30, 1e30, 3e38])))
    return data[:at] + value.tobytes() + data[at + 4 :]


def _assert_clean_refusal(err: CheckpointError) -> None:
    """Raised by sqn_agents itself, with no chained exception from torch, safetensors or json."""
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    tb = err.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert f"{os.sep}sqn_agents{os.sep}" in tb.tb_frame.f_code.co_filename


@PROPERTY
@given(target=st.sampled_from([MANIFEST, "model", "state", "replay"]), data=st.data())
def test_corrupted_checkpoint_bytes_are_refused_or_harmless(target, data):
    """Any flip, truncation or extension of any file: a CheckpointError, or (a harmless edit such as JSON
    whitespace in the manifest) an agent identical to the saved one. Never another exception."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = _copy_reference(tmp)
        path = directory / MANIFEST if target == MANIFEST else group_path(directory, target)
        path.write_bytes(_mutate(path.read_bytes(), data.draw))
        try:
            agent = SQNAgent.load(directory, device="cpu")
        except CheckpointError as err:
            event("refused")
            _assert_clean_refusal(err)
            return
        event("loaded")
        assert_same_state(reference_checkpoint()[1], snapshot(agent))


@settings(PROPERTY, max_examples=60)
@given(target=st.sampled_from(["model", "state", "replay"]), data=st.data())
def test_forged_checkpoints_with_valid_hashes_are_refused_or_give_a_working_agent(target, data):
    """Untrusted checkpoints whose hashes were recomputed after an edit: the checks after the hash must
    refuse them with a CheckpointError, or the loaded agent must act, observe and learn without errors."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = _copy_reference(tmp)
        path = group_path(directory, target)
        edit = data.draw(st.sampled_from([_mutate, _poison_value, _poison_value]))
        replace_file_rehashed(directory, target, edit(path.read_bytes(), data.draw))
        assert read_manifest(directory)["files"][target]["bytes"] == path.stat().st_size
        try:
            agent = SQNAgent.load(directory, device="cpu")
        except CheckpointError as err:
            event("refused")
            _assert_clean_refusal(err)
            return
        event("loaded")
        loaded = snapshot(agent)  # every tensor of a loaded agent is finite
        tensors = [*loaded["q_nets"].values(), *loaded["target_nets"].values(), loaded["log_alpha"]]
        for opt in ("q_optimizer", "alpha_optimizer"):
            tensors += [v for entries in loaded[opt]["state"].values() for v in entries.values()]
        assert all(torch.isfinite(t).all() for t in tensors)
        assert all(np.isfinite(a).all() for a in loaded["replay"].values())
        with warnings.catch_warnings():
            # Absurd but finite values (a weight of 1e30, a reward of 3e38) are data, not corruption: they may
            # make losses non-finite (skipped updates, with a warning) but must not raise.
            warnings.simplefilter("ignore", RuntimeWarning)
            for seed in range(3):
                still_works(agent, "multidiscrete", False, seed)
