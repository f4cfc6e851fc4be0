"""The structure-aware rebalancing adapter: one residual map per side, fitted by Adam.

The maps are fitted post hoc on reference pairs of frozen embeddings (docs/science.md §4).

Loss per mini-batch (:func:`invgc_faiss.rebalance.losses.rebalancing_loss`)::

    L = ITC + w_kd KD + w_within (KDT + KDI) + w_rep (IIC + TTC)

with the structure target ``A = lam A_q + (1 - lam) A_g`` mixing the teachers' pairwise cosines,
``lam`` held at ``mixing`` (0.5) by default, or learned as ``sigmoid(theta)`` from ``mixing`` with
``learn_mixing=True`` (the paper's choice; the stress study found no gain from learning it, see
docs/results.md). Teachers default to the frozen embeddings themselves; independent unimodal
embeddings may be passed instead (any dimension: their cosines give ``A``; for TTC/IIC they are
projected into the d-dimensional space by a least-squares map fitted on the training pairs, then
normalized). ``w_kd = w_within = w_rep = 0`` is the ITC-only adapter.

Fitting: a seeded split holds out ``val_fraction`` of the pairs; mini-batch Adam on the rest, one
shuffled pass per epoch. After each epoch the adapted held-out pairs are ranked against each other
in both directions and fitting stops after ``patience`` epochs without a better held-out RSUM
(R@1 + R@5 + R@10 of both directions; ties go to the lower held-out ITC loss), keeping the best
epoch's parameters. The criterion holds no teacher term, so neither the teachers nor ``lam`` can
lower it by themselves. Everything is float64 numpy: the batch matrices are small (B x d and
B x B), so no deep-learning framework is needed.
"""
import logging
import sys

import numpy as np

from ..measures import hits
from ..validation import as_float_matrix, check_positive_int
from .alignment import Alignment, check_pairs
from .losses import rebalancing_loss
from .maps import normalize_rows, side_map
from .optim import Adam

logger = logging.getLogger(__name__)


def _epoch_bar(total, enabled):
    """tqdm over epochs on stderr when ``enabled`` and tqdm is installed, else None."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="rebalancing adapter", unit="epoch", file=sys.stderr)


def _teacher(teacher, reference, n, name, train_rows):
    """Teacher rows (n, d_t) normalized, and their projection into the d-dim space (n, d);
    ``reference`` (n, d) holds unit rows and is the teacher when none is given."""
    if teacher is None:
        return reference, reference
    t = as_float_matrix(teacher, name=name).astype(np.float64)
    if t.shape[0] != n:
        raise ValueError(f"{name} must have one row per reference pair ({n}), got {t.shape[0]}")
    unit = normalize_rows(t)[0]
    if t.shape[1] == reference.shape[1]:
        return unit, unit
    projection = np.linalg.lstsq(unit[train_rows], reference[train_rows], rcond=None)[0]
    return unit, normalize_rows(unit @ projection)[0]


class RebalancingAdapter(Alignment):
    """Residual adapters for both sides trained with the structure-aware rebalancing loss.

    Parameters
    ----------
    kind : {"linear", "lowrank"}
        Residual map per side: full ``I + Delta`` or ``I + P R^T`` of rank ``rank``.
    rank : int
        Rank of the low-rank map.
    w_kd : float >= 0
        Weight of the cross-side structure term KD.
    w_within : float >= 0
        Weight of the within-side structure terms KDT + KDI (all three weights 0: ITC only).
    w_rep : float >= 0
        Weight of the representation terms IIC + TTC.
    tau : float > 0
        InfoNCE temperature (0.07, the paper's).
    tau2 : float > 0
        Temperature dividing the student cosines in the structure terms (1: cosines compared with
        the teachers' cosines as they are).
    lr : float > 0
        Adam learning rate.
    batch_size : int >= 2
    max_epochs : int
    patience : int
        Epochs without a better held-out RSUM before stopping.
    val_fraction : float in (0, 1)
        Share of the pairs held out for early stopping.
    mixing : float
        The teacher mixing weight ``lam`` (of the query-side teacher): in [0, 1] when fixed, the
        start in (0, 1) when learned.
    learn_mixing : bool
        Hold ``lam`` at ``mixing`` (default) or learn it (the paper's choice).
    seed : int
        Seeds the split, the shuffles and the low-rank init: equal seeds give equal adapters.
    progress : bool
        Draw a progress bar over epochs (tqdm, when installed).

    Attributes
    ----------
    query_matrix_, gallery_matrix_ : ndarray of shape (d, d), float32
        The fitted side maps ``I + Delta`` (rows are mapped as ``normalize(x M)``).
    lambda_ : float
        Teacher mixing weight of the query side at the best epoch.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss`` (mean over its batches), ``val_rsum`` (the stopping
        criterion), ``val_loss`` and the held-out unweighted terms.
    best_epoch_ : int
    """

    name = "rebalance"

    def __init__(self, *, kind="linear", rank=64, w_kd=1.0, w_within=1.0, w_rep=1.0, tau=0.07,
                 tau2=1.0, lr=1e-4, batch_size=256, max_epochs=100, patience=5, val_fraction=0.1,
                 mixing=0.5, learn_mixing=False, seed=0, progress=False):
        self.kind, self.rank = kind, rank
        self.w_kd, self.w_within, self.w_rep, self.tau, self.tau2 = w_kd, w_within, w_rep, tau, tau2
        self.lr, self.batch_size, self.max_epochs, self.patience = lr, batch_size, max_epochs, patience
        self.val_fraction, self.seed, self.progress = val_fraction, seed, progress
        self.mixing, self.learn_mixing = mixing, learn_mixing

    def get_params(self):
        """The constructor parameters (saved with an index)."""
        return {k: getattr(self, k) for k in (
            "kind", "rank", "w_kd", "w_within", "w_rep", "tau", "tau2", "lr", "batch_size", "max_epochs",
            "patience", "val_fraction", "mixing", "learn_mixing", "seed")}

    def _check_params(self):
        maps = side_map(self.kind, check_positive_int(self.rank, "rank"))
        for name in ("w_kd", "w_within", "w_rep"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("tau", "tau2", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if check_positive_int(self.batch_size, "batch_size") < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        check_positive_int(self.max_epochs, "max_epochs")
        check_positive_int(self.patience, "patience")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if not (0 < self.mixing < 1 if self.learn_mixing else 0 <= self.mixing <= 1):
            raise ValueError(f"mixing must be in {'(0, 1)' if self.learn_mixing else '[0, 1]'}"
                             f"{' when learned' if self.learn_mixing else ''}, got {self.mixing!r}")
        return maps

    def fit(self, queries, gallery, *, query_teacher=None, gallery_teacher=None):
        """Fit both side maps on reference pairs.

        Parameters
        ----------
        queries, gallery : array_like of shape (n, d), row i matches row i
        query_teacher, gallery_teacher : array_like of shape (n, d_t), optional
            Teacher embeddings of the same pairs (default: ``queries`` / ``gallery``).

        Returns
        -------
        self
        """
        maps = self._check_params()
        q, g = check_pairs(queries, gallery, min_pairs=4)
        n, d = q.shape
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(n)
        n_val = max(2, int(round(self.val_fraction * n)))
        if n - n_val < 2:
            raise ValueError(f"{n} reference pairs leave fewer than 2 for training after holding "
                             f"out {n_val}")
        val_rows, train_rows = order[:n_val], order[n_val:]
        q64, g64 = normalize_rows(q.astype(np.float64))[0], normalize_rows(g.astype(np.float64))[0]
        teacher_q, proj_q = _teacher(query_teacher, q64, n, "query_teacher", train_rows)
        teacher_g, proj_g = _teacher(gallery_teacher, g64, n, "gallery_teacher", train_rows)
        data = (q64, g64, teacher_q, teacher_g, proj_q, proj_g)

        with np.errstate(divide="ignore"):  # a fixed mixing of 0 or 1 is theta = -inf or +inf
            theta = np.log(self.mixing) - np.log1p(-self.mixing)
        params = {"theta": np.array(theta)}
        for side in ("query", "gallery"):
            params.update({f"{side}.{k}": p for k, p in maps.init_params(d, rng).items()})
        optimiser = Adam(params if self.learn_mixing else
                         {k: p for k, p in params.items() if k != "theta"}, lr=self.lr)
        best = ((-np.inf, -np.inf), {k: p.copy() for k, p in params.items()}, 0)
        val_batches = [b for b in np.array_split(val_rows, range(self.batch_size, n_val,
                                                                 self.batch_size)) if b.size >= 2]
        self.history_, wait = [], 0
        bar = _epoch_bar(self.max_epochs, self.progress)
        for epoch in range(1, self.max_epochs + 1):
            train_loss = self._train_epoch(maps, params, optimiser, data, rng.permutation(train_rows))
            record = {"epoch": epoch, "train_loss": train_loss,
                      "val_rsum": self._held_out_rsum(maps, params, data, val_rows),
                      **self._held_out(maps, params, data, val_batches)}
            self.history_.append(record)
            logger.info("epoch %d: train %.4f, held-out RSUM %.2f", epoch, train_loss,
                        record["val_rsum"])
            if bar is not None:
                bar.update(1)
                bar.set_postfix(val_rsum=f"{record['val_rsum']:.2f}")
            score = (record["val_rsum"], -record["ITC"])
            if score[0] > best[0][0] or (score[0] == best[0][0] and score[1] > best[0][1] + 1e-6):
                best, wait = (score, {k: p.copy() for k, p in params.items()}, epoch), 0
            else:
                wait += 1
                if wait >= self.patience:
                    break
        if bar is not None:
            bar.close()
        _, best_params, self.best_epoch_ = best
        self.lambda_ = float(1.0 / (1.0 + np.exp(-best_params["theta"])))
        self.query_matrix_, self.gallery_matrix_ = (
            maps.matrix(self._side(best_params, side)).astype(np.float32)
            for side in ("query", "gallery"))
        self.d_ = d
        return self

    def _train_epoch(self, maps, params, optimiser, data, rows):
        """One Adam step per mini-batch of ``rows`` (already shuffled); the mean batch loss."""
        losses = []
        for start in range(0, rows.size, self.batch_size):
            batch = rows[start:start + self.batch_size]
            if batch.size < 2:  # a lone last row has no negatives
                continue
            loss, _, grads = self._loss_and_grads(maps, params, data, batch)
            optimiser.step(grads)
            losses.append(loss)
        return float(np.mean(losses))

    def _held_out_rsum(self, maps, params, data, rows, block=1024):
        """Held-out RSUM: the adapted held-out pairs ranked against each other, both directions
        (R@1 + R@5 + R@10 twice, percent), ``block`` rows of scores at a time."""
        u = maps.forward(self._side(params, "query"), data[0][rows])[0]
        v = maps.forward(self._side(params, "gallery"), data[1][rows])[0]
        total = 0.0
        for a, b in ((u, v), (v, u)):
            for start in range(0, rows.size, block):
                scores = a[start:start + block] @ b.T
                own = scores[np.arange(scores.shape[0]), np.arange(start, start + scores.shape[0])]
                total += hits(1 + (scores > own[:, None]).sum(axis=1)).sum()
        return float(total / rows.size)

    def _held_out(self, maps, params, data, batches):
        """``val_loss`` and the unweighted terms on the held-out batches, size-weighted means."""
        results = [self._loss_and_grads(maps, params, data, b, gradients=False) for b in batches]
        weights = [b.size for b in batches]
        record = {"val_loss": float(np.average([r[0] for r in results], weights=weights))}
        record.update({k: float(np.average([r[1][k] for r in results], weights=weights))
                       for k in results[0][1]})
        return record

    @staticmethod
    def _side(params, side):
        prefix = f"{side}."
        return {k[len(prefix):]: p for k, p in params.items() if k.startswith(prefix)}

    def _loss_and_grads(self, maps, params, data, batch, gradients=True):
        """Loss, unweighted terms and (if ``gradients``) the parameter gradients of one batch."""
        q, g, teacher_q, teacher_g, proj_q, proj_g = (a[batch] for a in data)
        pq, pg = self._side(params, "query"), self._side(params, "gallery")
        u, cache_q = maps.forward(pq, q)
        v, cache_g = maps.forward(pg, g)
        loss, terms, grad_u, grad_v, grad_theta = rebalancing_loss(
            u, v, teacher_q, teacher_g, proj_q, proj_g, float(params["theta"]),
            w_kd=self.w_kd, w_within=self.w_within, w_rep=self.w_rep, tau=self.tau, tau2=self.tau2)
        if not gradients:
            return loss, terms, None
        grads = {"theta": np.asarray(grad_theta)}
        grads.update({f"query.{k}": v for k, v in maps.backward(pq, cache_q, grad_u).items()})
        grads.update({f"gallery.{k}": v for k, v in maps.backward(pg, cache_g, grad_v).items()})
        return loss, terms, grads
