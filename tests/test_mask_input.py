"""``mask_as_input=True``: the legal-action mask is one more input part of the networks (and still masks).

Without the option the networks never see the mask: two observations that differ only in their
mask get identical Q values. With it they differ, acting and learning feed the mask (from the
observation or given explicitly), a checkpoint keeps the option, and a bad value is refused.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_state import read_manifest, write_manifest

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.actor import Actor
from sqn_agents.observations import MASK_KEY

torch.set_num_threads(1)

N = 4
SPACE = gym.spaces.Dict({"board": gym.spaces.Box(-1, 1, (3,), np.float32), MASK_KEY: gym.spaces.MultiBinary(N)})
ACTIONS = gym.spaces.Discrete(N)
CONFIG = SQNConfig(hidden_sizes=(16,), batch_size=8, buffer_size=64, learning_starts=8)


def obs_with(mask: list[int]) -> dict:
    return {"board": np.array([0.1, -0.2, 0.3], np.float32), MASK_KEY: np.array(mask, np.int8)}


def q_of(agent: SQNAgent, obs: dict) -> torch.Tensor:
    """The acting Q table of one observation, as ``act`` computes it (the mask part given as stored)."""
    arrays, _ = agent.actor.obs_codec.encode(obs)
    return agent.actor.q_values({k: torch.as_tensor(v)[None] for k, v in arrays.items()})


@pytest.mark.parametrize("mask_as_input", [False, True])
def test_only_with_the_option_does_the_mask_change_the_q_values(mask_as_input):
    agent = SQNAgent(SPACE, ACTIONS, CONFIG, device="cpu", seed=0, mask_as_input=mask_as_input)
    assert (MASK_KEY in agent.learner.obs_codec.network_space.spaces) is mask_as_input
    a, b = q_of(agent, obs_with([1, 1, 0, 1])), q_of(agent, obs_with([0, 1, 1, 1]))
    if mask_as_input:
        assert not torch.equal(a, b)
        assert agent.learner.q_nets[0].head.net[1].in_features == 3 + N  # the board and the (1, N) mask
    else:
        assert torch.equal(a, b)
        assert agent.learner.q_nets[0].head.net[1].in_features == 3


def _record_inputs(agent: SQNAgent) -> list[dict]:
    seen: list[dict] = []
    for net in (*agent.learner.q_nets, *agent.learner.target_nets):
        net.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    return seen


def test_act_and_learn_feed_the_mask_and_it_still_masks():
    env_rng = np.random.default_rng(0)
    agent = SQNAgent(SPACE, ACTIONS, CONFIG, device="cpu", seed=0, mask_as_input=True)
    seen = _record_inputs(agent)
    mask = [0, 0, 1, 0]
    for _ in range(20):
        assert agent.act(obs_with(mask)) == 2  # the only legal action, sampled
    fed = seen[-1][MASK_KEY]
    assert fed.dtype == torch.bool and fed.tolist() == [[[False, False, True, False]]]
    seen.clear()
    for _ in range(12):
        nxt = env_rng.integers(0, 2, N)
        nxt[env_rng.integers(N)] = 1
        agent.observe(obs_with(mask), agent.act(obs_with(mask)), 1.0, obs_with(nxt.tolist()), False, False)
        agent.learn()
        mask = nxt.tolist()
    assert agent.updates > 0 and seen and all(MASK_KEY in x and x[MASK_KEY].shape[1:] == (1, N) for x in seen)


def test_an_explicit_mask_is_fed_too():
    box = gym.spaces.Box(-1, 1, (3,), np.float32)
    agent = SQNAgent(box, ACTIONS, CONFIG, device="cpu", seed=0, action_mask=True, mask_as_input=True)
    assert set(agent.learner.obs_codec.network_space.spaces) == {"obs", MASK_KEY}
    seen = _record_inputs(agent)
    o = np.zeros(3, np.float32)
    assert agent.act(o, deterministic=True, action_mask=np.array([0, 1, 0, 0])) == 1
    assert seen[-1][MASK_KEY].tolist() == [[[False, True, False, False]]]
    q = [agent.actor.q_values({"obs": torch.zeros(1, 3), MASK_KEY: torch.tensor([[m]])})
         for m in ([True, False, True, True], [True, True, True, False])]
    assert not torch.equal(*q)


def test_save_and_load_keep_the_option(tmp_path):
    agent = SQNAgent(SPACE, ACTIONS, CONFIG, device="cpu", seed=1, mask_as_input=True)
    agent.save(tmp_path / "a")
    assert read_manifest(tmp_path / "a")["mask_as_input"] is True
    loaded = SQNAgent.load(tmp_path / "a", device="cpu")
    assert loaded.mask_as_input and MASK_KEY in loaded.learner.obs_codec.network_space.spaces
    for mask in ([1, 1, 0, 1], [0, 1, 1, 1]):
        assert torch.equal(q_of(agent, obs_with(mask)), q_of(loaded, obs_with(mask)))
    # an act-only actor from the weights needs the same option to fit them
    weights = agent.learner.policy_weights()
    actor = Actor.from_weights(SPACE, ACTIONS, weights, hidden_sizes=(16,), mask_as_input=True)
    x = {"board": torch.zeros(1, 3), MASK_KEY: torch.tensor([[[True, False, True, True]]])}
    assert torch.equal(actor.q_values(x), agent.actor.q_values(x))
    with pytest.raises(ValueError, match="do not fit"):
        Actor.from_weights(SPACE, ACTIONS, weights, hidden_sizes=(16,))

    # a checkpoint written before the option (no field) loads without it
    plain = SQNAgent(SPACE, ACTIONS, CONFIG, device="cpu", seed=1)
    plain.save(tmp_path / "b")
    manifest = read_manifest(tmp_path / "b")
    del manifest["mask_as_input"]
    write_manifest(tmp_path / "b", manifest)
    assert SQNAgent.load(tmp_path / "b", device="cpu").mask_as_input is False


def test_a_network_factory_receives_the_mask_among_its_parts():
    spaces: list = []

    class Body(torch.nn.Module):
        def __init__(self, out: int) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(3 + N, out)

        def forward(self, parts: dict) -> torch.Tensor:
            assert sorted(parts) == sorted(["board", MASK_KEY])
            return self.linear(torch.cat([parts["board"], parts[MASK_KEY].float().flatten(1)], dim=1))

    def factory(space, out):
        spaces.append(space)
        return Body(out)

    agent = SQNAgent(SPACE, ACTIONS, CONFIG, device="cpu", seed=0, network_factory=factory, mask_as_input=True)
    assert set(spaces[0].spaces) == {"board", MASK_KEY}
    assert agent.act(obs_with([0, 0, 0, 1])) == 3


@pytest.mark.parametrize("value", ["yes", 1, None, np.array([True])])
def test_a_mask_as_input_that_is_not_a_bool_is_a_type_error(value):
    with pytest.raises(TypeError, match="mask_as_input must be a bool"):
        SQNAgent(SPACE, ACTIONS, CONFIG, device="cpu", mask_as_input=value)


def test_mask_as_input_without_a_mask_is_a_value_error():
    with pytest.raises(ValueError, match="mask_as_input"):
        SQNAgent(gym.spaces.Box(-1, 1, (3,), np.float32), ACTIONS, CONFIG, device="cpu", mask_as_input=True)


def test_sqn_train_passes_the_flag_to_the_agent(tmp_path):
    from sqn_agents.train import TrainArgs, parse_args, train

    assert parse_args(["--mask-as-input"]).mask_as_input is True and parse_args([]).mask_as_input is False
    args = TrainArgs(env_id="CartPole-v1", total_steps=10, mask_as_input=True, output_dir=str(tmp_path / "run"),
                     progress=False, eval_every=0)
    with pytest.raises(ValueError, match="mask_as_input=True feeds the legal-action mask"):  # CartPole has no mask
        train(args)
