"""The BG/NBD and Gamma-Gamma maths on simulated customers whose true parameters are known."""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("scipy")

from crmcli.reports import clv  # noqa: E402

TRUE = clv.BgNbd(r=0.5, alpha=6.0, a=0.8, b=2.5)
SPEND = clv.GammaGamma(p=6.0, q=4.0, gamma=15.0)


def simulate(model: clv.BgNbd, n: int, seed: int) -> tuple[object, object, object]:
    """x, t_x, T (weeks) of ``n`` customers living the BG/NBD story, observed 20-52 weeks."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(model.r, 1 / model.alpha, n)
    drop = rng.beta(model.a, model.b, n)
    ages = rng.uniform(20, 52, n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / rates[i])
            if t > ages[i]:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < drop[i]:
                break
    return x, t_x, ages


def simulate_spend(model: clv.GammaGamma, x: object, seed: int) -> object:
    """Each customer's average of ``x`` purchase values drawn from Gamma(p, nu), nu ~ Gamma(q, gamma)."""
    rng = np.random.default_rng(seed)
    nu = rng.gamma(model.q, 1 / model.gamma, len(x))
    return np.array([rng.gamma(model.p, 1 / v, int(k)).mean() for k, v in zip(x, nu, strict=True)])


@pytest.fixture(scope="module")
def customers() -> tuple[object, object, object]:
    return simulate(TRUE, 4000, seed=1)


def test_bgnbd_fit_is_a_maximum_and_near_the_truth(customers: tuple[object, object, object]) -> None:
    x, t_x, T = customers
    fit = clv.fit_bgnbd(x, t_x, T)
    assert fit.converged, fit.reason
    best = clv.BgNbd(**fit.params)
    # The maximum beats the true parameters and every nearby point on this sample.
    assert fit.log_likelihood >= clv.bgnbd_log_likelihood(TRUE, x, t_x, T)
    for name in ("r", "alpha", "a", "b"):
        for factor in (0.97, 1.03):
            moved = clv.BgNbd(**{**fit.params, name: fit.params[name] * factor})
            assert clv.bgnbd_log_likelihood(moved, x, t_x, T) < fit.log_likelihood
    # 4,000 customers pin the purchase rate well and the dropout less so.
    assert best.r == pytest.approx(TRUE.r, rel=0.15)
    assert best.r / best.alpha == pytest.approx(TRUE.r / TRUE.alpha, rel=0.1)
    assert best.a / (best.a + best.b) == pytest.approx(TRUE.a / (TRUE.a + TRUE.b), rel=0.25)


def test_the_time_unit_changes_only_alpha(customers: tuple[object, object, object]) -> None:
    x, t_x, T = customers
    weeks = clv.fit_bgnbd(x, t_x, T)
    days = clv.fit_bgnbd(x, t_x * 7, T * 7)
    assert days.converged
    assert days.params["alpha"] == pytest.approx(weeks.params["alpha"] * 7, rel=1e-4)
    for name in ("r", "a", "b"):
        assert days.params[name] == pytest.approx(weeks.params[name], rel=1e-4)


def test_predictions_behave(customers: tuple[object, object, object]) -> None:
    x, t_x, T = customers
    model = clv.BgNbd(**clv.fit_bgnbd(x, t_x, T).params)
    alive = clv.p_alive(model, x, t_x, T)
    assert ((alive > 0) & (alive <= 1)).all() and (alive[x == 0] == 1).all()
    # Same frequency, a longer silence since the last purchase: less likely alive.
    recent, silent = clv.p_alive(model, np.array([5.0, 5.0]), np.array([30.0, 10.0]), np.array([32.0, 32.0]))
    assert recent > silent
    year = clv.expected_purchases(model, 52, x, t_x, T, alive)
    half = clv.expected_purchases(model, 26, x, t_x, T, alive)
    assert (year >= half).all() and (half >= 0).all()
    # Over the population, the forecast for the next 26 weeks matches what simulated customers do.
    wait = clv.wait_for_next_purchase(model, x, T, alive)
    assert np.isnan(wait[alive <= 0.5]).all() and (wait[alive > 0.5] > 0).all()


def test_expected_purchases_agrees_with_simulation() -> None:
    # Customers aged exactly 30 weeks, then 26 more weeks of the same story.
    rng = np.random.default_rng(5)
    n = 20000
    rates = rng.gamma(TRUE.r, 1 / TRUE.alpha, n)
    drop = rng.beta(TRUE.a, TRUE.b, n)
    x, t_x, later = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        t, alive = 0.0, True
        while alive:
            t += rng.exponential(1 / rates[i])
            if t > 56:
                break
            if t <= 30:
                x[i] += 1
                t_x[i] = t
            else:
                later[i] += 1
            alive = rng.random() >= drop[i]
    forecast = clv.expected_purchases(TRUE, 26, x, t_x, np.full(n, 30.0))
    assert forecast.sum() == pytest.approx(later.sum(), rel=0.05)
    for k in (0, 1, 3):  # and for groups of customers by frequency
        group = x == k
        assert forecast[group].sum() == pytest.approx(later[group].sum(), rel=0.12)


def test_closed_form_and_quadrature_agree() -> None:
    x = np.array([0.0, 1.0, 2.0, 7.0, 30.0])
    t_x = np.array([0.0, 3.0, 20.0, 25.0, 38.0])
    T = np.full(5, 40.0)
    s = 52 / (TRUE.alpha + T)
    alive = clv.p_alive(TRUE, x, t_x, T)
    quadrature = alive * clv._given_alive_by_quadrature(TRUE.a, TRUE.b, TRUE.r + x, x, s)
    assert clv.expected_purchases(TRUE, 52, x, t_x, T) == pytest.approx(quadrature, rel=1e-6)


def test_frequent_buyers_and_homogeneous_dropout_stay_finite() -> None:
    # A weekly regular for three years, and a fitted model whose dropout is the same for all
    # (a and b very large), where the hypergeometric closed form overflows.
    x = np.array([0.0, 1.0, 150.0, 400.0])
    t_x = np.array([0.0, 2.0, 155.0, 155.0])
    T = np.full(4, 156.0)
    for model in (TRUE, clv.BgNbd(r=0.3, alpha=1.1, a=42000.0, b=137000.0)):
        alive = clv.p_alive(model, x, t_x, T)
        year = clv.expected_purchases(model, 52, x, t_x, T)
        k, s = model.r + x, 52 / (model.alpha + T)
        # given alive, between what a customer sure to leave after one purchase and one sure to stay would buy
        assert (year >= alive * -np.expm1(-k * np.log1p(s)) * (1 - 1e-6)).all()
        assert (year <= alive * k * s * (1 + 1e-6)).all()


def test_gamma_gamma_recovers_the_spend_model(customers: tuple[object, object, object]) -> None:
    x = customers[0]
    repeat = x[x > 0]
    m = simulate_spend(SPEND, repeat, seed=2)
    fit = clv.fit_gamma_gamma(repeat, m)
    assert fit.converged, fit.reason
    assert fit.log_likelihood >= clv.gamma_gamma_log_likelihood(SPEND, repeat, m)
    found = clv.GammaGamma(**fit.params)
    mean = found.p * found.gamma / (found.q - 1)
    assert mean == pytest.approx(SPEND.p * SPEND.gamma / (SPEND.q - 1), rel=0.1)
    spend = clv.expected_spend(found, repeat, m)
    # Shrinkage: each expectation lies between the customer's own average and the population mean.
    assert (np.minimum(m, mean) <= spend + 1e-9).all() and (spend <= np.maximum(m, mean) + 1e-9).all()


def test_a_fit_that_runs_away_is_not_converged() -> None:
    # Every customer always spends exactly the same: no spread to learn p and q from.
    x = np.array([1.0, 2.0, 3.0, 4.0] * 30)
    fit = clv.fit_gamma_gamma(x, np.full(len(x), 20.0))
    assert not fit.converged and fit.reason


def test_the_same_dropout_for_everyone_converges() -> None:
    # Every customer leaves after a purchase with probability 0.25 exactly: the likelihood rises
    # along a ridge as a and b grow together (where lifetimes needs a penalizer). The fit
    # converges, either inside the range or at the model's limit (said in the note), with
    # a / (a + b) pinned down and no spread of dropout to speak of.
    notes = []
    for seed in (3, 4):  # on these two samples: a maximum inside the range, and the limit
        x, t_x, T = simulate(clv.BgNbd(r=0.5, alpha=6.0, a=2.5e6, b=7.5e6), 4000, seed=seed)
        fit = clv.fit_bgnbd(x, t_x, T)
        assert fit.converged, fit.reason
        a, b = fit.params["a"], fit.params["b"]
        assert a / (a + b) == pytest.approx(0.25, rel=0.15) and a + b > 50
        assert fit.params["r"] == pytest.approx(0.5, rel=0.2)
        notes.append(fit.note)
    assert notes[0] is None and notes[1] is not None and "same dropout chance" in notes[1]
