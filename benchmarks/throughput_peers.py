"""Whole-training-loop throughput (env steps/s) of SQN against Stable-Baselines3 DQN and Tianshou
discrete SAC, with matched settings, alternating runs in one process.

    python benchmarks/throughput_peers.py                       # CartPole-v1, the BENCHMARKS.md table
    python benchmarks/throughput_peers.py --atari               # add ALE/Breakout-v5 with the image network
    python benchmarks/throughput_peers.py --quick               # < 1 minute smoke run
    python benchmarks/throughput_peers.py --systems sqn-train sb3-dqn --repeats 7

Systems (each a fresh learner per repeat, the same fixed budget of env steps):

* ``sqn-train``: ``sqn_agents.train.train`` (the ``sqn-train`` loop: a 1-env SyncVectorEnv,
  metrics.csv/TensorBoard logging every 1,000 steps, no evaluation); its own loop timing
  (checkpoint and plot after the loop are not counted).
* ``sqn-loop``: ``sqn_agents.loop.interact`` (act, env.step, observe, learn: the README's loop) on a plain env.
* ``sb3-dqn``: ``stable_baselines3.DQN.learn`` (1-env DummyVecEnv + Monitor, as SB3 builds it).
* ``tianshou-dsac``: Tianshou 2 ``DiscreteSAC`` with an ``OffPolicyTrainer`` (1-env DummyVectorEnv).
* ``sqn-loop-ftz`` (only when named): ``sqn-loop`` under ``torch.set_flush_denormal(True)``.

Matched: hidden layers (256, 256) for every network, batch 128, buffer 100,000, 1,000 env steps
before the first update, then 1 gradient step per env step, Adam lr 1e-3, Polyak tau 0.005
every step, gradient norm clip 10 (SQN, SB3), one torch thread. Not matchable: SQN trains two Q
networks (and keeps two targets), DQN one, discrete SAC two critics plus an actor.

Runs alternate (sqn-train, sqn-loop, sb3-dqn, tianshou-dsac, sqn-train, ...) so that load from
other processes hits every system alike; medians over repeats and the median of the per-round
ratios are reported. The last line is ``RESULT {json}``; full runs also write it to
``benchmarks/results/throughput_peers.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import itertools
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from _common import RESULTS_DIR, machine_info, median, print_result, write_json

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.loop import interact
from sqn_agents.train import TrainArgs, make_env, train

ALL_SYSTEMS = ("sqn-train", "sqn-loop", "sb3-dqn", "tianshou-dsac")
EXTRA_SYSTEMS = ("sqn-loop-ftz",)  # only when named with --systems
ATARI_SYSTEMS = ("sqn-loop", "sb3-dqn")


# ---------------------------------------------------------------------- settings
def matched(env_kind: str) -> dict[str, Any]:
    """The settings every system gets."""
    if env_kind == "vector":
        return dict(hidden=(256, 256), batch_size=128, buffer_size=100_000, learning_starts=1_000, lr=1e-3,
                    tau=0.005, gamma=0.99, max_grad_norm=10.0)
    # Atari: the Nature CNN; a replay small enough for the budget, the usual Atari batch of 32.
    return dict(hidden=(256, 256), batch_size=32, buffer_size=10_000, learning_starts=500, lr=1e-4,
                tau=0.005, gamma=0.99, max_grad_norm=10.0)


def sqn_config(m: dict[str, Any], replay: str = "auto") -> SQNConfig:
    return SQNConfig(hidden_sizes=m["hidden"], batch_size=m["batch_size"], buffer_size=m["buffer_size"],
                     learning_starts=m["learning_starts"], learning_rate=m["lr"], tau=m["tau"], gamma=m["gamma"],
                     max_grad_norm=m["max_grad_norm"], train_freq=1, gradient_steps=1, replay=replay)


# ---------------------------------------------------------------------- systems
def run_sqn_train(env_id: str, steps: int, seed: int, m: dict[str, Any], tmp: Path) -> tuple[float, int]:
    args = TrainArgs(env_id=env_id, total_steps=steps, seed=seed, device="cpu", eval_every=0, progress=False,
                     save_replay=False, output_dir=str(tmp / f"sqn-train-{seed}"), config=sqn_config(m))
    s = train(args)
    return s["env_steps"] / s["steps_per_second"], s["gradient_steps"]


def run_sqn_loop(env_id: str, steps: int, seed: int, m: dict[str, Any], tmp: Path,
                 replay: str = "auto") -> tuple[float, int]:
    env = make_env(env_id)
    agent = SQNAgent(env.observation_space, env.action_space, sqn_config(m, replay), device="cpu", seed=seed)
    obs, _ = env.reset(seed=seed)
    t0 = time.perf_counter()
    for _ in itertools.islice(interact(agent, env, obs), steps):
        pass
    wall = time.perf_counter() - t0
    env.close()
    return wall, agent.gradient_steps


def run_sqn_loop_ftz(env_id: str, steps: int, seed: int, m: dict[str, Any], tmp: Path,
                     replay: str = "auto") -> tuple[float, int]:
    """sqn-loop with subnormal floats flushed to zero (``torch.set_flush_denormal(True)``)."""
    torch.set_flush_denormal(True)
    try:
        return run_sqn_loop(env_id, steps, seed, m, tmp, replay)
    finally:
        torch.set_flush_denormal(False)


def run_sb3_dqn(env_id: str, steps: int, seed: int, m: dict[str, Any], tmp: Path) -> tuple[float, int]:
    from stable_baselines3 import DQN

    env = make_env(env_id)
    image = len(env.observation_space.shape) == 3
    model = DQN("CnnPolicy" if image else "MlpPolicy", env, learning_rate=m["lr"], buffer_size=m["buffer_size"],
                learning_starts=m["learning_starts"], batch_size=m["batch_size"], tau=m["tau"], gamma=m["gamma"],
                train_freq=1, gradient_steps=1, target_update_interval=1, max_grad_norm=m["max_grad_norm"],
                policy_kwargs=None if image else dict(net_arch=list(m["hidden"])), device="cpu", seed=seed,
                verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, progress_bar=False)
    wall = time.perf_counter() - t0
    grad_steps = int(model._n_updates)
    env.close()
    return wall, grad_steps


def run_tianshou_dsac(env_id: str, steps: int, seed: int, m: dict[str, Any], tmp: Path) -> tuple[float, int]:
    from tianshou.algorithm import DiscreteSAC
    from tianshou.algorithm.modelfree.discrete_sac import DiscreteSACPolicy
    from tianshou.algorithm.modelfree.sac import AutoAlpha
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.data import Collector, CollectStats, VectorReplayBuffer
    from tianshou.env import DummyVectorEnv
    from tianshou.trainer import OffPolicyTrainerParams
    from tianshou.utils.net.common import Net
    from tianshou.utils.net.discrete import DiscreteActor, DiscreteCritic

    torch.manual_seed(seed)
    env = make_env(env_id)
    n_obs, n_act = int(np.prod(env.observation_space.shape)), int(env.action_space.n)
    envs = DummyVectorEnv([lambda: make_env(env_id)])
    envs.seed(seed)
    hidden = list(m["hidden"])
    actor = DiscreteActor(preprocess_net=Net(state_shape=n_obs, hidden_sizes=hidden), action_shape=n_act,
                          softmax_output=False)
    critic1 = DiscreteCritic(preprocess_net=Net(state_shape=n_obs, hidden_sizes=hidden), last_size=n_act)
    critic2 = DiscreteCritic(preprocess_net=Net(state_shape=n_obs, hidden_sizes=hidden), last_size=n_act)
    opt = AdamOptimizerFactory(lr=m["lr"])
    alpha = AutoAlpha(0.8 * float(np.log(n_act)), float(np.log(0.1)), AdamOptimizerFactory(lr=m["lr"]))
    algorithm = DiscreteSAC(policy=DiscreteSACPolicy(actor=actor, action_space=env.action_space),
                            policy_optim=opt, critic=critic1, critic_optim=opt, critic2=critic2, critic2_optim=opt,
                            tau=m["tau"], gamma=m["gamma"], alpha=alpha)
    collector = Collector[CollectStats](algorithm, envs, VectorReplayBuffer(m["buffer_size"], 1))
    count = [0]
    update = algorithm._update_with_batch

    def counted_update(batch: Any) -> Any:  # count gradient steps (one per call)
        count[0] += 1
        return update(batch)

    algorithm._update_with_batch = counted_update  # type: ignore[method-assign]
    t0 = time.perf_counter()
    collector.reset()
    collector.collect(n_step=m["learning_starts"], random=True)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        algorithm.run_training(OffPolicyTrainerParams(
            training_collector=collector, test_collector=None, max_epochs=1,
            epoch_num_steps=steps - m["learning_starts"], collection_step_num_env_steps=1,
            update_step_num_gradient_steps_per_sample=1.0, batch_size=m["batch_size"], verbose=False,
            show_progress=False))
    wall = time.perf_counter() - t0
    envs.close()
    env.close()
    return wall, count[0]


RUNNERS: dict[str, Callable[..., tuple[float, int]]] = {
    "sqn-train": run_sqn_train, "sqn-loop": run_sqn_loop, "sb3-dqn": run_sb3_dqn, "tianshou-dsac": run_tianshou_dsac,
    "sqn-loop-ftz": run_sqn_loop_ftz,
}
NEEDS = {"sb3-dqn": "stable_baselines3", "tianshou-dsac": "tianshou"}


def available(systems: list[str]) -> tuple[list[str], list[str]]:
    ok, skipped = [], []
    for s in systems:
        (ok if NEEDS.get(s) is None or importlib.util.find_spec(NEEDS[s]) else skipped).append(s)
    return ok, skipped


# ---------------------------------------------------------------------- one suite
def run_suite(env_id: str, m: dict[str, Any], systems: list[str], steps: int, repeats: int,
              sqn_replay: str = "auto") -> dict[str, Any]:
    rounds: list[dict[str, float]] = []
    grad_steps: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="sqn-throughput-") as tmpdir:
        tmp = Path(tmpdir)
        for r in range(repeats):
            row = {}
            for system in systems:
                kwargs = {"replay": sqn_replay} if system.startswith("sqn-loop") else {}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    wall, gs = RUNNERS[system](env_id, steps, r, m, tmp, **kwargs)
                row[system] = steps / wall
                grad_steps[system] = gs
                print(f"{env_id} round {r}: {system:<14} {row[system]:8.1f} env steps/s "
                      f"({gs} gradient steps, {wall:.1f} s)", flush=True)
            rounds.append(row)
    med = {s: round(median([row[s] for row in rounds]), 1) for s in systems}
    ratios = {}
    base = "sqn-train" if "sqn-train" in systems else systems[0]
    for s in systems:
        if s != base:
            per_round = [row[base] / row[s] for row in rounds]
            ratios[f"{base}/{s}"] = {"median": round(median(per_round), 3),
                                     "min": round(min(per_round), 3), "max": round(max(per_round), 3)}
    return {
        "env_id": env_id, "steps_per_run": steps, "repeats": repeats, "systems": systems,
        "matched": {k: list(v) if isinstance(v, tuple) else v for k, v in m.items()},
        "sqn_replay": sqn_replay if "sqn-loop" in systems else None,
        "gradient_steps_per_run": grad_steps,
        "steps_per_s_median": med,
        "steps_per_s_all": {s: [round(row[s], 1) for row in rounds] for s in systems},
        "ratios_median_of_rounds": ratios,
    }


def atari_ready() -> str | None:
    """None when the Atari part can run, else why not."""
    try:
        from wrappers import make_atari_env  # noqa: F401
    except ImportError as e:
        return f"wrappers.make_atari_env is not importable ({e})"
    if importlib.util.find_spec("ale_py") is None:
        return "ale-py is not installed"
    from sqn_agents.networks import NatureCNN, build_q_network

    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    net = build_q_network(space, 1, 4, (256, 256))
    if not isinstance(net.body, NatureCNN):
        return f"the agent builds {type(net.body).__name__} for (4, 84, 84) uint8, not a CNN"
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", nargs="+", default=list(ALL_SYSTEMS), choices=ALL_SYSTEMS + EXTRA_SYSTEMS,
                   help="sqn-loop-ftz: sqn-loop with torch.set_flush_denormal(True)")
    p.add_argument("--save-as", default="throughput_peers.json", help="file name under benchmarks/results/")
    p.add_argument("--steps", type=int, default=6_000, help="env steps per CartPole run (default 6,000)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--atari", action="store_true", help="also ALE/Breakout-v5 with the Nature CNN")
    p.add_argument("--atari-id", default="ALE/Breakout-v5")
    p.add_argument("--atari-steps", type=int, default=1_500)
    p.add_argument("--atari-repeats", type=int, default=3)
    p.add_argument("--atari-sqn-replay", default="uniform", choices=("auto", "uniform", "frame_stack"),
                   help="SQN replay for Atari; 'uniform' stores obs and next_obs like SB3's buffer")
    p.add_argument("--skip-cartpole", action="store_true")
    p.add_argument("--quick", action="store_true", help="1 round, 1,300 CartPole steps; Atari 600 steps")
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.quick:
        a.steps, a.repeats, a.atari_steps, a.atari_repeats = 1_300, 1, 560, 1

    systems, skipped = available(a.systems)
    result: dict[str, Any] = {"benchmark": "throughput_peers", "quick": a.quick, "machine": machine_info(),
                              "skipped_systems": {s: f"{NEEDS[s]} is not installed" for s in skipped}}
    if not a.skip_cartpole:
        result["cartpole"] = run_suite("CartPole-v1", matched("vector"), systems, a.steps, a.repeats)
    if a.atari:
        why = atari_ready()
        atari_systems = [s for s in ATARI_SYSTEMS if s in systems]
        if why is None:
            result["atari"] = run_suite(a.atari_id, matched("atari"), atari_systems, a.atari_steps, a.atari_repeats,
                                        sqn_replay=a.atari_sqn_replay)
        else:
            result["atari"] = {"not_done": why}
    for part in ("cartpole", "atari"):
        r = result.get(part)
        if r and "steps_per_s_median" in r:
            print(f"\n{r['env_id']}: median env steps/s over {r['repeats']} rounds of {r['steps_per_run']} steps")
            for s, v in r["steps_per_s_median"].items():
                print(f"  {s:<14} {v:8.1f}")
            for k, v in r["ratios_median_of_rounds"].items():
                print(f"  {k:<26} {v['median']:.3f} (min {v['min']:.3f}, max {v['max']:.3f})")
    print_result(result)
    if not a.quick:
        write_json(RESULTS_DIR / a.save_as, result)


if __name__ == "__main__":
    main()
