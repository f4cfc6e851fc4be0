"""Adam (Kingma & Ba, 2015) over a dict of numpy parameters, updated in place.

For each parameter ``p`` with gradient ``g`` at step ``t``::

    m = b1 m + (1 - b1) g;   s = b2 s + (1 - b2) g^2
    p -= lr * (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + eps)
"""
import numpy as np


class Adam:
    """Adam with bias correction. ``params`` maps names to float64 arrays (0-d allowed)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.params = params
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.s = {k: np.zeros_like(p) for k, p in params.items()}
        self.t = 0

    def step(self, grads):
        """Apply one update from ``grads`` (same keys and shapes as the parameters)."""
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for k, p in self.params.items():
            g = grads[k]
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.s[k] = self.b2 * self.s[k] + (1 - self.b2) * g * g
            p -= self.lr * (self.m[k] / c1) / (np.sqrt(self.s[k] / c2) + self.eps)
