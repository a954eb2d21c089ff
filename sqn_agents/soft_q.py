r"""The math of discrete soft Q-learning, as pure functions of tensors.

Nothing here holds state or touches an optimizer; ``learner.py`` and ``actor.py`` do the bookkeeping and
calls these. Every function works on Q tables of shape ``(B, D, N)``: ``B`` states, ``D``
action dimensions (1 for a ``Discrete`` space, ``len(nvec)`` for ``MultiDiscrete``) and
``N`` actions per dimension. When the dimensions have different sizes the table is padded
to the largest and ``mask`` (``(D, N)`` bool, True for real actions) says which entries
are real; padded entries get zero probability and contribute nothing. A legal-action mask
is the same thing per state: ``(B, D, N)`` bool, True for the actions legal in that state
(already combined with the padding). Every function here takes either; a state needs at
least one legal action per dimension (the agent checks this before anything is stored).

The equations (``alpha`` is the temperature):

    pi(a|s)  = softmax(Q(s, .) / alpha)                                (Boltzmann policy)
    V(s)     = sum_a pi(a|s) (Q(s, a) - alpha log pi(a|s))  = alpha logsumexp(Q(s, .) / alpha)
    y        = r + gamma (1 - terminated) V'(s'),  with V' computed from min(Q1', Q2')
    y_n      = sum_{k<n} gamma^k r_{t+k} + gamma^n (1 - terminated) V'(s_{t+n})   (n-step, see below)
    y_M      = y + scale * clip(alpha log pi'(a_t|s_t), l0, 0)                    (Munchausen, optional)
    L_Q      = loss(Q1(s, a), y) + loss(Q2(s, a), y)
    L_alpha  = log(alpha) * (H[pi(.|s)] - H_target(s))       (H_target(s) = ratio * log n_legal(s))

The design note is DI-engine's SQN documentation
(https://opendilab.github.io/DI-engine/12_policies/sqn.html), whose reference implementation
these functions follow except where noted.

Decision on the target entropy under legal-action masks: it follows the number of legal
actions of each state, ``H_target(s) = ratio * log n_legal(s)`` (per dimension), rather than
the fixed ``ratio * log N``. The entropy of a policy over ``n`` actions is at most ``log n``,
so with the fixed target a state with few legal moves (a nearly full board) could never
reach it: its entropy gap would stay negative whatever alpha is, pushing alpha up without
bound and the policy toward uniform everywhere else. Scaled by the legal count the target is
always reachable, and a state with one legal move (entropy 0, target 0) exerts no pull at all.
Without masks ``n_legal`` is the dimension's size and nothing changes.

Decision on the design note's TODO ("use q_targ or q0 for pi"): the target policy is the
Boltzmann policy of the *same* clipped target table ``min(Q1', Q2')`` that is being
averaged. Then ``V'`` is exactly the soft maximum ``alpha logsumexp(min(Q1', Q2') / alpha)``,
the soft Bellman backup of the clipped Q function, and needs no extra forward pass of an
online network at ``s'``. (Using the online ``Q1`` would evaluate the target table under a
different policy, which makes ``V'`` smaller than the soft maximum and mixes fresh online
noise into the target.) ``tests/test_soft_q.py`` checks the identity above.

n-step returns: the replay sums the rewards of up to ``n`` steps of one episode and passes
``gamma^m`` as the bootstrap discount (``m < n`` when the episode ended or the stream's next
step is not stored yet). The entropy bonus enters only through ``V'`` at the bootstrap state:
the intermediate terms ``-alpha log pi(a_{t+k}|s_{t+k})`` would be those of the *current*
policy at actions an older policy took, needing ``n - 1`` extra forward passes per update and
adding the variance of off-policy log-probabilities; with the small ``n`` that works in
practice (3) they are a small part of the return, and leaving them out keeps the target a
function of the stored rewards and one bootstrap.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _as_alpha(alpha: torch.Tensor | float, q: torch.Tensor) -> torch.Tensor:
    """Broadcast a scalar, (1,) or per-dimension (D,) temperature against a (B, D, N) table."""
    alpha = torch.as_tensor(alpha, dtype=q.dtype, device=q.device)
    return alpha.reshape(1, -1, 1) if alpha.ndim > 0 else alpha


def boltzmann_log_policy(
    q: torch.Tensor, alpha: torch.Tensor | float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``log softmax(Q / alpha)`` over the last axis; ``-inf`` at padded entries.

    Computed with ``log_softmax`` so it never takes ``log(0)`` of a real action, however
    large ``Q / alpha`` gets.
    """
    logits = q / _as_alpha(alpha, q)
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return F.log_softmax(logits, dim=-1)


def policy_entropy(log_pi: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Entropy ``-sum_a pi log pi`` of each dimension's policy: ``(B, D, N) -> (B, D)``."""
    if mask is not None:
        log_pi = log_pi.masked_fill(~mask, 0.0)  # pi = 0 there; avoid 0 * -inf = nan
    return -(log_pi.exp() * log_pi).sum(dim=-1)


def soft_value(
    q: torch.Tensor, log_pi: torch.Tensor, alpha: torch.Tensor | float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Exact expectation ``sum_a pi(a|s) (Q(s, a) - alpha log pi(a|s))``: ``(B, D, N) -> (B, D)``."""
    if mask is not None:
        q = q.masked_fill(~mask, 0.0)
        log_pi = log_pi.masked_fill(~mask, 0.0)
    return (log_pi.exp() * (q - _as_alpha(alpha, q) * log_pi)).sum(dim=-1)


def soft_td_target(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    next_q_target: torch.Tensor,
    alpha: torch.Tensor | float,
    gamma: float | torch.Tensor,
    mask: torch.Tensor | None = None,
    multidiscrete_target: str = "independent",
) -> torch.Tensor:
    """Soft TD target ``y`` of shape ``(B, D)``, one per action dimension.

    Args:
        rewards, terminated: ``(B,)``. Only ``terminated`` stops bootstrapping; a
            truncated transition bootstraps from its real next observation. For n-step
            returns ``rewards`` is the discounted sum of the steps' rewards.
        gamma: the discount, or a ``(B,)`` tensor of bootstrap discounts ``gamma^m`` for
            m-step returns.
        next_q_target: ``(B, D, N)``, already the minimum of the two target networks.
        multidiscrete_target: ``"independent"`` gives each dimension its own target
            ``r + gamma V_d(s')`` (the design note's reference implementation);
            ``"mean"`` gives every dimension the branching target ``r + gamma mean_d V_d(s')``
            (Tavakoli et al., "Action Branching Architectures"). Identical when ``D == 1``.
    """
    log_pi = boltzmann_log_policy(next_q_target, alpha, mask)
    v_next = soft_value(next_q_target, log_pi, alpha, mask)  # (B, D)
    if multidiscrete_target == "mean":
        v_next = v_next.mean(dim=1, keepdim=True).expand_as(v_next)
    elif multidiscrete_target != "independent":
        raise ValueError(f"multidiscrete_target must be 'independent' or 'mean', got {multidiscrete_target!r}")
    not_done = 1.0 - terminated
    if isinstance(gamma, torch.Tensor):
        return rewards.unsqueeze(1) + (gamma * not_done).unsqueeze(1) * v_next
    return rewards.unsqueeze(1) + gamma * not_done.unsqueeze(1) * v_next


def munchausen_bonus(
    q_target: torch.Tensor,
    actions: torch.Tensor,
    alpha: torch.Tensor | float,
    scale: float,
    clip: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Munchausen term ``scale * clip(alpha log pi'(a|s), clip, 0)`` per action dimension: ``(B, D)``.

    ``q_target`` is ``min(Q1', Q2')`` at the *current* states ``s`` (``(B, D, N)``) and
    ``actions`` the taken ``(B, D)`` indices; ``pi' = softmax(q_target / alpha)`` is the target
    networks' Boltzmann policy (Vieillard et al. 2020, "Munchausen Reinforcement Learning",
    with SQN's learned temperature in place of their fixed tau). The clip keeps the term finite
    as ``log pi'`` goes to ``-inf`` for actions the policy has all but ruled out.
    """
    log_pi = boltzmann_log_policy(q_target, alpha, mask)
    scaled = _as_alpha(alpha, q_target) * log_pi  # (B, D, N)
    return scale * taken_q(scaled, actions).clamp(min=clip, max=0.0)


def intermediate_entropy_bonus(
    q_mid: torch.Tensor, alpha: torch.Tensor | float, discounts: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``sum_k discounts_k * alpha * H(pi'(.|s_{t+k}))`` per action dimension: ``(B, D)``.

    ``q_mid`` is ``min(Q1', Q2')`` at the intermediate states, ``(B, K, D, N)``; ``discounts`` is
    ``(B, K)``, ``gamma^k`` for the states a return passes through and 0 for those it does not.
    Added to an n-step target this puts back the entropy bonus the soft backup collects at each
    step: ``V = E_pi[Q] + alpha H``, so unrolling ``Q = r + gamma V`` along the trajectory gives
    ``r_t + gamma (alpha H_{t+1} + r_{t+1}) + ...`` (with the policy's expected entropy in place of
    the sampled ``-alpha log pi(a_{t+k})`` of actions an older policy took).
    """
    b, k = q_mid.shape[:2]
    flat = q_mid.reshape(b * k, *q_mid.shape[2:])
    entropy = policy_entropy(boltzmann_log_policy(flat, alpha, mask), mask).reshape(b, k, -1)  # (B, K, D)
    return (discounts.unsqueeze(-1) * _as_alpha(alpha, flat).reshape(1, 1, -1) * entropy).sum(dim=1)


def taken_q(q: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Q values of the taken actions: ``q (..., B, D, N)``, ``actions (B, D)`` -> ``(..., B, D)``."""
    index = actions.unsqueeze(-1).expand(*q.shape[:-1], 1)
    return q.gather(-1, index).squeeze(-1)


def td_loss(q_taken: torch.Tensor, target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Mean TD loss over the batch and the action dimensions.

    Every dimension is weighted equally (``1 / D``), unlike the reference implementation,
    which weighted the first head differently from the rest.
    """
    if kind == "mse":
        return F.mse_loss(q_taken, target)
    if kind == "huber":
        return F.smooth_l1_loss(q_taken, target)
    raise ValueError(f"loss must be 'mse' or 'huber', got {kind!r}")


def target_entropy(action_sizes: torch.Tensor | list[int], ratio: float) -> torch.Tensor:
    """Per-dimension entropy targets ``ratio * log(n_d)`` (``(D,)``)."""
    sizes = torch.as_tensor(action_sizes, dtype=torch.float32)
    return ratio * torch.log(sizes)


def masked_target_entropy(mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """Per-state, per-dimension entropy targets ``ratio * log(n_legal)``: ``(B, D, N)`` bool -> ``(B, D)``.

    ``n_legal`` counts the True entries; the maximum entropy of a policy over them is
    ``log n_legal``, so the target never lies above what the state allows (see the module docstring).
    """
    return ratio * torch.log(mask.sum(dim=-1).to(torch.float32))


def temperature_loss(log_alpha: torch.Tensor, entropy: torch.Tensor, entropy_target: torch.Tensor) -> torch.Tensor:
    """Loss whose gradient moves ``log_alpha`` toward the target entropy.

    ``d L / d log_alpha = H - H_target``: when the policy is more random than the target,
    gradient descent lowers alpha (a greedier policy), and raises it otherwise.

    Args:
        log_alpha: ``(1,)`` for one temperature shared by all dimensions, which then
            tracks the joint entropy ``sum_d H_d`` against ``sum_d H_target_d``; or
            ``(D,)`` for one temperature per dimension, each tracking its own entropy.
        entropy: ``(B, D)`` policy entropies (treated as constants).
        entropy_target: ``(D,)``, or ``(B, D)`` per state (``masked_target_entropy``).
    """
    entropy = entropy.detach()
    entropy_target = entropy_target.to(entropy.dtype)
    if log_alpha.numel() == 1:
        gap = entropy.sum(dim=1) - entropy_target.sum(dim=-1)  # (B,)
        return (log_alpha * gap).mean()
    gap = (entropy - entropy_target).mean(dim=0)  # (D,)
    return (log_alpha * gap).sum()
