"""The soft-Q math against plain-numpy references, closed forms and values worked out by hand."""

import math

import numpy as np
import pytest
import torch

from sqn_agents import soft_q


def np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def np_soft_value(q: np.ndarray, alpha: float) -> np.ndarray:
    """Reference: the expectation written out with numpy, one state at a time."""
    out = np.empty(q.shape[:-1])
    for idx in np.ndindex(*q.shape[:-1]):
        log_pi = np_log_softmax(q[idx] / alpha)
        out[idx] = np.sum(np.exp(log_pi) * (q[idx] - alpha * log_pi))
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_values_worked_out_by_hand():
    # Q = [1, 2], alpha = 1:  pi = [1, e] / (1 + e),  V = log(e + e^2) = 2 + log(1 + 1/e)
    q = torch.tensor([[[1.0, 2.0]]])
    log_pi = soft_q.boltzmann_log_policy(q, 1.0)
    pi = log_pi.exp()[0, 0]
    assert pi.tolist() == pytest.approx([0.2689414, 0.7310586], abs=1e-6)
    assert soft_q.soft_value(q, log_pi, 1.0).item() == pytest.approx(2.3132617, abs=1e-6)
    # H = -(p ln p + (1-p) ln(1-p)) with p = 1/(1+e)
    assert soft_q.policy_entropy(log_pi).item() == pytest.approx(0.5822031, abs=1e-6)
    # y = r + gamma * V for a live transition, y = r for a terminated one
    y = soft_q.soft_td_target(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), q.expand(2, 1, 2), 1.0, 0.9)
    assert y[:, 0].tolist() == pytest.approx([1 + 0.9 * 2.3132617, 1.0], abs=1e-5)


def test_soft_value_matches_numpy_and_logsumexp_identity(rng):
    q = rng.normal(scale=5.0, size=(64, 3, 6))
    for alpha in (0.01, 0.3, 1.0, 7.0):
        qt = torch.tensor(q, dtype=torch.float64)
        v = soft_q.soft_value(qt, soft_q.boltzmann_log_policy(qt, alpha), alpha).numpy()
        np.testing.assert_allclose(v, np_soft_value(q, alpha), rtol=1e-10, atol=1e-10)
        # independent route: sum_a pi (Q - alpha log pi) = alpha * logsumexp(Q / alpha)
        np.testing.assert_allclose(v, alpha * torch.logsumexp(qt / alpha, dim=-1).numpy(), rtol=1e-10)


def test_limits_uniform_and_greedy():
    q = torch.full((1, 1, 5), 3.0)
    log_pi = soft_q.boltzmann_log_policy(q, 0.5)
    assert soft_q.policy_entropy(log_pi).item() == pytest.approx(math.log(5), abs=1e-6)
    assert soft_q.soft_value(q, log_pi, 0.5).item() == pytest.approx(3.0 + 0.5 * math.log(5), abs=1e-5)
    # as alpha -> 0 the soft value tends to max Q and the entropy to 0
    q = torch.tensor([[[1.0, 4.0, 2.0]]])
    log_pi = soft_q.boltzmann_log_policy(q, 1e-4)
    assert soft_q.soft_value(q, log_pi, 1e-4).item() == pytest.approx(4.0, abs=1e-3)
    assert soft_q.policy_entropy(log_pi).item() == pytest.approx(0.0, abs=1e-6)


def test_log_policy_is_finite_for_extreme_logits():
    q = torch.tensor([[[0.0, 1e4, -1e4]]])
    log_pi = soft_q.boltzmann_log_policy(q, 1e-3)
    assert torch.isfinite(log_pi).all()
    assert torch.isfinite(soft_q.policy_entropy(log_pi)).all()


def test_entropy_matches_numpy(rng):
    q = rng.normal(size=(32, 2, 4))
    log_pi = np_log_softmax(q / 0.7)
    ref = -(np.exp(log_pi) * log_pi).sum(-1)
    got = soft_q.policy_entropy(soft_q.boltzmann_log_policy(torch.tensor(q), 0.7)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_td_target_bootstraps_unless_terminated(rng):
    q_next = torch.tensor(rng.normal(size=(4, 1, 3)))
    rewards = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
    terminated = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    y = soft_q.soft_td_target(rewards, terminated, q_next, 0.2, 0.99)[:, 0].numpy()
    v = np_soft_value(q_next.numpy(), 0.2)[:, 0]
    np.testing.assert_allclose(y, rewards.numpy() + 0.99 * (1 - terminated.numpy()) * v, rtol=1e-10)


def test_padding_mask_equals_unpadded_computation(rng):
    # dimension 0 has 2 real actions, dimension 1 has 4: padded entries must not matter
    q = torch.tensor(rng.normal(size=(8, 2, 4)))
    q_garbage = q.clone()
    q_garbage[:, 0, 2:] = 1e6
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    log_pi = soft_q.boltzmann_log_policy(q_garbage, 0.5, mask)
    v = soft_q.soft_value(q_garbage, log_pi, 0.5, mask)
    h = soft_q.policy_entropy(log_pi, mask)
    assert log_pi[:, 0, 2:].exp().sum() == 0
    np.testing.assert_allclose(v[:, 0], np_soft_value(q[:, 0, :2].numpy(), 0.5), rtol=1e-10)
    np.testing.assert_allclose(v[:, 1], np_soft_value(q[:, 1].numpy(), 0.5), rtol=1e-10)
    ref_h0 = -(np.exp(np_log_softmax(q[:, 0, :2].numpy() / 0.5)) * np_log_softmax(q[:, 0, :2].numpy() / 0.5)).sum(-1)
    np.testing.assert_allclose(h[:, 0], ref_h0, rtol=1e-10)


def test_temperature_loss_gradient_is_entropy_gap():
    entropy = torch.tensor([[0.9], [0.5]])
    target = torch.tensor([0.4])
    log_alpha = torch.zeros(1, requires_grad=True)
    soft_q.temperature_loss(log_alpha, entropy, target).backward()
    # d/dlog_alpha = mean(H) - H_target = 0.7 - 0.4 > 0: descent lowers alpha (policy too random)
    assert log_alpha.grad.item() == pytest.approx(0.3)


def test_temperature_loss_shared_and_per_dimension():
    entropy = torch.tensor([[1.0, 0.2], [0.6, 0.4]])  # (B=2, D=2)
    target = torch.tensor([0.5, 0.5])
    shared = torch.zeros(1, requires_grad=True)
    soft_q.temperature_loss(shared, entropy, target).backward()
    assert shared.grad.item() == pytest.approx((1.2 + 1.0) / 2 - 1.0)  # joint entropy vs summed target
    per_dim = torch.zeros(2, requires_grad=True)
    soft_q.temperature_loss(per_dim, entropy, target).backward()
    assert per_dim.grad.tolist() == pytest.approx([0.8 - 0.5, 0.3 - 0.5])


def test_target_entropy_ratio_of_log_n():
    assert soft_q.target_entropy([2, 5], 0.5).tolist() == pytest.approx([0.5 * math.log(2), 0.5 * math.log(5)])


def test_taken_q_and_losses():
    q = torch.tensor([[[1.0, 2.0, 3.0]], [[4.0, 5.0, 6.0]]])
    actions = torch.tensor([[2], [0]])
    assert soft_q.taken_q(q, actions)[:, 0].tolist() == [3.0, 4.0]
    twin = torch.stack([q, q + 1])
    assert soft_q.taken_q(twin, actions)[1, :, 0].tolist() == [4.0, 5.0]
    target = torch.tensor([[1.0], [4.5]])
    pred = torch.tensor([[3.0], [4.0]])
    assert soft_q.td_loss(pred, target, "mse").item() == pytest.approx((4 + 0.25) / 2)
    assert soft_q.td_loss(pred, target, "huber").item() == pytest.approx((1.5 + 0.125) / 2)
    with pytest.raises(ValueError, match="loss must be"):
        soft_q.td_loss(pred, target, "l1")


def test_mean_target_averages_dimension_values(rng):
    q_next = torch.tensor(rng.normal(size=(5, 3, 4)))
    r, term = torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    indep = soft_q.soft_td_target(r, term, q_next, 0.3, 0.9, multidiscrete_target="independent")
    mean = soft_q.soft_td_target(r, term, q_next, 0.3, 0.9, multidiscrete_target="mean")
    np.testing.assert_allclose(mean.numpy(), np.repeat(indep.mean(1, keepdim=True).numpy(), 3, axis=1), rtol=1e-12)
