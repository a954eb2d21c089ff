"""SQNConfig.precision: bf16 networks (torch.autocast) against fp32, with float32 targets, losses and state.

Each test compares a bf16 learner with an fp32 twin built from the same seed and fed the same
transitions, so both sample the same batches and start from the same weights.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_state import assert_same_state, snapshot

from sqn_agents import SQNAgent, SQNConfig, soft_q
from sqn_agents.actor import Actor
from sqn_agents.learner import Learner

VECTOR = gym.spaces.Box(-1, 1, (4,), np.float32)
FRAMES = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
ACTIONS = gym.spaces.Discrete(3)
CONFIG = SQNConfig(hidden_sizes=(64, 64), batch_size=32, buffer_size=200, learning_starts=32, replay="uniform")
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


def filled(space: gym.spaces.Box, precision: str, n: int = 64, device: str = "cpu", **overrides) -> Learner:
    learner = Learner(space, ACTIONS, SQNConfig(**{**CONFIG.to_dict(), "precision": precision, **overrides}),
                      device=device, seed=0)
    rng = np.random.default_rng(1)
    if space.dtype == np.uint8:
        obs = rng.integers(0, 256, (n, *space.shape), dtype=np.uint8)
    else:
        obs = rng.uniform(-1, 1, (n, *space.shape)).astype(np.float32)
    learner.add(obs[:-1], rng.integers(0, 3, (n - 1, 1)), rng.normal(size=n - 1).astype(np.float32), obs[1:],
                rng.random(n - 1) < 0.1, np.zeros(n - 1, bool))
    return learner


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("space", [VECTOR, FRAMES], ids=["mlp", "nature_cnn"])
def test_bf16_steps_stay_close_to_fp32_on_the_same_batches(space, device):
    fp32, bf16 = filled(space, "fp32", device=device), filled(space, "bf16", device=device)
    for _ in range(3):
        a, b = fp32.gradient_step(), bf16.gradient_step()
        for name in ("q_loss", "alpha", "entropy", "mean_q"):
            assert getattr(b, name) == pytest.approx(getattr(a, name), rel=0.03, abs=0.01), name
    probe = torch.as_tensor(fp32.replay.sample(16)[0], device=device)
    with torch.no_grad():
        q32, q16 = fp32.q_nets[0](probe), bf16.q_nets[0](probe)
        moved = (q32 - filled(space, "fp32", device=device).q_nets[0](probe)).abs().mean()  # what 3 steps changed
    assert q16.dtype == torch.float32  # outside autocast the bf16 learner's networks are plain float32 modules
    assert (q16 - q32).abs().mean() < 0.1 * moved + 1e-3


def test_bf16_runs_the_networks_in_bfloat16_and_keeps_targets_losses_and_state_in_float32(monkeypatch):
    learner = filled(VECTOR, "bf16", munchausen_scale=0.9, n_step=3, soft_n_step=True)
    seen: dict[str, list[torch.dtype]] = {"network": [], "target": [], "loss": []}
    for net in (*learner.q_nets, *learner.target_nets):
        net.body.register_forward_hook(lambda m, i, out: seen["network"].append(out.dtype))
    td_target, td_loss = soft_q.soft_td_target, soft_q.td_loss

    def recording_target(*args, **kwargs):
        y = td_target(*args, **kwargs)
        seen["target"] += [args[2].dtype, y.dtype]  # next_q_target, and the target itself
        return y

    def recording_loss(q_taken, target, kind="mse"):
        loss = td_loss(q_taken, target, kind)
        seen["loss"] += [q_taken.dtype, target.dtype, loss.dtype]
        return loss

    monkeypatch.setattr(soft_q, "soft_td_target", recording_target)
    monkeypatch.setattr(soft_q, "td_loss", recording_loss)
    metrics = learner.gradient_step()
    assert len(seen["network"]) == 6 and set(seen["network"]) == {torch.bfloat16}  # targets: both batches, mid; online
    assert set(seen["target"]) == set(seen["loss"]) == {torch.float32}
    assert all(np.isfinite(v) for v in metrics.as_dict().values())
    for opt in (learner.q_optimizer, learner.alpha_optimizer):
        for state in opt.state.values():
            assert {k: v.dtype for k, v in state.items()} == dict.fromkeys(("step", "exp_avg", "exp_avg_sq"),
                                                                           torch.float32)
    params = [*learner.q_nets.parameters(), *learner.target_nets.parameters(), learner.log_alpha]
    assert {p.dtype for p in params} == {torch.float32}


def test_the_actor_acts_in_bf16_and_mostly_agrees_with_fp32():
    learner = filled(VECTOR, "fp32")
    for _ in range(20):
        learner.gradient_step()
    weights = learner.policy_weights()
    fp32 = Actor.from_weights(VECTOR, ACTIONS, weights, hidden_sizes=CONFIG.hidden_sizes, seed=0)
    bf16 = Actor.from_weights(VECTOR, ACTIONS, weights, hidden_sizes=CONFIG.hidden_sizes, seed=0, precision="bf16")
    seen = []
    bf16.q_nets[0].body.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    obs = np.random.default_rng(2).uniform(-1, 1, (256, 4)).astype(np.float32)
    greedy16, greedy32 = bf16.act(obs, deterministic=True), fp32.act(obs, deterministic=True)
    assert seen == [torch.bfloat16] and bf16.q_values(torch.as_tensor(obs)).dtype == torch.float32
    assert (greedy16 == greedy32).mean() > 0.9  # bf16 rounding flips only near-ties
    assert set(bf16.act(obs).tolist()) <= {0, 1, 2}
    with pytest.raises(ValueError, match="precision must be one of"):
        Actor.from_weights(VECTOR, ACTIONS, weights, hidden_sizes=CONFIG.hidden_sizes, precision="fp16")


def test_a_bf16_checkpoint_holds_the_same_float32_tensors_and_loads_as_bf16(tmp_path):
    agents = {}
    for precision in ("fp32", "bf16"):
        agent = SQNAgent(VECTOR, ACTIONS, SQNConfig(**{**CONFIG.to_dict(), "precision": precision}),
                         device="cpu", seed=0)
        rng = np.random.default_rng(0)
        for _ in range(40):
            obs = rng.uniform(-1, 1, 4).astype(np.float32)
            agent.observe(obs, int(rng.integers(3)), 1.0, -obs, False, False)
            agent.learn()
        agent.save(tmp_path / precision, include_replay=True)
        agents[precision] = agent

    def layout(state):
        if isinstance(state, dict):
            return {k: layout(v) for k, v in state.items()}
        return (state.dtype, tuple(state.shape)) if isinstance(state, torch.Tensor) else type(state)

    assert layout(snapshot(agents["bf16"])) == layout(snapshot(agents["fp32"]))
    loaded = SQNAgent.load(tmp_path / "bf16", device="cpu")
    assert loaded.config.precision == "bf16" and loaded.actor.precision == "bf16"
    assert_same_state(snapshot(agents["bf16"]), snapshot(loaded))
