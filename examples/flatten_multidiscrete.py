"""Flatten a MultiDiscrete action space into one Discrete space, for learners that only take Discrete.

    python examples/flatten_multidiscrete.py

The env here is a toy robot arm with three joints, each turned by one of a few discrete
steps: MultiDiscrete([3, 3, 2], start=[-1, -1, 0]). FlattenMultiDiscreteAction numbers its
18 combinations in C order (the last joint varies fastest) and maps each flat index back.
"""

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box, MultiDiscrete

from wrappers import FlattenMultiDiscreteAction


class ArmEnv(gym.Env):
    """Three joints; each step turns joint i by action[i]; the reward is minus the distance to a target pose."""

    action_space = MultiDiscrete([3, 3, 2], start=[-1, -1, 0])  # joints 1-2: -1, 0 or +1; joint 3: 0 or +1
    observation_space = Box(-10.0, 10.0, (3,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pose = self.np_random.integers(-3, 4, size=3).astype(np.float32)
        self.target = np.array([2.0, -1.0, 1.0], dtype=np.float32)
        self.t = 0
        return self.pose.copy(), {}

    def step(self, action):
        self.pose = np.clip(self.pose + action, -10, 10).astype(np.float32)
        self.t += 1
        distance = float(np.abs(self.pose - self.target).sum())
        return self.pose.copy(), -distance, distance == 0, self.t >= 50, {"action": action}


def main() -> None:
    env = FlattenMultiDiscreteAction(ArmEnv())
    print(f"{env.multi_discrete_space} -> {env.action_space}")
    print("flat index -> MultiDiscrete action (C order, the last component varies fastest):")
    for index, action in enumerate(env.index_to_action(np.arange(env.action_space.n))):
        print(f"  {index:2d} -> {action.tolist()}")
    print("action_to_index([1, -1, 1]) =", env.action_to_index([1, -1, 1]))

    # A Discrete learner sees only flat indices; here, random ones in a vector env of 4 arms.
    envs = gym.vector.SyncVectorEnv([lambda: FlattenMultiDiscreteAction(ArmEnv()) for _ in range(4)])
    envs.action_space.seed(0)
    envs.reset(seed=0)
    total = np.zeros(4)
    for _ in range(50):
        _, rewards, *_ = envs.step(envs.action_space.sample())
        total += rewards
    print("return of 4 random arms over 50 steps:", np.round(total, 1).tolist())
    envs.close()


if __name__ == "__main__":
    main()
