"""The actor/learner split: each part on its own, the state each part owns, the replay protocol,
the one layout decision, and the import rules between the modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_state import assert_same_state, snapshot

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.actor import Actor, TransitionIntake
from sqn_agents.frame_replay import FrameStackReplayBuffer
from sqn_agents.layout import ObservationLayout, observation_layout
from sqn_agents.learner import Learner
from sqn_agents.metrics import LearnMetrics
from sqn_agents.replay import Replay, ReplayBuffer

ROOT = Path(__file__).resolve().parents[1]
OBS = gym.spaces.Box(-5, 5, (4,), np.float32)
ACT = gym.spaces.Discrete(3, start=1)
CONFIG = SQNConfig(hidden_sizes=(16,), batch_size=8, buffer_size=100, learning_starts=10, replay="uniform")


class ListSink:
    """The plainest sink: a list of the rows ``add`` was given."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, obs, actions, rewards, next_obs, terminated, truncated, env_ids=None) -> None:
        self.rows.append((obs, actions, rewards, next_obs, terminated, truncated, env_ids))


def random_batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    obs = rng.uniform(-1, 1, (n, 4)).astype(np.float32)
    actions = rng.integers(0, 3, (n, 1))
    return obs, actions, rng.normal(size=n).astype(np.float32), obs[::-1].copy(), rng.random(n) < 0.2, np.zeros(n, bool)


def trained_learner(steps: int = 40, seed: int = 0) -> Learner:
    learner = Learner(OBS, ACT, CONFIG, device="cpu", seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        learner.add(*random_batch(rng, 1))
        learner.learn()
    assert learner.counters.gradient_steps > 0
    return learner


# ---------------------------------------------------------------------- the actor
def test_the_actor_acts_from_weights_without_a_learner():
    agent = SQNAgent(OBS, ACT, CONFIG, device="cpu", seed=3)
    rng = np.random.default_rng(0)
    for _ in range(30):
        obs, actions, rewards, next_obs, term, trunc = random_batch(rng, 1)
        agent.observe(obs[0], int(actions[0, 0]) + 1, float(rewards[0]), next_obs[0], bool(term[0]), False)
        agent.learn()
    actor = Actor.from_weights(OBS, ACT, agent.learner.policy_weights(), hidden_sizes=CONFIG.hidden_sizes, seed=3)
    assert not hasattr(actor, "replay") and not hasattr(actor, "q_optimizer")
    obs = rng.uniform(-1, 1, (64, 4)).astype(np.float32)
    np.testing.assert_array_equal(actor.act(obs, deterministic=True), agent.act(obs, deterministic=True))
    # Same weights, temperature and generator seed: the same Boltzmann samples as the agent's own actor.
    fresh = SQNAgent(OBS, ACT, CONFIG, device="cpu", seed=3)
    fresh.load_state_dict({**fresh.state_dict(), "learner": agent.learner.state_dict()})
    np.testing.assert_array_equal(actor.act(obs), fresh.act(obs))
    assert ACT.contains(actor.act(obs[0]))

    # New weights arrive (e.g. from a remote learner): load_weights replaces them in place.
    for _ in range(20):
        agent.observe(obs[:1][0], 2, 1.0, obs[1], False, False)
        agent.learn()
    before = [p.clone() for p in actor.q_nets.parameters()]
    actor.load_weights(agent.learner.policy_weights())
    assert not all(torch.equal(a, b) for a, b in zip(before, actor.q_nets.parameters(), strict=True))
    np.testing.assert_array_equal(actor.act(obs, deterministic=True), agent.act(obs, deterministic=True))
    assert torch.equal(actor.alpha, agent.alpha)


def test_actor_weights_that_do_not_fit_are_refused():
    weights = trained_learner(steps=12).policy_weights()
    with pytest.raises(ValueError, match="do not fit the actor's Q networks"):
        Actor.from_weights(OBS, ACT, weights, hidden_sizes=(32,))
    with pytest.raises(ValueError, match="weights lack 'log_alpha'"):
        Actor.from_weights(OBS, ACT, {k: v for k, v in weights.items() if k != "log_alpha"}, hidden_sizes=(16,))


def test_an_actor_shares_the_learners_tensors_and_sees_every_update():
    agent = SQNAgent(OBS, ACT, CONFIG, device="cpu", seed=0)
    assert agent.actor.q_nets is agent.learner.q_nets and agent.actor.log_alpha is agent.learner.log_alpha


# ---------------------------------------------------------------------- the intake
def test_the_intake_writes_checked_transitions_into_a_plain_list_sink():
    sink = ListSink()
    intake = TransitionIntake(OBS, ACT, sink, autoreset_mode="next_step")
    obs = np.zeros((3, 4), np.float32)
    intake.observe(obs, np.array([1, 2, 3]), np.ones(3), obs + 1, np.array([False, True, False]), np.zeros(3, bool))
    assert intake.prev_done.tolist() == [False, True, False]
    # Sub-env 1 was done: its next row is the vector env's reset step, not a transition.
    assert intake.observe(obs + 1, np.array([3, 1, 2]), np.full(3, 2.0), obs + 2, np.zeros(3, bool), np.zeros(3, bool)) == 2
    (o1, a1, r1, n1, t1, tr1, ids1), (o2, a2, r2, n2, t2, tr2, ids2) = sink.rows
    np.testing.assert_array_equal(a1, [[0], [1], [2]])  # zero-based indices, shape (n, D)
    np.testing.assert_array_equal(ids1, [0, 1, 2])
    np.testing.assert_array_equal(ids2, [0, 2])
    np.testing.assert_array_equal(a2, [[2], [1]])
    np.testing.assert_array_equal(o2, obs[[0, 2]] + 1)
    assert r2.dtype == np.float32 and t1.dtype == bool and t1.tolist() == [False, True, False]

    # A refused call writes nothing and keeps the bookkeeping.
    with pytest.raises(ValueError, match="reward must be finite"):
        intake.observe(obs, np.array([1, 1, 1]), np.array([0.0, np.nan, 0.0]), obs, np.ones(3, bool), np.zeros(3, bool))
    assert len(sink.rows) == 2 and intake.prev_done.tolist() == [False, False, False]

    # A single env: one row, env id 0, nothing to drop.
    single = ListSink()
    TransitionIntake(OBS, ACT, single).observe(obs[0], 3, 1.0, obs[1], True, False)
    assert single.rows[0][1].tolist() == [[2]] and single.rows[0][6].tolist() == [0]


def test_same_step_autoreset_writes_the_real_final_observation():
    sink = ListSink()
    intake = TransitionIntake(OBS, ACT, sink, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs, reset = np.zeros((2, 4), np.float32), np.full((2, 4), 9.0, np.float32)
    final = np.empty(2, dtype=object)
    final[1] = np.full(4, 0.5, np.float32)
    intake.observe(obs, np.array([1, 1]), np.ones(2), reset, np.array([False, True]), np.zeros(2, bool), {"final_obs": final})
    np.testing.assert_array_equal(sink.rows[0][3], [reset[0], final[1]])


def test_the_intake_state_round_trips_and_refuses_a_malformed_one():
    intake = TransitionIntake(OBS, ACT, ListSink())
    intake.observe(np.zeros((2, 4), np.float32), np.array([1, 2]), np.ones(2), np.ones((2, 4), np.float32),
                   np.array([True, False]), np.zeros(2, bool))
    other = TransitionIntake(OBS, ACT, ListSink())
    other.load_state_dict(intake.state_dict())
    assert other.prev_done.tolist() == [True, False] and other.state_dict() == intake.state_dict()
    with pytest.raises(ValueError, match="'prev_done' is"):
        other.load_state_dict({"prev_done": [1, 0]})
    assert other.prev_done.tolist() == [True, False]
    other.reset()
    assert other.state_dict() == {"prev_done": None}


# ---------------------------------------------------------------------- the learner
def test_learner_schedule_and_gradient_step_cadence():
    cfg = SQNConfig(hidden_sizes=(16,), batch_size=8, buffer_size=100, learning_starts=12, train_freq=3, gradient_steps=2)
    learner = Learner(OBS, ACT, cfg, device="cpu", seed=0)
    rng = np.random.default_rng(0)
    due, steps = [], []
    for _ in range(24):
        learner.add(*random_batch(rng, 1))
        due.append(learner.updates_due())
        result = learner.learn()
        steps.append(learner.counters.gradient_steps)
        assert (result is None) == (due[-1] == 0)
        assert result is None or isinstance(result, LearnMetrics)
    # First update once max(learning_starts, batch_size) = 12 transitions arrived, then one every 3.
    assert due == [0] * 11 + [1, 0, 0] * 4 + [1]
    assert steps == [0] * 11 + [2] * 3 + [4] * 3 + [6] * 3 + [8] * 3 + [10]
    assert learner.counters.updates == 5 and learner.updates_due() == 0

    # gradient_step() on its own: one step, outside the schedule (which it does not advance).
    metrics = learner.gradient_step()
    assert isinstance(metrics, LearnMetrics) and set(metrics.as_dict()) == set(LearnMetrics.names())
    assert learner.counters.gradient_steps == 11 and learner.counters.updates == 5 and learner.updates_due() == 0

    # A batch of transitions (a vector env, or a remote actor's shipment) counts row by row.
    learner.add(*random_batch(rng, 7))
    assert learner.counters.env_steps == 31 and learner.updates_due() == 2


def test_learner_state_dict_round_trip_with_and_without_replay():
    learner = trained_learner()
    other = Learner(OBS, ACT, CONFIG, device="cpu", seed=1)
    other.load_state_dict(learner.state_dict(include_replay=True))
    a, b = learner.state_dict(include_replay=True), other.state_dict(include_replay=True)
    assert_same_state(a, b)
    for _ in range(3):  # the two continue identically
        batch = random_batch(np.random.default_rng(7), 2)
        learner.add(*batch)
        other.add(*batch)
        assert learner.gradient_step() == other.gradient_step()
    assert_same_state(learner.state_dict(include_replay=True), other.state_dict(include_replay=True))

    empty = Learner(OBS, ACT, CONFIG, device="cpu", seed=1)
    empty.load_state_dict(learner.state_dict())  # no "replay": the replay is left as it is (empty)
    assert len(empty.replay) == 0 and empty.counters == learner.counters


def test_a_refused_learner_state_changes_nothing():
    learner, donor = trained_learner(seed=0), trained_learner(seed=1)
    before = learner.state_dict(include_replay=True)
    before = {"counters": dict(before["counters"]), "q_nets": {k: v.clone() for k, v in before["q_nets"].items()},
              "replay": {k: np.array(v) for k, v in before["replay"].items()}}
    bad = donor.state_dict(include_replay=True)
    bad["counters"] = {**bad["counters"], "skipped_updates": -1}
    with pytest.raises(ValueError, match="counter 'skipped_updates' is -1"):
        learner.load_state_dict(bad)
    bad = donor.state_dict(include_replay=True)
    bad["replay"] = {**bad["replay"], "pos": np.array(10_000)}
    with pytest.raises(ValueError, match="replay position 10000 is outside"):
        learner.load_state_dict(bad)
    after = learner.state_dict(include_replay=True)
    assert after["counters"] == before["counters"]
    assert_same_state(before["q_nets"], {k: v.clone() for k, v in after["q_nets"].items()})
    assert_same_state(before["replay"], {k: np.array(v) for k, v in after["replay"].items()})


def test_actor_state_round_trip():
    a = SQNAgent(OBS, ACT, CONFIG, device="cpu", seed=0).actor
    b = SQNAgent(OBS, ACT, CONFIG, device="cpu", seed=0).actor  # the same networks
    obs = np.zeros((32, 4), np.float32)
    a.act(obs)  # the generators part ways
    b.act(obs), b.act(obs)
    assert not torch.equal(a.state_dict()["generator"], b.state_dict()["generator"])
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.state_dict()["generator"], b.state_dict()["generator"])
    np.testing.assert_array_equal(a.act(obs), b.act(obs))
    with pytest.raises(ValueError, match="inconsistent RNG or replay state"):
        b.load_state_dict({"generator": torch.zeros(3, dtype=torch.uint8), "generator_device": "cpu"})


def test_agent_state_dict_round_trip_continues_identically():
    agent = SQNAgent(OBS, ACT, CONFIG, device="cpu", seed=0, autoreset_mode="next_step")
    rng = np.random.default_rng(0)
    for _ in range(15):
        obs, actions, rewards, next_obs, term, trunc = random_batch(rng, 2)
        agent.observe(obs, agent.act(obs), rewards, next_obs, term, trunc)
        agent.learn()
    other = SQNAgent(OBS, ACT, CONFIG, device="cpu", seed=5)
    other.load_state_dict(agent.state_dict(include_replay=True))
    assert_same_state(snapshot(agent), snapshot(other))
    for twin in (agent, other):
        rng = np.random.default_rng(1)
        for _ in range(5):
            obs, _, rewards, next_obs, term, trunc = random_batch(rng, 2)
            twin.observe(obs, twin.act(obs), rewards, next_obs, term, trunc)
            twin.learn()
    assert_same_state(snapshot(agent), snapshot(other))


def test_a_state_one_part_refuses_leaves_the_whole_agent_as_it_was():
    def agent(seed):
        a = SQNAgent(OBS, ACT, CONFIG, device="cpu", seed=seed)
        rng = np.random.default_rng(seed)
        for _ in range(3):
            obs, _, rewards, next_obs, term, trunc = random_batch(rng, 2)
            a.observe(obs, a.act(obs), rewards, next_obs, np.array([seed == 0, True]), trunc)
        return a

    target, donor = agent(0), agent(1)
    before = snapshot(target)
    bad = donor.state_dict(include_replay=True)
    bad["learner"] = {**bad["learner"], "counters": {**bad["learner"]["counters"], "updates": "7"}}
    with pytest.raises(ValueError, match="counter 'updates' is '7'"):
        target.load_state_dict(bad)  # intake and actor took the donor's state first, then were put back
    assert_same_state(before, snapshot(target))


# ---------------------------------------------------------------------- one replay protocol
def test_both_replay_buffers_implement_the_replay_protocol():
    uniform = ReplayBuffer(8, (4,), np.float32, 1, seed=0)
    frames = FrameStackReplayBuffer(8, (2, 3, 3), np.uint8, 1, seed=0)
    assert isinstance(uniform, Replay) and isinstance(frames, Replay)
    assert not isinstance(ListSink(), Replay)  # add() alone makes a sink, not a replay
    for buffer in (uniform, frames):
        assert len(buffer) == 0 and buffer.nbytes > 0 and isinstance(buffer.state_dict(), dict)


# ---------------------------------------------------------------------- one layout decision
# (shape, dtype, torso, channels-last input, replay picked by replay="auto"): recorded with the code
# before the split, where three separate shape tests decided these; the one decision must agree.
LAYOUT_CASES = [
    ((4, 84, 84), np.uint8, "NatureCNN", False, "FrameStackReplayBuffer"),
    ((4, 84, 84), np.float32, "NatureCNN", False, "ReplayBuffer"),
    ((84, 84, 4), np.uint8, "NatureCNN", True, "ReplayBuffer"),
    ((1, 84, 84), np.uint8, "NatureCNN", False, "ReplayBuffer"),
    ((4, 12, 12), np.uint8, "SmallCNN", False, "FrameStackReplayBuffer"),
    ((10, 10, 4), np.uint8, "SmallCNN", True, "ReplayBuffer"),
    ((10, 10, 10), np.bool_, "SmallCNN", True, "ReplayBuffer"),
    ((10, 10, 6), np.float32, "SmallCNN", True, "ReplayBuffer"),
    ((3, 210, 160), np.uint8, "NatureCNN", False, "FrameStackReplayBuffer"),
    ((210, 160, 3), np.uint8, "NatureCNN", True, "ReplayBuffer"),
    ((17, 40, 40), np.uint8, "NatureCNN", False, "ReplayBuffer"),
    ((16, 40, 40), np.uint8, "NatureCNN", False, "FrameStackReplayBuffer"),
    ((4, 4, 8), np.uint8, "SmallCNN", True, "ReplayBuffer"),
    ((8,), np.float32, "MLP", False, "ReplayBuffer"),
    ((84, 84), np.uint8, "MLP", False, "ReplayBuffer"),
    ((2, 3, 4, 5), np.uint8, "MLP", False, "ReplayBuffer"),
]


@pytest.mark.parametrize("shape, dtype, torso, channels_last, replay", LAYOUT_CASES)
def test_one_layout_decides_the_network_and_the_replay(shape, dtype, torso, channels_last, replay):
    layout = observation_layout(shape, dtype)
    assert layout == ObservationLayout(
        image=None if torso == "MLP" else ("channels_last" if channels_last else "channels_first"),
        frame_stack=replay == "FrameStackReplayBuffer",
    )
    space = gym.spaces.Box(0, 255 if dtype == np.uint8 else 1, shape, dtype=dtype)
    cfg = SQNConfig(buffer_size=64, batch_size=8, learning_starts=8, hidden_sizes=(8,))
    learner = Learner(space, gym.spaces.Discrete(3), cfg, device="cpu", seed=0)
    assert type(learner.q_nets[0].body).__name__ == torso and learner.q_nets[0].channels_last == channels_last
    assert type(learner.replay).__name__ == replay


# ---------------------------------------------------------------------- import rules
def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sqn_agents."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "sqn_agents":
            names.update(alias.name for alias in node.names)
    return names


def test_no_two_modules_of_sqn_agents_import_each_other_and_checkpoint_imports_no_agent_part():
    package = ROOT / "sqn_agents"
    graph = {p.stem: _imports(p) & {q.stem for q in package.glob("*.py")} for p in package.glob("*.py")}
    assert graph["checkpoint"] == set()
    assert not graph["actor"] & {"learner", "agent"} and not graph["learner"] & {"actor", "agent"}
    for module, imported in graph.items():
        for other in imported:
            assert module not in graph.get(other, set()), f"{module} and {other} import each other"


def test_no_benchmark_or_example_calls_a_private_method_of_the_agent():
    pattern = re.compile(r"\bagent\.(?:\w+\.)*_[a-z]\w*")
    for path in [*ROOT.glob("benchmarks/*.py"), *ROOT.glob("examples/*.py")]:
        found = pattern.findall(path.read_text())
        assert not found, f"{path.name} calls {found}"


def test_a_resumed_agent_with_image_augmentation_continues_bit_for_bit(tmp_path):
    """The learner owns its augmentation generator too, so a checkpoint resumes DrQ shifts exactly."""
    space = gym.spaces.Box(0, 255, (2, 12, 12), np.uint8)
    cfg = SQNConfig(augmentation="shift", shift_pad=2, batch_size=8, learning_starts=8, buffer_size=64,
                    hidden_sizes=(8,), replay="uniform")

    def run(agent: SQNAgent, steps: range) -> None:
        for i in steps:
            rng = np.random.default_rng(i)
            obs, next_obs = (rng.integers(0, 256, (2, 12, 12), dtype=np.uint8) for _ in range(2))
            agent.observe(obs, agent.act(obs), float(rng.normal()), next_obs, False, False)
            agent.learn()

    straight = SQNAgent(space, gym.spaces.Discrete(2), cfg, device="cpu", seed=0)
    run(straight, range(30))
    resumed = SQNAgent(space, gym.spaces.Discrete(2), cfg, device="cpu", seed=0)
    run(resumed, range(15))
    resumed.save(tmp_path / "drq", include_replay=True)
    resumed = SQNAgent.load(tmp_path / "drq", device="cpu")
    run(resumed, range(15, 30))
    assert straight.gradient_steps > 15
    assert_same_state(snapshot(straight), snapshot(resumed))
