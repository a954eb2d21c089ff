"""Wrap an Atari game with the full preprocessing and play it with random actions.

    python examples/atari_random_play.py                     # Breakout, 3 games
    python examples/atari_random_play.py --game Pong --games 1

An episode ends at each lost life (life_loss="episodic") and rewards are clipped to their
sign, so neither the episode count nor the clipped rewards are game scores: the true score
arrives in info["game"] on the step where the real game ends.
"""

import argparse
import time

import numpy as np

from wrappers import GAME_INFO_KEY, make_atari_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="ALE/Breakout-v5", help='an ALE id or a game name, e.g. "Breakout"')
    parser.add_argument("--games", type=int, default=3, help="how many whole games to play")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    env = make_atari_env(args.game)
    print(f"{args.game}: observations {env.observation_space}, actions {env.action_space}")
    env.action_space.seed(args.seed)
    rng = np.random.default_rng(args.seed)

    obs, info = env.reset(seed=args.seed)
    games, episodes, clipped_sum, start = 0, 0, 0.0, time.perf_counter()
    while games < args.games:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        clipped_sum += float(reward)
        if GAME_INFO_KEY in info:  # the real game ended: its unclipped score and length
            games += 1
            game = info[GAME_INFO_KEY]
            print(f"game {games}: score {game['r']:.0f} in {game['l']} agent steps "
                  f"({episodes + 1} episodes, clipped reward sum {clipped_sum:.0f})")
            episodes, clipped_sum = 0, 0.0
        elif terminated or truncated:
            episodes += 1  # one life lost; the game goes on after reset()
        if terminated or truncated:
            # A new seed for each new game; a life loss must not reseed (that would restart the game).
            obs, info = env.reset(seed=int(rng.integers(2**31)) if GAME_INFO_KEY in info else None)
    print(f"{args.games} games in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
