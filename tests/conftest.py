"""Shared test setup: one torch thread (two threads collapse on a busy 2-core machine), and the
session's one Ray instance for the distributed tests."""

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ray_cluster():
    """One Ray instance for every distributed test (starting one costs seconds): a two-node
    ``ray.cluster_utils.Cluster`` with one CPU per node, so that the same instance also serves as
    the multi-node run (a driver can only be connected to one Ray instance at a time)."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    # Ray's workers import the env factories of tests/envs.py and this tree's sqn_agents.
    here = Path(__file__).resolve().parent
    previous = os.environ.get("PYTHONPATH")
    paths = [str(here), str(here.parent), *filter(None, (previous or "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "object_store_memory": 100 * 2**20})
    cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    if previous is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = previous
