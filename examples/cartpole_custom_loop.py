"""Train SQN on CartPole-v1 in a hand-written loop: act, step, observe, learn.

The loop is written out here to show the agent's interface; ``sqn_agents.loop.interact`` is
the same loop as a generator (what ``sqn-train`` and the benchmarks use).

    python examples/cartpole_custom_loop.py              # 30k steps, about two minutes on a laptop CPU
    python examples/cartpole_custom_loop.py --steps 3000 # a quick look
"""

import argparse
import time
from collections import deque

import gymnasium as gym
import numpy as np
import torch

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.loop import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/cartpole_custom_loop/agent")
    args = parser.parse_args()
    torch.set_num_threads(1)

    env = gym.make("CartPole-v1")
    agent = SQNAgent(env.observation_space, env.action_space, SQNConfig(), device="auto", seed=args.seed)
    obs, info = env.reset(seed=args.seed)
    episode_return, returns, metrics = 0.0, deque(maxlen=20), {}
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        action = agent.act(obs)  # a sample of softmax(Q / alpha)
        next_obs, reward, terminated, truncated, info = env.step(action)
        agent.observe(obs, action, reward, next_obs, terminated, truncated)
        metrics = agent.learn() or metrics  # {} while no update is due
        episode_return += float(reward)
        obs = next_obs
        if terminated or truncated:
            returns.append(episode_return)
            episode_return = 0.0
            obs, info = env.reset()
        if step % 5_000 == 0 and metrics:
            print(f"step {step:>6}  return(last 20) {np.mean(returns):6.1f}  alpha {metrics['alpha']:.3f}  "
                  f"entropy {metrics['entropy']:.3f}  q_loss {metrics['q_loss']:.3f}", flush=True)
    elapsed = time.perf_counter() - start

    agent.save(args.out)
    agent = SQNAgent.load(args.out, observation_space=env.observation_space, action_space=env.action_space)
    scores = evaluate(agent, env, episodes=10, seed=1_000)  # greedy actions (sqn_agents.loop.evaluate)
    print(f"\n{args.steps} steps in {elapsed:.0f} s ({args.steps / elapsed:.0f} steps/s), "
          f"{agent.gradient_steps} gradient steps")
    print(f"training return, last {len(returns)} episodes: {np.mean(returns):.1f}")
    print(f"greedy evaluation of the reloaded agent over 10 episodes: {np.mean(scores):.1f} ± {np.std(scores):.1f}")
    print(f"checkpoint: {args.out}")


if __name__ == "__main__":
    main()
