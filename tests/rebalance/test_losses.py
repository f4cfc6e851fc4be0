"""Every analytic gradient of the rebalancing loss against central finite differences (float64)."""
import numpy as np
import pytest

from invgc_faiss.rebalance import losses
from invgc_faiss.rebalance.adapter import RebalancingAdapter
from invgc_faiss.rebalance.maps import ResidualLinear, ResidualLowRank, normalize_rows

EPS = 1e-6


def numeric_grad(f, x):
    """Central differences of the scalar ``f()`` with respect to every entry of ``x`` (in place)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + EPS
        up = f()
        flat[i] = old - EPS
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * EPS)
    return grad


@pytest.fixture
def batch():
    rng = np.random.default_rng(7)
    unit = lambda shape: normalize_rows(rng.standard_normal(shape))[0]  # noqa: E731
    return {"u": unit((6, 5)), "v": unit((6, 5)), "tq": unit((6, 4)), "tg": unit((6, 5)),
            "pq": unit((6, 5)), "pg": unit((6, 5))}


@pytest.mark.parametrize("tau", [0.07, 1.0])
def test_info_nce_gradients(batch, tau):
    a, b = batch["u"].copy(), batch["v"].copy()
    _, grad_a, grad_b = losses.info_nce(a, b, tau)
    np.testing.assert_allclose(grad_a, numeric_grad(lambda: losses.info_nce(a, b, tau)[0], a),
                               atol=1e-6)
    np.testing.assert_allclose(grad_b, numeric_grad(lambda: losses.info_nce(a, b, tau)[0], b),
                               atol=1e-6)


def test_info_nce_value_by_hand():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    # S = I / tau with tau = 1: each row and column is log(e + 1) - 1
    expected = np.log(np.e + 1) - 1
    assert losses.info_nce(a, a, 1.0)[0] == pytest.approx(expected)


def test_off_diagonal_l1_value_and_gradient(batch):
    rng = np.random.default_rng(1)
    f, target = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
    loss, grad = losses.off_diagonal_l1(f, target)
    off = ~np.eye(6, dtype=bool)
    assert loss == pytest.approx(np.abs(f - target)[off].mean())
    np.testing.assert_allclose(grad, numeric_grad(lambda: losses.off_diagonal_l1(f, target)[0], f),
                               atol=1e-8)
    assert np.all(np.diag(grad) == 0)


def test_teacher_mixture_gradient(batch):
    theta = np.array(0.3)
    weights = np.random.default_rng(2).standard_normal((6, 6))
    a, da = losses.teacher_mixture(batch["tq"], batch["tg"], float(theta))
    lam = 1 / (1 + np.exp(-0.3))
    np.testing.assert_allclose(a, lam * batch["tq"] @ batch["tq"].T
                               + (1 - lam) * batch["tg"] @ batch["tg"].T)
    numeric = numeric_grad(
        lambda: float((weights * losses.teacher_mixture(batch["tq"], batch["tg"], float(theta))[0]).sum()),
        theta)
    assert float((weights * da).sum()) == pytest.approx(float(numeric), abs=1e-7)


def test_teacher_mixture_starts_at_one_half(batch):
    a, _ = losses.teacher_mixture(batch["tq"], batch["tg"], 0.0)
    np.testing.assert_allclose(a, 0.5 * (batch["tq"] @ batch["tq"].T + batch["tg"] @ batch["tg"].T))


@pytest.mark.parametrize("tau2", [1.0, 0.5])
@pytest.mark.parametrize("term", ["KD", "KDT", "KDI"])
def test_each_structure_term_gradient(batch, term, tau2):
    u, v = batch["u"].copy(), batch["v"].copy()
    target = np.random.default_rng(3).uniform(-1, 1, (6, 6))
    if term == "KD":
        value = lambda: losses.similarity_l1(u, v, target, tau2)[0]  # noqa: E731
        _, grad_u, grad_v, grad_target = losses.similarity_l1(u, v, target, tau2)
    else:
        x = u if term == "KDT" else v
        value = lambda: losses.similarity_l1(x, x, target, tau2)[0]  # noqa: E731
        _, grad_a, grad_b, grad_target = losses.similarity_l1(x, x, target, tau2)
        grad_u, grad_v = (grad_a + grad_b, 0 * v) if term == "KDT" else (0 * u, grad_a + grad_b)
    np.testing.assert_allclose(grad_u, numeric_grad(value, u), atol=1e-7)
    np.testing.assert_allclose(grad_v, numeric_grad(value, v), atol=1e-7)
    np.testing.assert_allclose(grad_target, numeric_grad(value, target), atol=1e-7)
    terms, *_ = losses.structure_terms(u, v, target, tau2)
    assert terms[term] == pytest.approx(value())


def test_structure_terms_sum_gradients(batch):
    u, v = batch["u"].copy(), batch["v"].copy()
    target = np.random.default_rng(3).uniform(-1, 1, (6, 6))
    total = lambda: sum(losses.structure_terms(u, v, target, 0.5)[0].values())  # noqa: E731
    _, grad_u, grad_v, grad_target = losses.structure_terms(u, v, target, 0.5)
    np.testing.assert_allclose(grad_u, numeric_grad(total, u), atol=1e-7)
    np.testing.assert_allclose(grad_v, numeric_grad(total, v), atol=1e-7)
    np.testing.assert_allclose(grad_target, numeric_grad(total, target), atol=1e-7)


@pytest.mark.parametrize("w_kd,w_within,w_rep", [
    (0.0, 0.0, 0.0), (1.0, 1.0, 0.0), (0.0, 0.0, 1.0), (2.0, 2.0, 0.5), (2.0, 0.0, 1.0),
    (0.0, 1.5, 1.0), (2.0, 1.0, 1.0)])
def test_total_loss_gradients(batch, w_kd, w_within, w_rep):
    u, v, theta = batch["u"].copy(), batch["v"].copy(), np.array(-0.4)
    weights = dict(w_kd=w_kd, w_within=w_within, w_rep=w_rep, tau=0.07, tau2=1.0)

    def value():
        return losses.rebalancing_loss(u, v, batch["tq"], batch["tg"], batch["pq"], batch["pg"],
                                       float(theta), **weights)[0]

    loss, terms, grad_u, grad_v, grad_theta = losses.rebalancing_loss(
        u, v, batch["tq"], batch["tg"], batch["pq"], batch["pg"], float(theta), **weights)
    expected = (terms["ITC"] + w_kd * terms.get("KD", 0) + w_within * sum(
        terms.get(k, 0) for k in ("KDT", "KDI")) + w_rep * sum(terms.get(k, 0) for k in ("IIC", "TTC")))
    assert loss == pytest.approx(expected)
    # a term with weight 0 is not computed
    assert ("KD" in terms) == bool(w_kd) and ("KDT" in terms) == ("KDI" in terms) == bool(w_within)
    np.testing.assert_allclose(grad_u, numeric_grad(value, u), atol=1e-5)
    np.testing.assert_allclose(grad_v, numeric_grad(value, v), atol=1e-5)
    assert grad_theta == pytest.approx(float(numeric_grad(value, theta)), abs=1e-6)


@pytest.mark.parametrize("term,pair", [("TTC", ("u", "pq")), ("IIC", ("v", "pg"))])
def test_representation_terms_are_info_nce_with_the_projected_teacher(batch, term, pair):
    _, terms, *_ = losses.rebalancing_loss(batch["u"], batch["v"], batch["tq"], batch["tg"],
                                           batch["pq"], batch["pg"], 0.0, w_kd=0.0, w_rep=1.0,
                                           tau=0.07, tau2=1.0)
    assert terms[term] == pytest.approx(losses.info_nce(batch[pair[0]], batch[pair[1]], 0.07)[0])


@pytest.mark.parametrize("side_map", [ResidualLinear(), ResidualLowRank(3)])
def test_side_map_backward(side_map):
    rng = np.random.default_rng(4)
    x = normalize_rows(rng.standard_normal((7, 5)))[0]
    params = side_map.init_params(5, rng)
    for p in params.values():  # move away from the identity so every path is exercised
        p += 0.3 * rng.standard_normal(p.shape)
    weights = rng.standard_normal((7, 5))
    z, cache = side_map.forward(params, x)
    np.testing.assert_allclose(z, normalize_rows(x @ side_map.matrix(params))[0])
    grads = side_map.backward(params, cache, weights)
    for name, p in params.items():
        numeric = numeric_grad(lambda: float((weights * side_map.forward(params, x)[0]).sum()), p)
        np.testing.assert_allclose(grads[name], numeric, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("kind", ["linear", "lowrank"])
def test_adapter_parameter_gradients_end_to_end(kind):
    """The fitter's own loss-and-gradient routine: maps, teachers, mixing logit, all terms."""
    rng = np.random.default_rng(5)
    q = normalize_rows(rng.standard_normal((8, 4)))[0]
    g = normalize_rows(q + 0.5 * rng.standard_normal((8, 4)))[0]
    adapter = RebalancingAdapter(kind=kind, rank=2, w_kd=1.5, w_rep=0.7)
    maps = adapter._check_params()
    params = {"theta": np.array(0.2)}
    for side in ("query", "gallery"):
        params.update({f"{side}.{k}": p + 0.2 * rng.standard_normal(p.shape)
                       for k, p in maps.init_params(4, rng).items()})
    teacher = normalize_rows(rng.standard_normal((8, 6)))[0]
    data = (q, g, teacher, g, q, g)
    batch = np.arange(8)
    _, _, grads = adapter._loss_and_grads(maps, params, data, batch)
    for name, p in params.items():
        numeric = numeric_grad(lambda: adapter._loss_and_grads(maps, params, data, batch, False)[0], p)
        np.testing.assert_allclose(grads[name], numeric, atol=1e-6, err_msg=name)
