"""The input checks of sqn_agents.spaces follow Gymnasium: TypeError for a wrong type, ValueError for a wrong value."""

import gymnasium as gym
import numpy as np
import pytest

from sqn_agents.observations import ObservationCodec
from sqn_agents.spaces import ActionCodec, as_obs_array

DISCRETE = gym.spaces.Discrete(3, start=-1)
MULTI = gym.spaces.MultiDiscrete([3, 4], start=[1, 0])
FLOATS = gym.spaces.Box(-5, 5, (4,), np.float32)
BYTES = gym.spaces.Box(0, 255, (4,), np.uint8)


@pytest.mark.parametrize(
    ("space", "action", "error", "match"),
    [
        (DISCRETE, "1", TypeError, r"action must be integer-valued .* dtype <U1"),
        (DISCRETE, True, TypeError, "action must be integer-valued .* dtype bool"),
        (DISCRETE, 1 + 0j, TypeError, "action must be integer-valued .* dtype complex"),
        (DISCRETE, None, TypeError, "action must be integer-valued .* dtype object"),
        (MULTI, np.array(["1", "0"]), TypeError, "action must be integer-valued"),
        (MULTI, np.ones(2, bool), TypeError, "dtype bool"),
        (DISCRETE, 0.5, ValueError, "action must be integer-valued .* dtype float64"),
        (DISCRETE, float("nan"), ValueError, "action must be integer-valued"),
        (MULTI, np.array([1.0, 0.25]), ValueError, "action must be integer-valued"),
        (DISCRETE, 2, ValueError, r"action 2 is outside the action space Discrete\(3, start=-1\)"),
        (MULTI, np.array([0, 0]), ValueError, "outside the action space MultiDiscrete"),
    ],
)
def test_action_checks_tell_a_wrong_type_from_a_wrong_value(space, action, error, match):
    codec = ActionCodec(space)
    with pytest.raises(error, match=match):
        codec.to_index(action, codec.batch_size_of(action))


def test_integral_float_actions_are_accepted():
    codec = ActionCodec(DISCRETE)
    assert codec.to_index(1.0, None).tolist() == [[2]]


@pytest.mark.parametrize(
    ("space", "obs", "error", "match"),
    [
        (FLOATS, np.array(["0", "1", "0", "1"]), TypeError, r"obs has dtype <U1; expected numbers of dtype float32"),
        (FLOATS, np.zeros(4, np.complex64), TypeError, "obs has dtype complex64"),
        (FLOATS, [None] * 4, TypeError, "obs has dtype object"),
        (BYTES, np.zeros(4, np.float32), TypeError, "obs has dtype float32, but the observation space holds uint8"),
        (BYTES, np.array([0, 1, 2, 300]), ValueError, r"obs holds values in \[0, 300\], which do not fit"),
        (FLOATS, np.array([0.0, np.nan, 0.0, 0.0]), ValueError, "obs contains NaN or infinity"),
        (FLOATS, [[0.0, 1.0], [0.0]], ValueError, "obs is not a rectangular array of numbers"),
    ],
)
def test_observation_checks_tell_a_wrong_type_from_a_wrong_value(space, obs, error, match):
    with pytest.raises(error, match=match):
        as_obs_array(obs, space)


@pytest.mark.parametrize("space", [gym.spaces.Box(-1, 1, (1,)), gym.spaces.MultiBinary(3), gym.spaces.Dict({})])
def test_an_unsupported_action_space_is_a_type_error(space):
    with pytest.raises(TypeError, match="action_space must be gymnasium.spaces.Discrete or MultiDiscrete"):
        ActionCodec(space)


@pytest.mark.parametrize("space", [gym.spaces.Text(3), gym.spaces.Graph(gym.spaces.Discrete(2), None)])
def test_an_unsupported_observation_space_is_a_type_error(space):
    # Discrete and Dict observations are supported since issue 12 (tests/test_observation_spaces.py)
    with pytest.raises(TypeError, match="observation_space must be gymnasium.spaces.Box, Discrete"):
        ObservationCodec(space, ActionCodec(gym.spaces.Discrete(2)))


def test_an_empty_dict_observation_space_is_a_value_error():
    with pytest.raises(ValueError, match="has no parts"):
        ObservationCodec(gym.spaces.Dict({}), ActionCodec(gym.spaces.Discrete(2)))
