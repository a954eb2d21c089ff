"""Train SQN on an Atari game in a hand-written loop, with the wrappers package's preprocessing.

    python examples/atari_custom_loop.py                          # Breakout, 50k agent steps
    python examples/atari_custom_loop.py --game Pong --steps 2000 # a quick look

Observations are uint8 stacks (4, 84, 84); the agent picks the Nature-DQN CNN for them and
scales frames to [0, 1] inside the network. Training rewards are clipped to their sign, so
the loop reports the unclipped game score that the wrapper puts in info["game"] when a
game really ends (an episode here is one life).
"""

import argparse
import time

import numpy as np
import torch

from sqn_agents import SQNAgent, SQNConfig
from wrappers import GAME_INFO_KEY, make_atari_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    env = make_atari_env(args.game)  # sticky actions, no-op starts, skip 4, 84x84 gray, fire reset, life loss, clip, stack 4
    config = SQNConfig(  # DQN-style Atari settings; the replay stores each frame once (replay="auto")
        learning_rate=1e-4, batch_size=32, buffer_size=100_000, learning_starts=min(5_000, args.steps // 2),
        train_freq=4, tau=0.01, max_grad_norm=10.0, loss="huber",
    )
    agent = SQNAgent(env.observation_space, env.action_space, config, device="auto", seed=args.seed)
    print(f"{args.game}: observations {env.observation_space}, actions {env.action_space}, "
          f"replay {type(agent.replay).__name__}, device {agent.device}")

    obs, info = env.reset(seed=args.seed)
    scores, metrics, start = [], {}, time.perf_counter()
    for step in range(1, args.steps + 1):
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        agent.observe(obs, action, reward, next_obs, terminated, truncated)
        metrics = agent.learn() or metrics
        obs = next_obs
        if GAME_INFO_KEY in info:  # a whole game ended: its unclipped score
            scores.append(float(info[GAME_INFO_KEY]["r"]))
            print(f"step {step:>7}  game {len(scores):>4}  score {scores[-1]:7.1f}  "
                  f"alpha {metrics.get('alpha', float('nan')):.4f}  entropy {metrics.get('entropy', float('nan')):.3f}",
                  flush=True)
        if terminated or truncated:  # a life was lost, or the game ended: the wrapper knows which
            obs, info = env.reset()
    elapsed = time.perf_counter() - start
    print(f"\n{args.steps} agent steps ({4 * args.steps} frames) in {elapsed:.0f} s ({args.steps / elapsed:.1f} steps/s), "
          f"{agent.gradient_steps} gradient steps")
    if scores:
        print(f"games played: {len(scores)}; mean score of the last 10: {np.mean(scores[-10:]):.1f}")


if __name__ == "__main__":
    main()
