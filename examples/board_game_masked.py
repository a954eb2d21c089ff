"""Train SQN on Connect Four against a random opponent, with legal-action masks, in a hand-written loop.

The env (``examples/connect_four.py``) gives a ``Dict`` observation: ``"board"`` (a (6, 7, 2) uint8
image, which gets its own small CNN) and ``"action_mask"`` (which columns are not full). The agent
reads the mask from the observation: it never samples, nor takes the argmax of, a full column,
and its soft value and entropy cover the legal moves only. No wrapper is needed.

    python examples/board_game_masked.py                  # 40k moves
    python examples/board_game_masked.py --steps 4000     # a quick look
    python examples/board_game_masked.py --json out.json  # also write the evaluation curve

Every ``--eval-every`` moves it plays ``--eval-games`` greedy games (fresh seeds) and prints the
win, draw and loss rates and the number of illegal moves (the env raises on one; the count stays
zero). Random play wins about 56% of its games as the first player.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from connect_four import ConnectFourEnv  # noqa: E402

from sqn_agents import SQNAgent, SQNConfig  # noqa: E402


def evaluate(agent: SQNAgent, games: int, seed: int) -> dict[str, float]:
    """Greedy games against the random opponent: outcome rates, and illegal moves (counted, never played)."""
    env = ConnectFourEnv()
    outcomes, illegal = [], 0
    with agent.evaluating():
        for i in range(games):
            obs, _ = env.reset(seed=seed + i)
            while True:
                action = agent.act(obs)
                if not obs["action_mask"][action]:
                    illegal += 1
                    break
                obs, _, terminated, _, info = env.step(action)
                if terminated:
                    outcomes.append(info["outcome"])
                    break
    return {
        "win": outcomes.count("win") / games,
        "draw": outcomes.count("draw") / games,
        "loss": outcomes.count("loss") / games,
        "illegal_moves": illegal,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40_000, help="agent moves to train for")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-games", type=int, default=200)
    parser.add_argument("--final-games", type=int, default=1_000, help="greedy games of the final evaluation")
    parser.add_argument("--json", help="write the evaluation curve here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    env = ConnectFourEnv()
    # A game lasts about 10 to 20 moves and only its last reward is not zero: a high discount,
    # and 3-step returns to carry the outcome back faster.
    config = SQNConfig(gamma=0.99, n_step=3, learning_starts=1_000, buffer_size=100_000, target_entropy_ratio=0.3)
    agent = SQNAgent(env.observation_space, env.action_space, config, device="auto", seed=args.seed)
    curve = [{"step": 0, **evaluate(agent, args.eval_games, seed=10_000)}]
    print(f"step      0  win {curve[-1]['win']:.2f}  (untrained)", flush=True)

    obs, _ = env.reset(seed=args.seed)
    start, metrics = time.perf_counter(), {}
    for step in range(1, args.steps + 1):
        action = agent.act(obs)  # a sample of softmax(Q / alpha) over the legal columns
        next_obs, reward, terminated, truncated, _ = env.step(action)
        agent.observe(obs, action, reward, next_obs, terminated, truncated)
        metrics = agent.learn() or metrics
        obs = env.reset()[0] if terminated or truncated else next_obs
        if step % args.eval_every == 0:
            result = evaluate(agent, args.eval_games, seed=10_000)
            curve.append({"step": step, **result, "alpha": metrics.get("alpha"), "entropy": metrics.get("entropy")})
            print(f"step {step:>6}  win {result['win']:.2f}  draw {result['draw']:.2f}  loss {result['loss']:.2f}  "
                  f"illegal moves {result['illegal_moves']}  alpha {metrics.get('alpha', float('nan')):.3f}  "
                  f"entropy {metrics.get('entropy', float('nan')):.2f}", flush=True)
    elapsed = time.perf_counter() - start

    final = evaluate(agent, args.final_games, seed=50_000)
    print(f"\n{args.steps} moves in {elapsed:.0f} s, {agent.gradient_steps} gradient steps")
    print(f"greedy play over {args.final_games} fresh games: win {final['win']:.3f}  draw {final['draw']:.3f}  "
          f"loss {final['loss']:.3f}  illegal moves {final['illegal_moves']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "seed": args.seed, "curve": curve,
                                               "final": final, "final_games": args.final_games,
                                               "eval_games": args.eval_games, "seconds": elapsed}, indent=1))


if __name__ == "__main__":
    main()
