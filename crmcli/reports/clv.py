"""The models behind ``report clv``: BG/NBD for who comes back and how often, Gamma-Gamma for spend.

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while alive, a
customer buys at a Poisson rate lambda ~ Gamma(r, alpha); after each purchase they drop out
for good with probability p ~ Beta(a, b). A customer is summarised by x (repeat purchases),
t_x (time of the last purchase) and T (age), all measured from their first purchase.

Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"; Fader & Hardie's note on the
Gamma-Gamma model): each repeat purchase's value is Gamma(p, nu) around the customer's own
mean, and nu ~ Gamma(q, gamma) across customers; spend is independent of frequency.

Both are fitted by maximum likelihood on log-parameters (so every parameter stays positive)
with L-BFGS-B, analytic gradients and bounds, with time rescaled so the oldest customer's
age is 10: the same data in days or weeks give the same fit. Terms that depend only on x
are computed once per distinct x, which keeps a fit over a million customers to a second.

This module is pure maths on numpy arrays; it imports scipy, which is the ``analytics``
extra, so import it only through :func:`crmcli.reports.analytics.require_analytics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special

Array = Any  # numpy arrays; numpy's own typing adds nothing a reader needs here

LOG_BOUND = 12.0  # parameters between e^-12 and e^12 (about 6e-6 and 160,000)
AT_BOUND = 1e-3  # a log-parameter this close to a bound ran away: no finite maximum there
# Over many customers, fit every n-th first and start the full fit there: a few iterations
# over everyone instead of dozens.
WARM_START_FROM = 200_000
WARM_SAMPLE = 50_000
FLAT = 1e-5  # at a maximum the log-likelihood per customer is this flat in every log-parameter


@dataclass(frozen=True)
class Fit:
    """A maximum-likelihood fit: parameters, log-likelihood, and whether it can be trusted."""

    params: dict[str, float]
    log_likelihood: float
    converged: bool
    reason: str | None = None  # why it did not converge
    customers: int = 0
    note: str | None = None  # how to read a converged fit that reached a limit


@dataclass(frozen=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    gamma: float


# --- BG/NBD ----------------------------------------------------------------------


def _bgnbd_terms(theta: Array, x: Array, t_x: Array, T: Array, xs: Array, at_x: Array) -> tuple[float, Array]:
    """Log-likelihood and its gradient in the log-parameters (FHL 2005, eq. 7)."""
    r, alpha, a, b = np.exp(theta)
    # per distinct x
    lg = special.gammaln
    head = lg(r + xs) - lg(r) + lg(a + b) + lg(b + xs) - lg(b) - lg(a + b + xs)
    repeat = xs > 0
    drop = np.where(repeat, np.log(a) - np.log(np.where(repeat, b + xs - 1, 1.0)), -np.inf)
    psi_rx = special.digamma(r + xs)
    psi_abx = special.digamma(a + b + xs)
    d_b_x = special.digamma(b + xs) - psi_abx
    inv_bx1 = np.where(repeat, 1.0 / np.where(repeat, b + xs - 1, 1.0), 0.0)
    # per customer
    n = len(x)
    rx = r + x
    log_aT = np.log(alpha + T)
    log_at = np.log(alpha + t_x)
    stay = -rx * log_aT
    left = drop[at_x] - rx * log_at
    both = np.logaddexp(stay, left)
    w = np.exp(left - both)  # the share of the likelihood from "dropped out after the last purchase"
    ll = float(head[at_x].sum() + n * r * np.log(alpha) + both.sum())
    g_r = psi_rx[at_x].sum() - n * special.digamma(r) + n * np.log(alpha) - ((1 - w) * log_aT + w * log_at).sum()
    g_alpha = n * r / alpha - (rx * ((1 - w) / (alpha + T) + w / (alpha + t_x))).sum()
    g_a = n * special.digamma(a + b) - psi_abx[at_x].sum() + w.sum() / a
    g_b = n * (special.digamma(a + b) - special.digamma(b)) + d_b_x[at_x].sum() - (w * inv_bx1[at_x]).sum()
    grad = np.array([g_r * r, g_alpha * alpha, g_a * a, g_b * b])
    return ll, grad


def bgnbd_log_likelihood(model: BgNbd, x: Array, t_x: Array, T: Array) -> float:
    xs, at_x = np.unique(x, return_inverse=True)
    theta = np.log([model.r, model.alpha, model.a, model.b])
    return _bgnbd_terms(theta, x, t_x, T, xs, at_x)[0]


def fit_bgnbd(x: Array, t_x: Array, T: Array) -> Fit:
    """Fit r, alpha, a, b to repeat frequency ``x``, recency ``t_x`` and age ``T`` (any one time unit)."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    scale = 10.0 / T.max() if len(T) and T.max() > 0 else 1.0
    ts_x, ts = t_x * scale, T * scale
    xs, at_x = np.unique(x, return_inverse=True)

    n = max(len(x), 1)

    def minus(theta: Array) -> tuple[float, Array]:  # per customer, so tolerances mean the same at any size
        ll, grad = _bgnbd_terms(theta, x, ts_x, ts, xs, at_x)
        return -ll / n, -grad / n

    rate = x.sum() / ts.sum() if ts.sum() > 0 else 1.0
    starts = [
        np.log([1.0, 1.0 / max(rate, 1e-6), 1.0, 1.0]),
        np.log([0.5, 0.5 / max(rate, 1e-6), 0.5, 2.0]),
        np.zeros(4),
    ]
    if len(x) > WARM_START_FROM:
        sample = fit_bgnbd(*(v[:: len(x) // WARM_SAMPLE] for v in (x, t_x, T)))
        if sample.converged:
            p = sample.params
            starts.insert(0, np.log([p["r"], p["alpha"] * scale, p["a"], p["b"]]))
    # With the same dropout chance for every customer, a and b grow without bound at a fixed
    # a / (a + b): the likelihood's supremum is the model's limit, not a failure.
    theta, reason = _maximise(minus, starts, ("r", "alpha", "a", "b"), may_grow=frozenset({"a", "b"}))
    r, alpha, a, b = np.exp(theta)
    model = BgNbd(float(r), float(alpha / scale), float(a), float(b))
    ll = bgnbd_log_likelihood(model, x, t_x, T)
    note = None
    if reason is None and max(theta[2], theta[3]) > LOG_BOUND - AT_BOUND:
        if min(a, b) < 100:
            reason = "a or b ran to the edge of the search range alone: the data do not pin them down"
        else:
            note = (
                f"a and b grew without bound: every customer has the same dropout chance after a purchase, "
                f"a / (a + b) = {a / (a + b):.4f}"
            )
    return Fit(
        params={"r": model.r, "alpha": model.alpha, "a": model.a, "b": model.b},
        log_likelihood=float(ll),
        converged=reason is None,
        reason=reason,
        customers=len(x),
        note=note,
    )


def p_alive(model: BgNbd, x: Array, t_x: Array, T: Array) -> Array:
    """P(still a customer at T | x, t_x, T): 1 for x = 0 (BG/NBD drops out only after a purchase)."""
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    repeat = x > 0
    log_odds = np.where(
        repeat,
        np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0)) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)),
        -np.inf,
    )
    return special.expit(-log_odds)


def expected_purchases(model: BgNbd, t: float, x: Array, t_x: Array, T: Array, alive: Array | None = None) -> Array:
    """Expected purchases in the next ``t`` time units (FHL 2005, eq. 10).

    Given alive, it is E[(1 - (1 + p s)^-(r+x)) / p] with s = t / (alpha + T) and the dropout
    p ~ Beta(a, b + x): the closed form with Euler's transformation of the hypergeometric
    function, (1 - z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), and Gauss-Jacobi quadrature of that
    expectation wherever the closed form overflows or leaves the bounds the expectation must
    keep (very large a and b: dropout the same for everyone).
    """
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    if abs(a - 1) < 1e-9:  # the closed form divides by a - 1; its limit is continuous there
        a = 1 + 1e-9
    if alive is None:
        alive = p_alive(model, x, t_x, T)
    s = t / (alpha + T)
    z = s / (1 + s)
    c = a + b + x - 1
    k = r + x
    with np.errstate(all="ignore"):
        tail = (1 - z) ** (a - 1) * special.hyp2f1(a + b - 1 - r, a - 1, c, z)
        given_alive = c / (a - 1) * (1 - tail)
        # (1 - (1 + p s)^-k) / p falls from k s at p = 0 to 1 - (1 + s)^-k at p = 1
        low, high = -np.expm1(-k * np.log1p(s)), k * s
    bad = ~np.isfinite(given_alive) | (given_alive < low * (1 - 1e-9)) | (given_alive > high * (1 + 1e-9))
    if bad.any():
        given_alive = np.where(bad, 0.0, given_alive)
        given_alive[bad] = _given_alive_by_quadrature(a, b, k[bad], x[bad], s[bad])
    return alive * given_alive


def _given_alive_by_quadrature(a: float, b: float, k: Array, x: Array, s: Array, nodes: int = 48) -> Array:
    """E[(1 - (1 + p s)^-k) / p] for p ~ Beta(a, b + x), by Gauss quadrature per distinct x."""
    out = np.empty(len(k))
    for value in np.unique(x):
        group = x == value
        p, w = beta_nodes(a, b + value, nodes)
        inner = -np.expm1(-np.outer(k[group], np.ones(nodes)) * np.log1p(np.outer(s[group], p))) / p
        out[group] = inner @ w
    return out


def beta_nodes(a: float, b: float, n: int) -> tuple[Array, Array]:
    """Gauss nodes and weights (summing to 1) for expectations over p ~ Beta(a, b).

    Golub-Welsch on the Jacobi polynomials' recurrence: the weights come from eigenvectors,
    so no normalising constant (which overflows for large a and b, as scipy's roots_jacobi
    does) is ever formed.
    """
    from scipy.linalg import eigh_tridiagonal

    al, be = b - 1.0, a - 1.0  # Jacobi weight (1 - u)^al (1 + u)^be on (-1, 1), u = 2p - 1
    ab = al + be
    i = np.arange(1, n, dtype=float)
    diag = np.empty(n)
    diag[0] = (be - al) / (ab + 2)
    diag[1:] = (be * be - al * al) / ((2 * i + ab) * (2 * i + ab + 2))
    off = np.empty(n - 1)
    # the first term written with (1 + ab) cancelled, which may be negative or zero
    off[0] = 4 * (1 + al) * (1 + be) / ((2 + ab) ** 2 * (3 + ab))
    j = i[1:]
    off[1:] = 4 * j * (j + al) * (j + be) * (j + ab) / ((2 * j + ab) ** 2 * (2 * j + ab + 1) * (2 * j + ab - 1))
    u, vectors = eigh_tridiagonal(diag, np.sqrt(off))
    weights = vectors[0] ** 2
    return (1 + u) / 2, weights / weights.sum()


def wait_for_next_purchase(model: BgNbd, x: Array, T: Array, alive: Array) -> Array:
    """Time from T until the customer has more likely than not bought again; NaN when never.

    An alive customer's rate is Gamma(r + x, alpha + T) given their history, so the chance
    of no purchase within s is ((alpha + T) / (alpha + T + s))^(r + x); counting the chance
    that they have left, P(a purchase within s) = alive x (1 - that), which reaches 1/2 only
    when alive > 1/2.
    """
    r, alpha = model.r, model.alpha
    likely = alive > 0.5
    keep = np.where(likely, 1 - 0.5 / np.where(likely, alive, 1.0), 1.0)
    with np.errstate(over="ignore"):
        s = (alpha + T) * (keep ** (-1.0 / (r + x)) - 1)
    return np.where(likely, s, np.nan)


# --- Gamma-Gamma -------------------------------------------------------------------


def _gg_terms(
    theta: Array, x: Array, m: Array, log_m: Array, log_x: Array, xs: Array, at_x: Array
) -> tuple[float, Array]:
    p, q, g = np.exp(theta)
    pxs = p * xs
    lg = special.gammaln
    head = lg(pxs + q) - lg(pxs)
    d_head = special.digamma(pxs + q)
    d_px = special.digamma(pxs)
    px = p * x
    log_gxm = np.log(g + x * m)
    n = len(x)
    ll = float(
        head[at_x].sum() - n * lg(q) + n * q * np.log(g) + ((px - 1) * log_m + px * log_x - (px + q) * log_gxm).sum()
    )
    g_p = (x * (d_head[at_x] - d_px[at_x] + log_m + log_x - log_gxm)).sum()
    g_q = d_head[at_x].sum() - n * special.digamma(q) + n * np.log(g) - log_gxm.sum()
    g_g = n * q / g - ((px + q) / (g + x * m)).sum()
    return ll, np.array([g_p * p, g_q * q, g_g * g])


def gamma_gamma_log_likelihood(model: GammaGamma, x: Array, m: Array) -> float:
    xs, at_x = np.unique(x, return_inverse=True)
    theta = np.log([model.p, model.q, model.gamma])
    return _gg_terms(theta, x, m, np.log(m), np.log(x), xs, at_x)[0]


def fit_gamma_gamma(x: Array, m: Array) -> Fit:
    """Fit p, q, gamma to customers' repeat purchase counts ``x`` (> 0) and average values ``m`` (> 0)."""
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    scale = 10.0 / m.mean() if len(m) and m.mean() > 0 else 1.0  # money rescaled like time: gamma only
    ms = m * scale
    xs, at_x = np.unique(x, return_inverse=True)
    log_m, log_x = np.log(ms), np.log(x)

    n = max(len(x), 1)

    def minus(theta: Array) -> tuple[float, Array]:
        ll, grad = _gg_terms(theta, x, ms, log_m, log_x, xs, at_x)
        return -ll / n, -grad / n

    mean = float(ms.mean()) if len(ms) else 1.0
    starts = [np.log([2.0, 3.0, mean]), np.log([1.0, 2.0, mean]), np.log([5.0, 5.0, mean])]
    if len(x) > WARM_START_FROM:
        sample = fit_gamma_gamma(x[:: len(x) // WARM_SAMPLE], m[:: len(x) // WARM_SAMPLE])
        if sample.converged:
            starts.insert(0, np.log([sample.params["p"], sample.params["q"], sample.params["gamma"] * scale]))
    theta, reason = _maximise(minus, starts, ("p", "q", "gamma"))
    p, q, g = np.exp(theta)
    model = GammaGamma(float(p), float(q), float(g / scale))
    ll = gamma_gamma_log_likelihood(model, x, m)
    if reason is None and model.q <= 1:
        reason = "q <= 1: the average spend has no finite mean (a few very large orders dominate)"
    return Fit(
        params={"p": model.p, "q": model.q, "gamma": model.gamma},
        log_likelihood=float(ll),
        converged=reason is None,
        reason=reason,
        customers=len(x),
    )


def expected_spend(model: GammaGamma, x: Array, m: Array) -> Array:
    """E[average spend | x, m] = (p (gamma + x m)) / (p x + q - 1): the customer's own mean
    shrunk towards the population's, p gamma / (q - 1), less so the more they bought."""
    p, q, g = model.p, model.q, model.gamma
    return p * (g + x * m) / (p * x + q - 1)


# --- the optimiser ---------------------------------------------------------------


def _maximise(
    minus: Any, starts: list[Array], names: tuple[str, ...], may_grow: frozenset[str] = frozenset()
) -> tuple[Array, str | None]:
    """Minimise ``minus`` from each start until one converges; the best result, with the reason
    it cannot be trusted (None when it can).

    A parameter that ran to the edge of the search range has no finite estimate, except the
    ones in ``may_grow``, whose growing without bound is itself a finding (see fit_bgnbd).
    """
    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(names)
    best: tuple[bool, float, Array, str | None] | None = None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for start in starts:
            candidate: tuple[bool, float, Array, str | None]
            try:
                result = optimize.minimize(
                    minus,
                    start,
                    jac=True,
                    method="L-BFGS-B",
                    bounds=bounds,
                    options={"maxiter": 1000, "gtol": FLAT / 10, "ftol": 1e-12},
                )
            except (ValueError, FloatingPointError) as exc:  # a start where the likelihood is not finite
                candidate = (False, np.inf, start, f"the optimiser failed: {exc}")
            else:
                candidate = (False, float(result.fun), result.x, _doubt(minus, result, names, may_grow))
            candidate = (candidate[3] is None, *candidate[1:])
            if best is None or (candidate[0], -candidate[1]) > (best[0], -best[1]):
                best = candidate
            if best[0]:
                break  # the usual case: the first start converges
    assert best is not None
    return best[2], best[3]


def _doubt(minus: Any, result: Any, names: tuple[str, ...], may_grow: frozenset[str]) -> str | None:
    if not np.isfinite(result.fun):
        return "the log-likelihood is not finite"
    upper = {n for n, v in zip(names, result.x, strict=True) if v > LOG_BOUND - AT_BOUND}
    lower = {n for n, v in zip(names, result.x, strict=True) if v < -LOG_BOUND + AT_BOUND}
    edge = sorted(lower | (upper - may_grow))
    if edge:
        return f"{', '.join(edge)} ran to the edge of the search range: the data do not pin it down"
    inside = [i for i, n in enumerate(names) if n not in upper]
    if np.abs(minus(result.x)[1][inside]).max() > FLAT:
        return f"the optimiser stopped before reaching a maximum ({result.message})"
    return None
