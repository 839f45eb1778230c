"""Who will come back: predicted value, churn risk and next purchase for every buyer.

The histories come from SQL (:mod:`crmcli.reports.histories`); the models are fitted by
:mod:`crmcli.reports.clv` over all buyers at once. With too little history, or when a fit
does not converge, the figures fall back to each customer's own inter-purchase gaps, and
say so: a model fitted to a handful of customers is not a result.

Needs the ``analytics`` extra (numpy, scipy); the modules are imported inside the
functions so that nothing else pays for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from crmcli.config import Config
from crmcli.errors import Invalid
from crmcli.models import Customer, table_of
from crmcli.reports.analytics import require_analytics
from crmcli.reports.common import share, top_count, utc_offset_seconds
from crmcli.reports.histories import gaps, histories, later_purchase_days
from crmcli.values import money

EPOCH = date(1970, 1, 1)
RISKS = ("low", "medium", "high")
UNKNOWN = "unknown"
MODEL = "BG/NBD + Gamma-Gamma"
ESTIMATE = "inter-purchase estimates"
# Segment names for 'customer list --segment' and 'coupon issue --segment', next to the RFM ones.
SEGMENTS = {
    "Low Churn Risk": "low",
    "Medium Churn Risk": "medium",
    "High Churn Risk": "high",
    "Valuable but Slipping": "valuable",
}
WEEK = 7.0


@dataclass
class Prediction:
    """Per-buyer arrays (one entry per customer id, ascending) and how they were obtained."""

    calibration_end: datetime
    horizon_days: int
    status: str  # "fitted", "not enough data" or "did not converge"
    note: str | None
    ids: Any
    x: Any  # repeat purchase days
    first_day: Any
    last_day: Any
    end_day: int
    repeat_net: Any  # minor units
    risk: list[str]
    model: Any = None  # clv.Fit
    spend_model: Any = None  # clv.Fit
    frequency_spend_correlation: float | None = None
    alive: Any = None
    purchases: Any = None  # expected over the horizon (fallback: at the customer's own pace)
    spend: Any = None  # expected average spend, major units
    value: Any = None  # predicted value, major units
    wait_days: Any = None  # until the next purchase is more likely than not (NaN: not likely)
    shortest: Any = None  # fallback: gaps in days (NaN with one purchase)
    longest: Any = None
    valuable: Any = None  # top share by predicted value and high churn risk

    @property
    def fitted(self) -> bool:
        return self.status == "fitted"

    @property
    def method(self) -> str:
        return MODEL if self.fitted else ESTIMATE


def predict(
    *,
    session: Session,
    config: Config,
    calibration_end: datetime,
    horizon_days: int | None = None,
    what: str = "report clv",
) -> Prediction:
    require_analytics(what)
    import numpy as np

    from crmcli.reports import clv

    horizon = horizon_days or config.clv.horizon_days
    offset = utc_offset_seconds(config.tz, calibration_end)
    rows = session.execute(histories(calibration_end, offset)).all()
    data = np.fromiter((v for row in rows for v in row), dtype=np.int64, count=5 * len(rows)).reshape(-1, 5)
    ids, days, first, last, repeat_net = data.T
    end_day = (calibration_end.timestamp() + offset) // 86400
    x = days - 1
    result = Prediction(
        calibration_end=calibration_end,
        horizon_days=horizon,
        status="fitted",
        note=None,
        ids=ids,
        x=x,
        first_day=first,
        last_day=last,
        end_day=int(end_day),
        repeat_net=repeat_net,
        risk=[],
    )
    repeaters = int((x > 0).sum())
    span = int(end_day - first.min()) if len(first) else 0
    rules = config.clv
    if repeaters < rules.min_repeat_customers or span < rules.min_history_days:
        result.status = "not enough data"
        result.note = (
            f"Not enough history for the model: {repeaters} customers with a repeat purchase "
            f"({rules.min_repeat_customers} needed) over {span} days ({rules.min_history_days} needed). "
            "Showing simple estimates from each customer's own gaps between purchases."
        )
        return _estimate(session, config, result, offset)

    t_x = (last - first) / WEEK
    T = (end_day - first) / WEEK
    fit = clv.fit_bgnbd(x, t_x, T)
    scale = 10.0**config.currency.minor_digits
    repeat = x > 0
    average = np.where(repeat, repeat_net / np.where(repeat, x, 1) / scale, 0.0)  # major units
    spenders = repeat & (average > 0)
    spend_fit = clv.fit_gamma_gamma(x[spenders], average[spenders])
    failed = [
        f"{name} did not converge: {f.reason}"
        for name, f in (("BG/NBD", fit), ("Gamma-Gamma", spend_fit))
        if not f.converged
    ]
    if failed:
        result.status = "did not converge"
        result.note = "; ".join(failed) + ". Showing simple estimates from each customer's own gaps between purchases."
        return _estimate(session, config, result, offset)

    model, spend_model = clv.BgNbd(**fit.params), clv.GammaGamma(**spend_fit.params)
    result.model, result.spend_model = fit, spend_fit
    result.note = fit.note
    if spenders.sum() > 2:
        result.frequency_spend_correlation = float(np.corrcoef(x[spenders], average[spenders])[0, 1])
    alive = clv.p_alive(model, x, t_x, T)
    result.alive = alive
    result.purchases = clv.expected_purchases(model, horizon / WEEK, x, t_x, T, alive)
    result.spend = clv.expected_spend(spend_model, x, average)
    result.value = result.purchases * result.spend
    result.wait_days = clv.wait_for_next_purchase(model, x, T, alive) * WEEK
    churn = 1 - alive
    high, medium = float(rules.churn_risk_high), float(rules.churn_risk_medium)
    codes = np.where(churn >= high, 2, np.where(churn >= medium, 1, 0))
    result.risk = [RISKS[c] for c in codes.tolist()]
    order = np.argsort(-result.value, kind="stable")  # ties by id: ids ascend
    top = np.zeros(len(ids), dtype=bool)
    top[order[: top_count(len(ids), float(rules.valuable_top_share))]] = True
    result.valuable = top & (codes == 2)
    return result


def _estimate(session: Session, config: Config, result: Prediction, offset: int) -> Prediction:
    """Each customer's own pace: average, shortest and longest gap between purchase days.

    Churn risk: low while the last purchase is no older than the average gap, medium up to
    twice it, high beyond; unknown with a single purchase.
    """
    import numpy as np

    found = {cid: (lo, hi) for cid, lo, hi in session.execute(gaps(result.calibration_end, offset))}
    ids, x = result.ids, result.x
    shortest = np.array([found.get(cid, (np.nan, np.nan))[0] for cid in ids.tolist()], dtype=float)
    longest = np.array([found.get(cid, (np.nan, np.nan))[1] for cid in ids.tolist()], dtype=float)
    repeat = x > 0
    average_gap = np.where(repeat, (result.last_day - result.first_day) / np.where(repeat, x, 1), np.nan)
    since = result.end_day - result.last_day
    result.shortest, result.longest = shortest, longest
    with np.errstate(divide="ignore", invalid="ignore"):
        result.purchases = np.where(repeat, result.horizon_days / average_gap, np.nan)
    scale = 10.0**config.currency.minor_digits
    result.spend = np.where(repeat, result.repeat_net / np.where(repeat, x, 1) / scale, np.nan)
    result.risk = [
        UNKNOWN if not r else "low" if s <= g else "medium" if s <= 2 * g else "high"
        for r, s, g in zip(repeat.tolist(), since.tolist(), average_gap.tolist(), strict=True)
    ]
    return result


# --- the report --------------------------------------------------------------------


def clv_report(
    *,
    session: Session,
    config: Config,
    as_of: datetime,
    calibration_end: datetime | None = None,
    horizon_days: int | None = None,
    with_customers: bool = False,
    segment: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    end = calibration_end or as_of
    if end > as_of:
        raise Invalid(
            "the calibration end is after the as-of moment: the model can only learn from what has happened",
            fields=("calibration_end", "as_of"),
        )
    found = predict(session=session, config=config, calibration_end=end, horizon_days=horizon_days)
    digits = config.currency.minor_digits
    n = len(found.ids)
    report: dict[str, Any] = {
        "as_of": as_of,
        "calibration_end": end,
        "horizon_days": found.horizon_days,
        "method": found.method,
        "status": found.status,
        "note": found.note,
        "customers": n,
        "repeat_customers": int((found.x > 0).sum()),
        "history_days": int(found.end_day - found.first_day.min()) if n else 0,
        "model": _model(found),
        "spend_model": _spend_model(found),
    }
    if found.fitted:
        report["expected_purchases"] = round(float(found.purchases.sum()), 1)
        report["predicted_value"] = _money(float(found.value.sum()), digits)
        report["valuable_but_slipping"] = int(found.valuable.sum())
        if as_of > end:
            report["holdout"] = _holdout(session, config, found, as_of)
    report["risk"] = _bands(found, digits)
    if with_customers:
        report["rows"] = customer_rows(session, config, found, segment=segment, limit=limit)
    return report


def _model(found: Prediction) -> dict[str, Any] | None:
    if not found.fitted:
        return None
    p = found.model.params
    return {
        "r": _round(p["r"]),
        "alpha": _round(p["alpha"]),
        "a": _round(p["a"]),
        "b": _round(p["b"]),
        "log_likelihood": round(found.model.log_likelihood, 2),
        "time_unit": "weeks",
    }


def _spend_model(found: Prediction) -> dict[str, Any] | None:
    if not found.fitted:
        return None
    p = found.spend_model.params
    return {
        "p": _round(p["p"]),
        "q": _round(p["q"]),
        "gamma": _round(p["gamma"]),
        "log_likelihood": round(found.spend_model.log_likelihood, 2),
        "customers": found.spend_model.customers,
        "mean_spend": _round(p["p"] * p["gamma"] / (p["q"] - 1)),
        "frequency_spend_correlation": (
            round(found.frequency_spend_correlation, 4) if found.frequency_spend_correlation is not None else None
        ),
    }


def _bands(found: Prediction, digits: int) -> list[dict[str, Any]]:
    import numpy as np

    risk = np.array(found.risk, dtype=object)
    n = len(found.ids)
    bands = [*RISKS, *([] if found.fitted else [UNKNOWN])]
    rows = []
    for band in bands:
        chosen = risk == band
        row: dict[str, Any] = {"risk": band, "customers": int(chosen.sum()), "share": share(int(chosen.sum()), n)}
        if found.fitted:
            row["expected_purchases"] = round(float(found.purchases[chosen].sum()), 1)
            row["predicted_value"] = _money(float(found.value[chosen].sum()), digits)
        rows.append(row)
    return rows


def _holdout(session: Session, config: Config, found: Prediction, as_of: datetime) -> dict[str, Any]:
    """The model's forecast for the weeks after the calibration end against what happened."""
    from crmcli.reports import clv

    offset = utc_offset_seconds(config.tz, found.calibration_end)
    as_of_day = (as_of.timestamp() + offset) // 86400
    weeks = (as_of_day - found.end_day) / WEEK
    x, first, last = found.x, found.first_day, found.last_day
    model = clv.BgNbd(**found.model.params)
    forecast = clv.expected_purchases(
        model, weeks, x, (last - first) / WEEK, (found.end_day - first) / WEEK, found.alive
    )
    actual = later_purchase_days(session, found.calibration_end, as_of, offset, found.calibration_end)
    return {"weeks": round(weeks, 2), "actual_purchases": actual, "expected_purchases": round(float(forecast.sum()), 1)}


def customer_rows(
    session: Session,
    config: Config,
    found: Prediction,
    *,
    segment: str | None = None,
    limit: int | None = None,
    only: int | None = None,
) -> list[dict[str, Any]]:
    """One row per buyer, highest predicted value first (with the fallback: by id); ``only``: one
    buyer's row, by position."""
    import numpy as np

    digits = config.currency.minor_digits
    if only is not None:
        chosen = np.array([only])
    elif segment is not None:
        chosen = np.flatnonzero(segment_mask(found, segment))
    else:
        chosen = np.arange(len(found.ids))
    if found.fitted:
        chosen = chosen[np.argsort(-found.value[chosen], kind="stable")]
    if limit:
        chosen = chosen[:limit]
    names = _names(session, found.ids[chosen].tolist())
    rows = []
    for i in chosen.tolist():
        cid = int(found.ids[i])
        ref, name = names.get(cid, (None, None))
        last = _day(int(found.last_day[i]))
        row: dict[str, Any] = {
            "id": cid,
            "ref": ref,
            "name": name,
            "purchases": int(found.x[i]) + 1,
            "last_purchase": last,
        }
        if found.fitted:
            wait = float(found.wait_days[i])
            row.update(
                p_alive=round(float(found.alive[i]), 4),
                churn_risk=round(1 - float(found.alive[i]), 4),
                risk=found.risk[i],
                expected_purchases=round(float(found.purchases[i]), 3),
                expected_spend=_money(float(found.spend[i]), digits),
                predicted_value=_money(float(found.value[i]), digits),
                # NaN (never more likely than not) compares false
                next_purchase=_day(found.end_day + round(wait)) if wait <= found.horizon_days else None,
                valuable_but_slipping=bool(found.valuable[i]),
            )
        else:
            row.update(_estimate_row(found, i, digits))
        rows.append(row)
    return rows


def _estimate_row(found: Prediction, i: int, digits: int) -> dict[str, Any]:
    if found.x[i] == 0:
        return {
            "risk": UNKNOWN,
            "average_gap_days": None,
            "shortest_gap_days": None,
            "longest_gap_days": None,
            "next_purchase": None,
            "next_purchase_earliest": None,
            "next_purchase_latest": None,
            "expected_purchases": None,
            "average_spend": None,
        }
    last = int(found.last_day[i])
    average = (last - int(found.first_day[i])) / int(found.x[i])
    shortest, longest = int(found.shortest[i]), int(found.longest[i])
    return {
        "risk": found.risk[i],
        "average_gap_days": round(average, 1),
        "shortest_gap_days": shortest,
        "longest_gap_days": longest,
        "next_purchase": _day(last + round(average)),
        "next_purchase_earliest": _day(last + shortest),
        "next_purchase_latest": _day(last + longest),
        "expected_purchases": round(float(found.purchases[i]), 1),
        "average_spend": _money(float(found.spend[i]), digits),
    }


# --- segments -----------------------------------------------------------------------


def find_clv_segment(name: str) -> str | None:
    wanted = "".join(ch for ch in name.lower() if ch.isalnum())
    for segment in SEGMENTS:
        if "".join(ch for ch in segment.lower() if ch.isalnum()) == wanted:
            return segment
    return None


def segment_mask(found: Prediction, segment: str) -> Any:
    import numpy as np

    name = find_clv_segment(segment)
    if name is None:
        raise Invalid(f"unknown segment {segment!r}: use one of {', '.join(SEGMENTS)}")
    band = SEGMENTS[name]
    if band == "valuable":
        if not found.fitted:
            raise Invalid(f"'{name}' needs predicted values, and the model has none: {found.note}")
        return found.valuable
    return np.array(found.risk, dtype=object) == band


def customers_in_clv_segment(*, session: Session, config: Config, segment: str, as_of: datetime) -> list[int]:
    """Ids of the live (not erased) customers in a churn band or 'Valuable but Slipping'."""
    found = predict(session=session, config=config, calibration_end=as_of, what=f"the segment {segment!r}")
    chosen = found.ids[segment_mask(found, segment)].tolist()
    c = table_of(Customer)
    erased = set(session.execute(select(c.c.id).where(c.c.erased_at.is_not(None))).scalars())
    return [cid for cid in chosen if cid not in erased]


# --- small helpers ------------------------------------------------------------------


def _names(session: Session, ids: list[int]) -> dict[int, tuple[str | None, str | None]]:
    c = table_of(Customer)
    names: dict[int, tuple[str | None, str | None]] = {}
    for start in range(0, len(ids), 10_000):
        chunk = ids[start : start + 10_000]
        for cid, ref, name in session.execute(select(c.c.id, c.c.ref, c.c.name).where(c.c.id.in_(chunk))):
            names[cid] = (ref, name)
    return names


def _day(number: int) -> date:
    return EPOCH + timedelta(days=number)


def _money(major: float, digits: int) -> Decimal | None:
    if major != major:  # NaN
        return None
    return money(round(major * 10**digits), digits)


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def customer_prediction(
    *, session: Session, config: Config, customer_id: int | None, as_of: datetime | None = None
) -> dict[str, Any]:
    """One customer's figures for 'customer show --predicted'. The model is fitted over every
    buyer (that is what it learns from), so this costs what 'report clv' costs."""
    from crmcli.errors import MissingExtra
    from crmcli.values import utcnow

    try:
        found = predict(session=session, config=config, calibration_end=as_of or utcnow(), what="the prediction")
    except MissingExtra as exc:
        return {"status": "unavailable", "note": f"{exc}: pip install 'crmcli[analytics]'"}
    import numpy as np

    at = int(np.searchsorted(found.ids, customer_id or 0))
    if at >= len(found.ids) or found.ids[at] != customer_id:
        return {"status": "no purchases", "note": "no purchase yet: nothing to predict from"}
    row = customer_rows(session, config, found, only=at)[0]
    for key in ("id", "ref", "name"):
        row.pop(key)
    return {
        "method": found.method,
        "status": found.status,
        "note": found.note,
        "horizon_days": found.horizon_days,
        **row,
    }
