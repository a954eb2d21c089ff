"""sqn-agents: discrete soft Q-learning (SQN) for Gymnasium.

>>> from sqn_agents import SQNAgent, SQNConfig
"""

from sqn_agents.agent import SQNAgent
from sqn_agents.checkpoint import CheckpointError
from sqn_agents.config import SQNConfig

__all__ = ["SQNAgent", "SQNConfig", "CheckpointError"]
__version__ = "0.1.0"
