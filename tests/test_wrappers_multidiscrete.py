"""FlattenMultiDiscreteAction: the C index order pinned by hand, a bijection (hypothesis), start
offsets, multi-dimensional nvec, batches, the size limit, errors, check_env and vector envs."""

from __future__ import annotations

import functools
import itertools
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.spaces import Discrete, MultiDiscrete
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

from wrappers import FlattenMultiDiscreteAction


class EchoEnv(gym.Env):
    """Observes the last MultiDiscrete action it received, so a test sees what the wrapper sent."""

    def __init__(self, nvec: Any = (2, 3), start: Any = None, dtype: Any = np.int64) -> None:
        self.action_space = MultiDiscrete(nvec, start=start, dtype=dtype)
        self.observation_space = MultiDiscrete(nvec, start=start, dtype=dtype)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.start + self.np_random.integers(self.observation_space.nvec), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise AssertionError(f"{action!r} is not in {self.action_space}")
        self.t += 1
        return np.array(action), 0.0, False, self.t >= 5, {}


def flattened(nvec: Any, start: Any = None, **kwargs: Any) -> FlattenMultiDiscreteAction:
    return FlattenMultiDiscreteAction(EchoEnv(nvec, start), **kwargs)


# ---------------------------------------------------------------------- the order, by hand
def test_c_order_last_component_varies_fastest():
    env = flattened([2, 3])
    assert env.action_space == Discrete(6)
    expected = [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    assert [env.index_to_action(i).tolist() for i in range(6)] == expected
    assert env.index_to_action(np.arange(6)).tolist() == expected
    assert [env.action_to_index(a) for a in expected] == list(range(6))


def test_three_components_by_hand():
    env = flattened([3, 2, 4])  # index = 8 * a0 + 4 * a1 + a2
    assert env.index_to_action(0).tolist() == [0, 0, 0]
    assert env.index_to_action(5).tolist() == [0, 1, 1]
    assert env.index_to_action(13).tolist() == [1, 1, 1]
    assert env.index_to_action(23).tolist() == [2, 1, 3]
    assert env.action_to_index([2, 0, 3]) == 19


def test_start_offsets_are_added_after_unravelling():
    env = flattened([2, 3], start=[1, -1])
    assert env.index_to_action(0).tolist() == [1, -1]
    assert env.index_to_action(4).tolist() == [2, 0]  # [1, 1] + start
    assert env.index_to_action(5).tolist() == [2, 1]
    assert env.action_to_index([2, 0]) == 4
    assert env.action_to_index([1, -1]) == 0


def test_multi_dimensional_nvec_is_flattened_row_by_row():
    env = flattened([[2, 3], [2, 2]], start=[[0, 10], [0, 0]])  # index = 12 * a00 + 4 * a01 + 2 * a10 + a11
    assert env.action_space == Discrete(24)
    assert env.index_to_action(1).tolist() == [[0, 10], [0, 1]]
    assert env.index_to_action(2).tolist() == [[0, 10], [1, 0]]
    assert env.index_to_action(4).tolist() == [[0, 11], [0, 0]]
    assert env.index_to_action(23).tolist() == [[1, 12], [1, 1]]
    assert env.action_to_index([[1, 10], [0, 1]]) == 13
    assert env.index_to_action(np.array([[1, 2], [4, 23]])).shape == (2, 2, 2, 2)


def test_batches_of_any_shape_and_the_space_dtype():
    env = FlattenMultiDiscreteAction(EchoEnv([4, 5], start=[-2, 3], dtype=np.int32))
    indices = np.arange(20).reshape(4, 5)
    actions = env.index_to_action(indices)
    assert actions.shape == (4, 5, 2) and actions.dtype == np.int32
    np.testing.assert_array_equal(env.action_to_index(actions), indices)
    assert env.action_to_index(actions).dtype == np.int64
    assert env.index_to_action(np.array([], dtype=np.int64)).shape == (0, 2)
    assert type(env.action_to_index(actions[0, 0])) is int


def test_step_sends_the_unravelled_action():
    env = flattened([2, 3], start=[1, -1])
    env.reset(seed=0)
    for index, expected in [(0, [1, -1]), (4, [2, 0]), (np.int64(5), [2, 1]), (np.array(3), [2, -1])]:
        obs, *_ = env.step(index)
        assert obs.tolist() == expected


# ---------------------------------------------------------------------- a bijection (hypothesis)
# Shapes of 1 to 3 axes with at most 6 components, counts 1 to 3 (at most 729 combinations).
shapes = st.lists(st.integers(1, 3), min_size=1, max_size=3).filter(lambda shape: int(np.prod(shape)) <= 6)
nvec_and_start = shapes.flatmap(
    lambda shape: st.tuples(
        st.lists(st.integers(1, 3), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))),
        st.lists(st.integers(-5, 5), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))),
        st.just(tuple(shape)),
    )
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(nvec_and_start)
def test_flattening_is_a_bijection_in_c_order(case):
    nvec_flat, start_flat, shape = case
    nvec = np.array(nvec_flat).reshape(shape)
    start = np.array(start_flat).reshape(shape)
    env = flattened(nvec, start)
    n = int(np.prod(nvec))
    assert env.action_space == Discrete(n)
    actions = env.index_to_action(np.arange(n))
    assert actions.shape == (n, *shape)
    assert actions.dtype == np.int64 and (actions >= start).all() and (actions < start + nvec).all()
    # C order: the combinations listed by itertools.product (the last component fastest), plus start.
    product = np.array(list(itertools.product(*[range(k) for k in nvec_flat]))).reshape(n, *shape) + start
    np.testing.assert_array_equal(actions, product)
    np.testing.assert_array_equal(env.action_to_index(actions), np.arange(n))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(nvec_and_start, st.integers(0, 2**31 - 1))
def test_action_to_index_inverts_random_actions(case, seed):
    nvec_flat, start_flat, shape = case
    env = flattened(np.array(nvec_flat).reshape(shape), np.array(start_flat).reshape(shape))
    env.multi_discrete_space.seed(seed)
    action = env.multi_discrete_space.sample()
    index = env.action_to_index(action)
    assert 0 <= index < env.action_space.n
    np.testing.assert_array_equal(env.index_to_action(index), action)


# ---------------------------------------------------------------------- limits and errors
def test_the_size_limit_refuses_large_products_and_can_be_raised():
    with pytest.raises(ValueError, match=r"has 1,048,576 combinations, above max_actions=10,000.*supports it natively"):
        flattened([4] * 10)
    assert flattened([4] * 10, max_actions=2**20).action_space == Discrete(2**20)
    with pytest.raises(ValueError, match="above max_actions=5"):
        flattened([2, 3], max_actions=5)
    with pytest.raises(ValueError, match="more than an index can hold"):
        flattened([2**40, 2**40], max_actions=2**100)


def test_bad_envs_and_bad_actions_are_refused():
    # wrong types are a TypeError, wrong values a ValueError (Gymnasium's convention)
    with pytest.raises(TypeError, match=r"action space is Discrete\(2\); expected a MultiDiscrete space"):
        FlattenMultiDiscreteAction(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="max_actions=0; expected a positive integer"):
        flattened([2, 3], max_actions=0)
    with pytest.raises(TypeError, match=r"max_actions=2\.0 is a float; expected a positive integer"):
        flattened([2, 3], max_actions=2.0)
    env = flattened([2, 3])
    env.reset(seed=0)
    for bad in (6, -1):
        with pytest.raises(ValueError, match=r"is not in Discrete\(6\); expected an integer in \[0, 6\)"):
            env.step(bad)
    for bad in (1.0, np.array([1, 2])):
        with pytest.raises(TypeError, match=r"is not an integer; expected an integer in \[0, 6\)"):
            env.step(bad)
    with pytest.raises(ValueError, match=r"index out of range \(min 0, max 6\); expected integers in \[0, 6\)"):
        env.index_to_action(np.array([0, 6]))
    with pytest.raises(TypeError, match="expected integers"):
        env.index_to_action(np.array([0.0]))
    with pytest.raises(TypeError, match="expected integers"):
        env.action_to_index(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"action shape \(3,\); expected \(2,\)"):
        env.action_to_index([0, 0, 0])
    with pytest.raises(ValueError, match="an action is outside MultiDiscrete"):
        env.action_to_index([[0, 0], [2, 0]])


# ---------------------------------------------------------------------- Gymnasium checks and vector envs
def test_check_env_passes_on_a_flattened_env():
    env = flattened([[2, 3], [4, 1]], start=[[1, 0], [-2, 5]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)  # nothing renders here
    others = [str(w.message) for w in caught if "is different from the unwrapped version" not in str(w.message)]
    assert others == []


@pytest.mark.parametrize("vector_env", [gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv])
def test_vector_envs_of_a_flattened_env_run(vector_env):
    envs = vector_env([functools.partial(flattened, [2, 3], [1, -1])] * 2)
    try:
        assert envs.single_action_space == Discrete(6)
        envs.reset(seed=0)
        for indices, expected in [([0, 5], [[1, -1], [2, 1]]), ([4, 3], [[2, 0], [2, -1]])]:
            obs, *_ = envs.step(np.array(indices))
            assert obs.tolist() == expected
    finally:
        envs.close()


def test_observation_space_is_kept():
    env = FlattenMultiDiscreteAction(EchoEnv([2, 2]))
    assert env.observation_space == MultiDiscrete([2, 2])


def test_example_prints_the_c_order_table():
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(root / "examples/flatten_multidiscrete.py")],
        env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert "MultiDiscrete([3 3 2], start=[-1 -1  0]) -> Discrete(18)" in out
    assert "   1 -> [-1, -1, 1]" in out and "  13 -> [1, -1, 1]" in out
    assert "action_to_index([1, -1, 1]) = 13" in out
