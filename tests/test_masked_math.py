"""Legal-action masks in the soft-Q math, against numpy: policy, entropy, soft value, TD target, target entropy."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sqn_agents import soft_q


def random_mask(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A (B, D, N) mask with at least one legal action in every (state, dimension)."""
    mask = rng.random(shape) < 0.5
    first = rng.integers(0, shape[-1], size=shape[:-1])
    np.put_along_axis(mask, first[..., None], True, axis=-1)
    return mask


def np_masked_logsumexp(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape[:-1])
    for idx in np.ndindex(*x.shape[:-1]):
        legal = x[idx][mask[idx]]
        m = legal.max()
        out[idx] = m + np.log(np.exp(legal - m).sum())
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_masked_policy_is_zero_on_illegal_actions_and_softmax_over_legal(rng):
    q, mask = rng.normal(scale=3.0, size=(16, 2, 5)), random_mask(rng, (16, 2, 5))
    alpha = 0.7
    pi = soft_q.boltzmann_log_policy(torch.tensor(q), alpha, torch.tensor(mask)).exp().numpy()
    assert (pi[~mask] == 0).all()
    expected = np.where(mask, np.exp(q / alpha - np_masked_logsumexp(q / alpha, mask)[..., None]), 0.0)
    np.testing.assert_allclose(pi, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.05, 0.5, 3.0])
def test_masked_soft_value_is_alpha_logsumexp_over_legal_actions(rng, alpha):
    q, mask = rng.normal(scale=4.0, size=(32, 3, 6)), random_mask(rng, (32, 3, 6))
    qt, mt = torch.tensor(q), torch.tensor(mask)
    v = soft_q.soft_value(qt, soft_q.boltzmann_log_policy(qt, alpha, mt), alpha, mt).numpy()
    np.testing.assert_allclose(v, alpha * np_masked_logsumexp(q / alpha, mask), rtol=1e-9, atol=1e-9)


def test_masked_entropy_matches_numpy_and_is_at_most_log_n_legal(rng):
    q, mask = rng.normal(size=(32, 2, 7)), random_mask(rng, (32, 2, 7))
    mt = torch.tensor(mask)
    entropy = soft_q.policy_entropy(soft_q.boltzmann_log_policy(torch.tensor(q), 1.0, mt), mt).numpy()
    expected = np.empty((32, 2))
    for idx in np.ndindex(32, 2):
        p = np.exp(q[idx][mask[idx]] - np_masked_logsumexp(q[idx][None], mask[idx][None])[0])
        expected[idx] = -(p * np.log(p)).sum()
    np.testing.assert_allclose(entropy, expected, rtol=1e-9, atol=1e-12)
    assert (entropy <= np.log(mask.sum(-1)) + 1e-9).all()
    assert np.isfinite(entropy).all()


def test_masked_td_target_bootstraps_over_the_legal_next_actions(rng):
    q, mask = rng.normal(size=(8, 1, 4)), random_mask(rng, (8, 1, 4))
    rewards, terminated = rng.normal(size=8), (rng.random(8) < 0.3).astype(np.float64)
    y = soft_q.soft_td_target(torch.tensor(rewards), torch.tensor(terminated), torch.tensor(q), 0.4, 0.9,
                              torch.tensor(mask)).numpy()
    expected = rewards + 0.9 * (1 - terminated) * 0.4 * np_masked_logsumexp(q / 0.4, mask)[:, 0]
    np.testing.assert_allclose(y[:, 0], expected, rtol=1e-9)


def test_target_entropy_follows_the_number_of_legal_actions():
    mask = torch.tensor([[[True, True, True, True]], [[True, False, True, False]], [[False, False, True, False]]])
    target = soft_q.masked_target_entropy(mask, 0.8)
    assert target[:, 0].tolist() == pytest.approx([0.8 * math.log(4), 0.8 * math.log(2), 0.0])
    # unmasked it is the fixed target
    np.testing.assert_allclose(target[0].numpy(), soft_q.target_entropy([4], 0.8).numpy())


def test_one_legal_move_exerts_no_pull_on_the_temperature():
    """With the fixed target, a state with one legal move (entropy 0) would always push alpha up."""
    mask = torch.tensor([[[False, True, False, False]]])
    log_alpha = torch.zeros(1, requires_grad=True)
    entropy = soft_q.policy_entropy(soft_q.boltzmann_log_policy(torch.zeros(1, 1, 4), 1.0, mask), mask)
    soft_q.temperature_loss(log_alpha, entropy, soft_q.masked_target_entropy(mask, 0.8)).backward()
    assert log_alpha.grad.item() == 0.0
    fixed = torch.zeros(1, requires_grad=True)
    soft_q.temperature_loss(fixed, entropy, soft_q.target_entropy([4], 0.8)).backward()
    assert fixed.grad.item() < 0  # gradient descent would raise alpha, for ever


@pytest.mark.parametrize("shared", [True, False])
def test_temperature_loss_with_per_state_targets_matches_numpy(rng, shared):
    mask = random_mask(rng, (16, 3, 5))
    entropy = rng.uniform(0, 1, size=(16, 3))
    target = soft_q.masked_target_entropy(torch.tensor(mask), 0.6).double()
    np.testing.assert_allclose(target.numpy(), 0.6 * np.log(mask.sum(-1)), rtol=1e-6)
    log_alpha = torch.tensor(rng.normal(size=1 if shared else 3), requires_grad=True)
    soft_q.temperature_loss(log_alpha, torch.tensor(entropy), target).backward()
    tgt = target.numpy()
    gap = (entropy.sum(1) - tgt.sum(1)).mean() if shared else (entropy - tgt).mean(0)
    np.testing.assert_allclose(log_alpha.grad.numpy(), np.atleast_1d(gap), rtol=1e-10)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 9), log_alpha=st.floats(-6, 3))
def test_sampling_never_returns_an_illegal_action(seed, n, log_alpha):
    from sqn_agents.actor import gumbel_max_sample

    rng = np.random.default_rng(seed)
    mask = random_mask(rng, (64, 2, n))
    q = torch.tensor(rng.normal(scale=50.0, size=(64, 2, n)), dtype=torch.float32)
    log_pi = soft_q.boltzmann_log_policy(q, math.exp(log_alpha), torch.tensor(mask))
    generator = torch.Generator().manual_seed(seed)
    index = gumbel_max_sample(log_pi, generator).numpy()
    assert np.take_along_axis(mask, index[..., None], axis=-1).all()
