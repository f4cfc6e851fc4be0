"""Loss terms of structure-aware rebalancing (docs/science.md §4), each with its analytic gradient.

Notation for one batch of ``B`` reference pairs: ``u`` (B, d) are the adapted query-side features,
``v`` (B, d) the adapted gallery-side features, both with unit rows; row i of ``u`` matches row i of
``v``. The paper's "text" is our query side and its "image" our gallery side.

* InfoNCE (symmetric, temperature ``tau``; ITC between ``u`` and ``v``, and the representation
  terms TTC between ``u`` and the query teacher, IIC between ``v`` and the gallery teacher)::

      S = a b^T / tau
      L = 1/2 [ mean_i (logsumexp_j S_ij - S_ii) + mean_j (logsumexp_i S_ij - S_jj) ]

* Structure distillation, mean off-diagonal absolute difference to the teacher mixture::

      F = a b^T / tau2                       (KD: a = u, b = v; KDT: a = b = u; KDI: a = b = v)
      A = lam A_q + (1 - lam) A_g,  lam = sigmoid(theta)   (learnable, theta = 0 gives 0.5)
      L = 1 / (B (B - 1)) sum_{i != j} |F_ij - A_ij|

  ``A_q`` and ``A_g`` are the teachers' pairwise cosine matrices over the batch. The gradient of
  ``|.|`` is taken as ``sign(.)`` (0 at 0).

* The total, with weights ``w_kd`` (cross-side structure), ``w_within`` (within-side structure)
  and ``w_rep`` (representation)::

      L = ITC + w_kd KD + w_within (KDT + KDI) + w_rep (IIC + TTC)

Every function returns the loss and its gradients; ``tests/rebalance/test_losses.py`` checks each
against central finite differences.
"""
import numpy as np


def _log_softmax(s, axis):
    shifted = s - s.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def info_nce(a, b, tau):
    """Symmetric InfoNCE with positives on the diagonal.

    Parameters
    ----------
    a, b : ndarray of shape (B, d), float64
    tau : float > 0

    Returns
    -------
    loss : float
    grad_a, grad_b : ndarray of shape (B, d)
    """
    n = a.shape[0]
    s = a @ b.T / tau
    log_rows, log_cols = _log_softmax(s, 1), _log_softmax(s, 0)
    loss = -0.5 * (np.trace(log_rows) + np.trace(log_cols)) / n
    g = (np.exp(log_rows) + np.exp(log_cols)) / (2 * n)
    g[np.diag_indices(n)] -= 1.0 / n
    return float(loss), g @ b / tau, g.T @ a / tau


def off_diagonal_l1(f, target):
    """``mean_{i != j} |f_ij - target_ij|`` and its gradient with respect to ``f`` (B, B).

    The gradient with respect to ``target`` is the negative of the one returned."""
    n = f.shape[0]
    diff = f - target
    np.fill_diagonal(diff, 0.0)
    scale = 1.0 / (n * (n - 1))
    return float(np.abs(diff).sum() * scale), np.sign(diff) * scale


def teacher_mixture(teacher_q, teacher_g, theta):
    """``A = lam A_q + (1 - lam) A_g`` with ``lam = sigmoid(theta)``.

    Parameters
    ----------
    teacher_q, teacher_g : ndarray of shape (B, d_q), (B, d_g), unit rows
    theta : float

    Returns
    -------
    a : ndarray of shape (B, B)
    da_dtheta : ndarray of shape (B, B)
    """
    a_q, a_g = teacher_q @ teacher_q.T, teacher_g @ teacher_g.T
    lam = 1.0 / (1.0 + np.exp(-theta))
    return lam * a_q + (1.0 - lam) * a_g, (a_q - a_g) * lam * (1.0 - lam)


def similarity_l1(a, b, target, tau2):
    """One structure term: ``mean_{i != j} |a_i . b_j / tau2 - target_ij|``.

    Parameters
    ----------
    a, b : ndarray of shape (B, d); for a within-side term pass the same array twice and add
        the two gradients
    target : ndarray of shape (B, B)
    tau2 : float > 0

    Returns
    -------
    loss : float
    grad_a, grad_b : ndarray of shape (B, d)
    grad_target : ndarray of shape (B, B)
    """
    loss, g = off_diagonal_l1(a @ b.T / tau2, target)
    return loss, g @ b / tau2, g.T @ a / tau2, -g


def structure_terms(u, v, target, tau2, w_kd=1.0, w_within=1.0):
    """KD (cross-side), KDT (query side), KDI (gallery side) against ``target`` (B, B); a term
    whose weight is 0 is neither computed nor returned.

    Returns
    -------
    losses : dict with keys among ``"KD"``, ``"KDT"``, ``"KDI"`` (unweighted)
    grad_u, grad_v : ndarray of shape (B, d), gradients of ``w_kd KD + w_within (KDT + KDI)``
    grad_target : ndarray of shape (B, B), gradient of the same weighted sum
    """
    losses = {}
    grad_u, grad_v, grad_t = np.zeros_like(u), np.zeros_like(v), np.zeros_like(target)
    if w_kd:
        losses["KD"], gu, gv, gt = similarity_l1(u, v, target, tau2)
        grad_u += w_kd * gu
        grad_v += w_kd * gv
        grad_t += w_kd * gt
    if w_within:
        for name, side, grad in (("KDT", u, grad_u), ("KDI", v, grad_v)):
            losses[name], ga, gb, gt = similarity_l1(side, side, target, tau2)
            grad += w_within * (ga + gb)
            grad_t += w_within * gt
    return losses, grad_u, grad_v, grad_t


def rebalancing_loss(u, v, teacher_q, teacher_g, proj_teacher_q, proj_teacher_g, theta, *,
                     w_kd, w_rep, tau, tau2, w_within=None):
    """Total loss ``ITC + w_kd KD + w_within (KDT + KDI) + w_rep (IIC + TTC)`` of one batch.

    Parameters
    ----------
    u, v : ndarray of shape (B, d), adapted query-side and gallery-side features (unit rows)
    teacher_q, teacher_g : ndarray of shape (B, d_q), (B, d_g), teacher features (unit rows),
        for the structure target ``A``
    proj_teacher_q, proj_teacher_g : ndarray of shape (B, d), teacher features projected into the
        adapted space (unit rows), for TTC and IIC
    theta : float, the mixing logit (``lam = sigmoid(theta)``)
    w_kd, w_rep, tau, tau2 : float
    w_within : float, optional (default ``w_kd``)

    Returns
    -------
    loss : float
    terms : dict of the unweighted terms ITC, KD, KDT, KDI, IIC, TTC (terms with zero weight are
        not computed and absent)
    grad_u, grad_v : ndarray of shape (B, d)
    grad_theta : float
    """
    w_within = w_kd if w_within is None else w_within
    itc, grad_u, grad_v = info_nce(u, v, tau)
    terms, loss, grad_theta = {"ITC": itc}, itc, 0.0
    if w_kd or w_within:
        target, da_dtheta = teacher_mixture(teacher_q, teacher_g, theta)
        structure, gu, gv, g_target = structure_terms(u, v, target, tau2, w_kd, w_within)
        terms.update(structure)
        loss += w_kd * structure.get("KD", 0.0) + w_within * (
            structure.get("KDT", 0.0) + structure.get("KDI", 0.0))
        grad_u += gu
        grad_v += gv
        grad_theta = float((g_target * da_dtheta).sum())
    if w_rep:
        ttc, gu, _ = info_nce(u, proj_teacher_q, tau)
        iic, gv, _ = info_nce(v, proj_teacher_g, tau)
        terms.update(TTC=ttc, IIC=iic)
        loss += w_rep * (ttc + iic)
        grad_u += w_rep * gu
        grad_v += w_rep * gv
    return loss, terms, grad_u, grad_v, grad_theta
