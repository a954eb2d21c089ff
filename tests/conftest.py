"""Shared test setup: one torch thread (two threads collapse on a busy 2-core machine)."""

import torch

torch.set_num_threads(1)
