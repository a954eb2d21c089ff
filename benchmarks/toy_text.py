"""A toy-text env with a ``Discrete`` observation, learned by SQN with the default config and no wrapper.

    python benchmarks/toy_text.py --env CliffWalking-v1 --steps 20000 --json benchmarks/results/toy_text/cliffwalking_seed0.json
    python benchmarks/toy_text.py --quick
    python benchmarks/toy_text.py --env FrozenLake-v1 --exact-from RUN_DIR   # a sqn-train run's greedy policy, exactly

``--exact-from`` loads a run's checkpoint and computes, from the env's own transition table
(``env.unwrapped.P``), the exact expected return of its greedy policy within the time limit and that
of the optimal policy (backward induction), an independent check of the sampled evaluations.

The observation (the cell index) is one-hot encoded on the device (``networks.PartTorso``).
``CliffWalking-v1`` has no time limit; the greedy evaluation cuts episodes at ``--max-episode-steps``
(a greedy policy may walk in circles for ever), and so does training unless
``--train-max-episode-steps`` says otherwise (0: the env as registered, which for CliffWalking
means no limit: an episode lasts until the goal is reached). Truncated episodes still bootstrap.
Greedy evaluation: the env is deterministic, so one episode per evaluation is the greedy policy's return.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from _common import machine_info, print_result

from sqn_agents import SQNAgent, SQNConfig


def greedy_return(agent: SQNAgent, env: gym.Env, episodes: int, seed: int) -> float:
    returns = []
    with agent.evaluating():
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    return float(np.mean(returns))


def exact_returns(env: gym.Env, policy: np.ndarray, horizon: int) -> tuple[float, float]:
    """Expected return from the initial state within ``horizon`` steps: of ``policy`` (one action per
    state) and of the best policy, by backward induction over the toy-text transition table ``P``."""
    table = env.unwrapped.P
    n_states, n_actions = len(table), len(table[0])
    start = np.asarray(env.unwrapped.initial_state_distrib, dtype=np.float64)

    def backup(v: np.ndarray) -> np.ndarray:  # Q(s, a) = E[r + v(s')], with v = 0 after a termination
        return np.array([[sum(p * (r + (0.0 if done else v[s2])) for p, s2, r, done in table[s][a])
                          for a in range(n_actions)] for s in range(n_states)])

    v_pol, v_opt = np.zeros(n_states), np.zeros(n_states)
    for _ in range(horizon):
        v_pol, v_opt = backup(v_pol)[np.arange(n_states), policy], backup(v_opt).max(axis=1)
    return float(start @ v_pol), float(start @ v_opt)


def report_exact(env_id: str, run_dir: Path) -> None:
    env = gym.make(env_id)
    agent = SQNAgent.load(run_dir / "checkpoint", device="cpu")
    with agent.evaluating():
        policy = np.array([int(agent.act(s)) for s in range(env.observation_space.n)])
    horizon = env.spec.max_episode_steps
    greedy, best = exact_returns(env, policy, horizon)
    print_result({"benchmark": "toy_text_exact", "env": env_id, "run": str(run_dir), "horizon": horizon,
                  "greedy_policy": policy.tolist(), "greedy_expected_return": round(greedy, 4),
                  "optimal_expected_return": round(best, 4)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CliffWalking-v1")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-episode-steps", type=int, default=200, help="time limit of evaluation episodes")
    parser.add_argument("--train-max-episode-steps", type=int, default=None,
                        help="time limit of training episodes (default: --max-episode-steps; 0: the env's own)")
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, default=1)
    parser.add_argument("--json")
    parser.add_argument("--quick", action="store_true", help="1,500 steps")
    parser.add_argument("--exact-from", type=Path, help="a sqn-train run folder: exact return of its greedy policy")
    args = parser.parse_args()
    if args.exact_from:
        report_exact(args.env, args.exact_from)
        return
    if args.quick:
        args.steps, args.eval_every = 1_500, 750
    torch.set_num_threads(1)

    train_limit = args.max_episode_steps if args.train_max_episode_steps is None else args.train_max_episode_steps
    env = gym.make(args.env, **({"max_episode_steps": train_limit} if train_limit else {}))
    eval_env = gym.make(args.env, max_episode_steps=args.max_episode_steps)
    agent = SQNAgent(env.observation_space, env.action_space, SQNConfig(), device="cpu", seed=args.seed)
    obs, _ = env.reset(seed=args.seed)
    curve, metrics, start = [], {}, time.perf_counter()
    goals = 0  # training episodes that ended by termination (CliffWalking: the goal reached)
    for step in range(1, args.steps + 1):
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        agent.observe(obs, action, reward, next_obs, terminated, truncated)
        metrics = agent.learn() or metrics
        goals += bool(terminated)
        obs = env.reset()[0] if terminated or truncated else next_obs
        if step % args.eval_every == 0:
            ret = greedy_return(agent, eval_env, args.eval_episodes, seed=10_000)
            curve.append({"step": step, "greedy_return": ret, "train_terminations": goals, **metrics})
            print(f"step {step:>6}  greedy return {ret:8.1f}  alpha {metrics.get('alpha', float('nan')):.4f}  "
                  f"entropy {metrics.get('entropy', float('nan')):.3f}  mean_q {metrics.get('mean_q', float('nan')):.1f}  "
                  f"terminations {goals}",
                  flush=True)
    result = {"benchmark": "toy_text", "quick": args.quick, "env": args.env, "steps": args.steps, "seed": args.seed,
              "max_episode_steps": args.max_episode_steps,
              "train_max_episode_steps": train_limit or None, "curve": curve, "seconds": time.perf_counter() - start,
              "command": " ".join(sys.argv), "machine": machine_info()}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    print_result(result)


if __name__ == "__main__":
    main()
