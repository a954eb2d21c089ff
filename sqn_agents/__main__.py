"""``python -m sqn_agents`` is ``sqn-train``."""

from sqn_agents.train import main

main()
