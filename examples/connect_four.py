"""Connect Four against a random opponent, as a Gymnasium env with a ``Dict`` observation and a legal-action mask.

The agent plays the first stone (yellow); after each of its moves the opponent drops a stone in a
column drawn uniformly from the legal ones. Observations follow the PettingZoo/Gymnasium
convention for board games:

* ``"board"``: ``Box(0, 1, (6, 7, 2), uint8)``, channels last: channel 0 holds the agent's
  stones, channel 1 the opponent's (row 0 is the top row);
* ``"action_mask"``: ``MultiBinary(7)``, 1 for every column that is not full.

Reward: +1 for a win, -1 for a loss, 0 otherwise (a draw too). The episode terminates when
someone connects four or the board is full. Dropping a stone into a full column is an illegal
move: the env raises ``ValueError`` (it never happens with a masked agent).

Run ``python examples/connect_four.py`` to play one random game and print it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

ROWS, COLS = 6, 7


def connects_four(stones: np.ndarray) -> bool:
    """Whether a (6, 7) bool board has four in a row: horizontal, vertical or diagonal."""
    s = stones.astype(np.int8)
    horizontal = s[:, :-3] & s[:, 1:-2] & s[:, 2:-1] & s[:, 3:]
    vertical = s[:-3] & s[1:-2] & s[2:-1] & s[3:]
    down = s[:-3, :-3] & s[1:-2, 1:-2] & s[2:-1, 2:-1] & s[3:, 3:]
    up = s[3:, :-3] & s[2:-1, 1:-2] & s[1:-2, 2:-1] & s[:-3, 3:]
    return bool(horizontal.any() or vertical.any() or down.any() or up.any())


class ConnectFourEnv(gym.Env):
    """Connect Four for one player against a uniformly random opponent."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, render_mode: str | None = None) -> None:
        self.observation_space = gym.spaces.Dict({
            "board": gym.spaces.Box(0, 1, (ROWS, COLS, 2), np.uint8),
            "action_mask": gym.spaces.MultiBinary(COLS),
        })
        self.action_space = gym.spaces.Discrete(COLS)
        self.render_mode = render_mode
        self.board = np.zeros((ROWS, COLS, 2), np.uint8)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"board": self.board.copy(), "action_mask": self.legal_columns().astype(np.int8)}

    def legal_columns(self) -> np.ndarray:
        return self.board[0].sum(axis=-1) == 0  # the top cell is empty

    def _drop(self, column: int, player: int) -> None:
        filled = self.board[:, column].sum(axis=-1)
        row = ROWS - 1 - int(filled.sum())  # the lowest empty row
        self.board[row, column, player] = 1

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.board[:] = 0
        return self._obs(), {}

    def step(self, action: Any):
        column = int(action)
        if not 0 <= column < COLS:
            raise ValueError(f"action {action!r} is not a column in [0, {COLS})")
        if not self.legal_columns()[column]:
            raise ValueError(f"illegal move: column {column} is full")
        self._drop(column, 0)
        if connects_four(self.board[..., 0] == 1):
            return self._obs(), 1.0, True, False, {"outcome": "win"}
        legal = np.flatnonzero(self.legal_columns())
        if not len(legal):
            return self._obs(), 0.0, True, False, {"outcome": "draw"}
        self._drop(int(self.np_random.choice(legal)), 1)
        if connects_four(self.board[..., 1] == 1):
            return self._obs(), -1.0, True, False, {"outcome": "loss"}
        if not self.legal_columns().any():
            return self._obs(), 0.0, True, False, {"outcome": "draw"}
        return self._obs(), 0.0, False, False, {}

    def render(self) -> str:
        symbols = np.full((ROWS, COLS), ".")
        symbols[self.board[..., 0] == 1] = "X"
        symbols[self.board[..., 1] == 1] = "O"
        return "\n".join(" ".join(row) for row in symbols) + "\n" + " ".join(map(str, range(COLS)))


if __name__ == "__main__":
    env = ConnectFourEnv()
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    while True:
        obs, reward, terminated, truncated, info = env.step(rng.choice(np.flatnonzero(obs["action_mask"])))
        if terminated:
            break
    print(env.render())
    print(info["outcome"], reward)
