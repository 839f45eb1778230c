"""One printable, self-contained HTML page of the reports: to show the month to a partner.

The page is built from the reports' own rows (dashboard, Pareto, RFM, value, cohorts,
payment, satisfaction, SLA), never by running the CLI. Everything is inline (CSS and
SVG charts): opening the page makes no network request, and it prints on A4.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session

from crmcli.config import Config

ACCENT = "#2b59c3"
SEGMENT_COLOURS = {
    "Champions": "#1b7f3b",
    "Loyal": "#37a055",
    "Potential Loyalists": "#7cc47f",
    "New Customers": "#9ecae1",
    "Promising": "#c6dbef",
    "Need Attention": "#fdd49e",
    "About to Sleep": "#fdbb84",
    "Can't Lose Them": "#d7301f",
    "At Risk": "#ef6548",
    "Hibernating": "#bdbdbd",
}


@dataclass
class ReportSet:
    """The reports one page shows, as the report functions return them."""

    as_of: datetime
    currency: str
    tz: ZoneInfo
    dashboard: dict[str, Any]
    pareto: dict[str, Any]
    curve: list[dict[str, Any]]
    segments: list[dict[str, Any]]
    value: dict[str, Any]
    cohorts: list[dict[str, Any]]
    payment: dict[str, Any]
    satisfaction: dict[str, Any]
    sla: dict[str, Any]


def collect(*, session: Session, config: Config, as_of: datetime) -> ReportSet:
    """Run every report the page shows, at one moment."""
    from crmcli.reports.cohorts import cohorts, triangle
    from crmcli.reports.dashboard import dashboard
    from crmcli.reports.pareto import pareto, pareto_curve
    from crmcli.reports.payment import payment_report
    from crmcli.reports.rfm import rfm_segments
    from crmcli.reports.satisfaction import satisfaction, sla
    from crmcli.reports.value import value_report

    kw: dict[str, Any] = {"session": session, "config": config, "as_of": as_of}
    return ReportSet(
        as_of=as_of,
        currency=config.currency.code,
        tz=config.tz,
        dashboard=dashboard(**kw),
        pareto=pareto(**kw),
        curve=pareto_curve(**kw),
        segments=rfm_segments(**kw),
        value=value_report(**kw, with_customers=False, limit=None, predicted=False),
        cohorts=triangle(cohorts(**kw, period="month"), "customers"),
        payment=payment_report(**kw),
        satisfaction=satisfaction(**kw),
        sla=sla(**kw),
    )


# --- the page -------------------------------------------------------------------

CSS = """
@page { size: A4; margin: 12mm; }
* { box-sizing: border-box; }
body { font: 10pt/1.4 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; margin: 0 auto;
       max-width: 186mm; padding: 8mm 0; }
h1 { font-size: 18pt; margin: 0 0 2mm; }
h2 { font-size: 13pt; margin: 0 0 2mm; color: #2b59c3; border-bottom: 1px solid #ccd; }
p.meta { color: #666; margin: 0 0 5mm; }
section { break-inside: avoid; page-break-inside: avoid; margin: 0 0 7mm; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 3mm; }
.card { border: 1px solid #dde; border-radius: 2mm; padding: 2mm 3mm; }
.card b { display: block; font-size: 14pt; }
.card span { color: #666; font-size: 8.5pt; }
table { border-collapse: collapse; width: 100%; font-size: 9pt; }
th, td { padding: 1mm 2mm; text-align: left; border-bottom: 1px solid #eee; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 5mm; align-items: start; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 9px Helvetica, Arial, sans-serif; fill: #222; }
.note { color: #666; font-size: 8.5pt; }
@media print { body { padding: 0; } a { color: inherit; } }
"""


def render_page(data: ReportSet) -> str:
    """The whole page as one string of HTML."""
    shown = data.as_of.astimezone(data.tz).strftime("%Y-%m-%d %H:%M")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Your shop at a glance, {escape(shown)}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Your shop at a glance</h1>",
        f'<p class="meta">As of {escape(shown)} ({escape(str(data.tz))}); amounts in {escape(data.currency)}.</p>',
        _dashboard(data),
        _pareto(data),
        _segments(data),
        _value(data),
        _cohorts(data),
        _payment(data),
        _satisfaction(data),
        _sla(data),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _money(value: Any, currency: str) -> str:
    return f"{value} {currency}" if value is not None else "-"


def _percent(value: Any) -> str:
    return "-" if value is None else f"{float(value) * 100:.1f}%"


def _section(title: str, *body: str, section_id: str) -> str:
    return f'<section id="{section_id}"><h2>{escape(title)}</h2>{"".join(body)}</section>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f'<th class="{"n" if i in numeric else ""}">{escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"n" if i in numeric else ""}">{escape(str(c))}</td>' for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bars(items: Sequence[tuple[str, float, str]], *, label: str, width: int = 320) -> str:
    """A horizontal bar chart: (name, value, shown value) per bar."""
    peak = max((v for _, v, _ in items), default=0) or 1
    row, left, room = 18, 110, width - 110 - 60
    bars = []
    for i, (name, value, text) in enumerate(items):
        y = i * row
        length = max(0.0, value / peak * room)
        bars.append(
            f'<text x="{left - 4}" y="{y + 12}" text-anchor="end">{escape(name)}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{length:.1f}" height="{row - 6}" fill="{ACCENT}"/>'
            f'<text x="{left + length + 4:.1f}" y="{y + 12}">{escape(text)}</text>'
        )
    height = max(row, row * len(items))
    return (
        f'<svg class="chart" role="img" aria-label="{escape(label)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}">{"".join(bars)}</svg>'
    )


def _dashboard(data: ReportSet) -> str:
    d = data.dashboard
    cards = [
        ("Customers", str(d["customers"])),
        ("Buyers", str(d["buyers"])),
        ("Orders", str(d["orders"])),
        ("Revenue", _money(d["revenue"], data.currency)),
        ("Top 20% share of revenue", _percent(d["top_20_percent_share"])),
        ("Referred customers", str(d["referred_customers"])),
        ("Revenue by referral", _percent(d["referral_revenue_share"])),
        ("Loyal ratings (5s)", _percent(d["loyal_ratings_share"])),
        ("Open complaints", str(d["open_complaints"])),
        ("Overdue complaints", str(d["overdue_complaints"])),
        ("Follow-ups due", str(d["followups_due"])),
    ]
    grid = '<div class="cards">' + "".join(
        f"<div class=card><b>{escape(v)}</b><span>{escape(k)}</span></div>" for k, v in cards
    )
    stages = _bars([(s["stage"], s["customers"], str(s["customers"])) for s in d["stages"]], label="customers by stage")
    return _section("Dashboard", grid + "</div>", "<h3>Customers by stage</h3>", stages, section_id="dashboard")


def _pareto(data: ReportSet) -> str:
    p, curve = data.pareto, data.curve
    size, pad = 240, 30
    inner = size - 2 * pad

    def xy(cs: float, rs: float) -> str:
        return f"{pad + cs * inner:.1f},{size - pad - rs * inner:.1f}"

    line = " ".join(xy(pt["customer_share"], pt["revenue_share"]) for pt in curve)
    svg = (
        f'<svg class="chart" role="img" aria-label="Pareto curve" viewBox="0 0 {size} {size}" '
        f'width="{size}" height="{size}">'
        f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="none" stroke="#ccc"/>'
        f'<line x1="{pad}" y1="{size - pad}" x2="{size - pad}" y2="{pad}" stroke="#bbb" stroke-dasharray="3 3"/>'
        f'<line x1="{pad + 0.2 * inner:.1f}" y1="{pad}" x2="{pad + 0.2 * inner:.1f}" y2="{size - pad}" '
        'stroke="#e08" stroke-dasharray="2 2"/>'
        f'<line x1="{pad}" y1="{size - pad - 0.8 * inner:.1f}" x2="{size - pad}" y2="{size - pad - 0.8 * inner:.1f}" '
        'stroke="#e08" stroke-dasharray="2 2"/>'
        f'<polyline points="{line}" fill="none" stroke="{ACCENT}" stroke-width="2.5"/>'
        f'<text x="{size / 2}" y="{size - 8}" text-anchor="middle">share of buyers, best first</text>'
        f'<text x="10" y="{size / 2}" transform="rotate(-90 10 {size / 2})" '
        'text-anchor="middle">share of revenue</text>'
        "</svg>"
    )
    facts = _table(
        ["", ""],
        [
            ("Buyers", p["customers"]),
            ("Revenue", _money(p["revenue"], data.currency)),
            ("Top 20% of buyers", p["top_customers"]),
            ("Their share of revenue", _percent(p["top_share"])),
            ("Buyers making 80% of revenue", p["customers_for_80_percent"]),
            ("Referrals from the top 20%", p["referrals_from_top"]),
            ("Referrals from the other buyers", p["referrals_from_rest"]),
        ],
        numeric=(1,),
    )
    return _section(
        "Pareto: who brings the revenue", f'<div class="two">{svg}<div>{facts}</div></div>', section_id="pareto"
    )


def _scores(text: str) -> tuple[int, int]:
    low, _, high = str(text).partition("-")
    return int(low), int(high or low)


def _segments(data: ReportSet) -> str:
    cell, pad = 52, 28
    size = pad + 5 * cell + 4
    shapes = []
    for s in data.segments:
        r0, r1 = _scores(s["r"])
        f0, f1 = _scores(s["f"])
        x = pad + (r0 - 1) * cell
        y = 4 + (5 - f1) * cell
        w, h = (r1 - r0 + 1) * cell, (f1 - f0 + 1) * cell
        colour = SEGMENT_COLOURS.get(s["segment"], "#ddd")
        # a name on one line where the cell is wide, a word a line where it is one cell wide
        words = [s["segment"]] if w > cell else s["segment"].split()
        top = y + h / 2 - 6 * len(words)
        name = "".join(
            f'<text x="{x + w / 2}" y="{top + 11 * i + 8}" text-anchor="middle">{escape(word)}</text>'
            for i, word in enumerate(words)
        )
        shapes.append(
            f'<g class="segment"><rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{colour}" stroke="#fff" '
            f'stroke-width="2"/>{name}<text x="{x + w / 2}" y="{top + 11 * len(words) + 10}" text-anchor="middle" '
            f'style="font-weight:bold">{s["customers"]}</text></g>'
        )
    axes = "".join(
        f'<text x="{pad + (i - 0.5) * cell}" y="{size + 10}" text-anchor="middle">R{i}</text>'
        f'<text x="{pad - 4}" y="{4 + (5 - i + 0.5) * cell}" text-anchor="end">F{i}</text>'
        for i in range(1, 6)
    )
    svg = (
        f'<svg class="chart" role="img" aria-label="RFM segments" viewBox="0 0 {size} {size + 14}" '
        f'width="{size}" height="{size + 14}">{"".join(shapes)}{axes}</svg>'
    )
    table = _table(
        ["segment", "customers", "share", "revenue"],
        [
            (s["segment"], s["customers"], _percent(s["customer_share"]), _money(s["revenue"], data.currency))
            for s in data.segments
        ],
        numeric=(1, 2, 3),
    )
    note = '<p class="note">R: recency score (5 = bought most recently); F: frequency score (5 = most orders).</p>'
    return _section("RFM segments", f'<div class="two">{svg}<div>{table}{note}</div></div>', section_id="rfm")


def _quadrant(cells: dict[tuple[int, int], tuple[str, str]], *, label: str, x_axis: str, y_axis: str) -> str:
    """A 2x2 grid: ``cells[(column, row)] = (title, detail)``, row 0 on top."""
    cell, pad = 130, 24
    parts = []
    for (col, row), (title, detail) in cells.items():
        x, y = pad + col * cell, row * cell
        fill = "#e3ebfa" if (col, row) == (1, 0) else "#f3f3f3"
        parts.append(
            f'<rect x="{x}" y="{y}" width="{cell - 4}" height="{cell - 4}" fill="{fill}" rx="6"/>'
            f'<text x="{x + 8}" y="{y + 20}" style="font-weight:bold">{escape(title)}</text>'
            + "".join(
                f'<text x="{x + 8}" y="{y + 38 + 14 * i}">{escape(line)}</text>'
                for i, line in enumerate(detail.split("\n"))
            )
        )
    width, height = pad + 2 * cell, 2 * cell + 16
    parts.append(f'<text x="{pad + cell}" y="{height - 2}" text-anchor="middle">{escape(x_axis)}</text>')
    parts.append(
        f'<text x="12" y="{cell}" transform="rotate(-90 12 {cell})" text-anchor="middle">{escape(y_axis)}</text>'
    )
    return (
        f'<svg class="chart" role="img" aria-label="{escape(label)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}">{"".join(parts)}</svg>'
    )


def _value(data: ReportSet) -> str:
    groups = {g["group"]: g for g in data.value["groups"]}
    where = {"advocates": (0, 0), "champions": (1, 0), "misers": (0, 1), "affluents": (1, 1)}
    cells = {}
    for name, spot in where.items():
        g = groups.get(name)
        if g is None:
            continue
        cells[spot] = (
            name,
            f"{g['customers']} customers ({_percent(g['customer_share'])})\n"
            f"lifetime {_money(g['lifetime_value'], data.currency)}\n"
            f"referral {_money(g['referral_value'], data.currency)}",
        )
    svg = _quadrant(
        cells, label="value quadrant", x_axis="lifetime value: low | high", y_axis="referral value: low | high"
    )
    v = data.value
    note = (
        f'<p class="note">Split at the medians: lifetime value {_money(v["median_lifetime_value"], data.currency)}, '
        f"referral value {_money(v['median_referral_value'], data.currency)}.</p>"
    )
    return _section("Lifetime value and referral value", svg, note, section_id="value")


def _shade(share: float) -> str:
    f = max(0.0, min(1.0, share))
    red, green = round(255 - 205 * f), round(255 - 155 * f)
    text = "#fff" if f > 0.6 else "#222"
    return f"background: rgb({red},{green},255); color: {text}"


def _cohorts(data: ReportSet) -> str:
    rows = data.cohorts
    if not rows:
        return _section("Cohorts", "<p>No customers with purchases yet.</p>", section_id="cohorts")
    periods = [k for k in rows[0] if k.startswith("+")]
    shown = periods[:13]  # a year of later months fits the page
    head = "<tr><th>cohort</th><th class=n>customers</th>" + "".join(f"<th class=n>{p}</th>" for p in shown) + "</tr>"
    body = []
    for row in rows:
        cells = []
        for p in shown:
            value = row.get(p)
            cells.append(
                "<td></td>"
                if value is None
                else f'<td class=n style="{_shade(float(value))}">{float(value) * 100:.0f}%</td>'
            )
        body.append(f"<tr><td>{escape(row['cohort'])}</td><td class=n>{row['customers']}</td>{''.join(cells)}</tr>")
    table = f'<table class="cohorts"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
    note = '<p class="note">Share of each month\'s new buyers still buying 1, 2, 3… months later.</p>'
    return _section("Cohorts: who keeps buying", table, note, section_id="cohorts")


def _payment(data: ReportSet) -> str:
    where = {("big", "good"): (1, 0), ("big", "poor"): (1, 1), ("small", "good"): (0, 0), ("small", "poor"): (0, 1)}
    cells = {}
    for c in data.payment["cells"]:
        spot = where.get((c["size"], c["payer"]))
        if spot is not None:
            cells[spot] = (
                f"{c['size']}, {c['payer']} payer",
                f"{c['customers']} customers ({_percent(c['customer_share'])})\n"
                f"{_money(c['revenue'], data.currency)}\n{c['policy']}",
            )
    svg = _quadrant(cells, label="payment grid", x_axis="customer size: small | big", y_axis="payer: poor | good")
    return _section("Payment behaviour", svg, section_id="payment")


def _satisfaction(data: ReportSet) -> str:
    s = data.satisfaction
    bars = _bars(
        [
            (f"{d['rating']} ({d['meaning']})", d["count"], f"{d['count']} · {_percent(d['share'])}")
            for d in s["distribution"]
        ],
        label="ratings",
    )
    facts = _table(
        ["", ""],
        [
            ("Ratings", s["ratings"]),
            ("Average", s["average"] if s["average"] is not None else "-"),
            ("Loyal (5)", _percent(s["loyal_share"])),
            ("May leave (3-4)", _percent(s["at_risk_share"])),
            ("Unhappy (1-2)", _percent(s["unhappy_share"])),
        ],
        numeric=(1,),
    )
    return _section("Satisfaction", f'<div class="two">{bars}<div>{facts}</div></div>', section_id="satisfaction")


def _sla(data: ReportSet) -> str:
    s = data.sla
    facts = _table(
        ["", ""],
        [
            ("Complaints", s["complaints"]),
            ("First response target (minutes)", s["first_response_minutes_target"]),
            ("Responded in time", _percent(s["responded_in_time_share"])),
            ("Median first response (minutes)", _number(s["median_first_response_minutes"])),
            ("Resolution target (hours)", s["resolution_hours_target"]),
            ("Resolved in time", _percent(s["resolved_in_time_share"])),
            ("Median resolution (minutes)", _number(s["median_resolution_minutes"])),
            ("Open", s["open"]),
        ],
        numeric=(1,),
    )
    overdue = s["overdue"]
    listing = (
        _table(
            ["complaint", "customer", "since", "waiting for", "summary"],
            [
                (
                    o["id"],
                    o["customer"] or "",
                    o["at"].astimezone(data.tz).strftime("%Y-%m-%d"),
                    o["waiting"],
                    o["summary"] or "",
                )
                for o in overdue
            ],
            numeric=(0,),
        )
        if overdue
        else "<p>No complaint is past its deadline.</p>"
    )
    return _section("Complaints against the SLA", facts, "<h3>Overdue</h3>", listing, section_id="sla")


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | Decimal):
        return f"{float(value):g}"
    return str(value)
