"""Validate crmcli's reports on real data: the CDNOW transactions (1997-1998).

The data ship inside the ``lifetimes`` package on PyPI as
``lifetimes/datasets/CDNOW_master.txt`` (customer id, date YYYYMMDD, number of CDs,
dollar value). This script loads them through crmcli's own import commands
(customers by ``ref``), runs ``report pareto``, ``report rfm``, ``report value`` and
``report cohorts`` (by month and by quarter), and checks every figure against an
independent computation in plain Python written from the definitions in
docs/reports.md (exact fractions, no SQL).

    python benchmarks/cdnow.py            # prints the figures; exit 1 on any mismatch

All 69,659 rows import as they are, all or nothing: the 80 with a dollar value of
0 are free orders, which count as purchases (frequency, recency, buyers) and add
nothing to revenue, in crmcli and in the independent computation alike.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

# The segment map, copied from docs/reports.md on purpose: the check must not import the code it checks.
SEGMENTS = (
    ("Champions", (5,), (4, 5)),
    ("Loyal", (3, 4), (4, 5)),
    ("Potential Loyalists", (4, 5), (2, 3)),
    ("New Customers", (5,), (1,)),
    ("Promising", (4,), (1,)),
    ("Need Attention", (3,), (3,)),
    ("About to Sleep", (3,), (1, 2)),
    ("Can't Lose Them", (1, 2), (5,)),
    ("At Risk", (1, 2), (3, 4)),
    ("Hibernating", (1, 2), (1, 2)),
)
AS_OF = "1998-06-30"


def cdnow_text(cache: Path) -> str:
    """CDNOW_master.txt from an installed lifetimes, or from its wheel fetched with pip."""
    try:
        import lifetimes  # type: ignore[import-not-found]

        return (Path(lifetimes.__file__).parent / "datasets" / "CDNOW_master.txt").read_text()
    except ImportError:
        pass
    wheels = sorted(cache.glob("[Ll]ifetimes-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache),
                        "lifetimes==0.11.3"], check=True)
        wheels = sorted(cache.glob("[Ll]ifetimes-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        return wheel.read("lifetimes/datasets/CDNOW_master.txt").decode()


def parse(text: str) -> list[tuple[str, str, int]]:
    """(customer ref, ISO date, cents) for each transaction."""
    rows = []
    for line in text.splitlines()[1:]:
        ref, day, _cds, dollars = line.split()
        rows.append((ref, f"{day[:4]}-{day[4:6]}-{day[6:]}", round(Fraction(dollars) * 100)))
    return rows


def crmcli(db: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "crmcli", "--db", str(db), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"crmcli {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


# --- the independent computation --------------------------------------------------


def score(values: dict[str, object]) -> dict[str, int]:
    """min(5, 1 + floor(5 x PERCENT_RANK)) with ties ranked equally, in exact fractions."""
    ordered = sorted(values.values())  # type: ignore[type-var]
    n = len(ordered)
    first_index: dict[object, int] = {}
    for i, v in enumerate(ordered):
        first_index.setdefault(v, i)
    scores = {}
    for key, v in values.items():
        pr = Fraction(first_index[v], n - 1) if n > 1 else Fraction(0)
        scores[key] = min(5, 1 + int(5 * pr))
    return scores


def expected(rows: list[tuple[str, str, int]]) -> dict[str, object]:
    spend: dict[str, int] = defaultdict(int)
    orders: dict[str, int] = defaultdict(int)
    last: dict[str, str] = {}
    for ref, day, cents in rows:
        # A free order (0.00) is a purchase: it counts for frequency, recency and buyers.
        spend[ref] += cents
        orders[ref] += 1
        last[ref] = max(last.get(ref, day), day)
    # Same-day purchases tie on recency: crmcli stores each at the start of its day.
    r, f, m = score(last), score(orders), score(spend)  # type: ignore[arg-type]
    segment = {ref: next(n for n, rs, fs in SEGMENTS if r[ref] in rs and f[ref] in fs) for ref in spend}
    ranked = sorted(spend, key=lambda ref: (-spend[ref], int(ref)))
    total = sum(spend.values())
    top = -(-len(ranked) // 5)  # ceil(0.2 N)
    running, for_80 = 0, 0
    for i, ref in enumerate(ranked, start=1):
        running += spend[ref]
        if running * 10 >= total * 8:
            for_80 = i
            break
    values = sorted(spend.values())
    middle = values[(len(values) - 1) // 2] + values[len(values) // 2]  # twice the median
    sizes: dict[str, int] = defaultdict(int)
    for ref in spend:
        sizes[segment[ref]] += 1
    return {
        "customers": len(spend),
        "revenue_cents": total,
        "top_customers": top,
        "top_share": round(sum(spend[ref] for ref in ranked[:top]) / total, 4),
        "customers_for_80_percent": for_80,
        "rfm": {ref: (r[ref], f[ref], m[ref], segment[ref]) for ref in spend},
        "segments": dict(sizes),
        "affluents": sum(1 for ref in spend if 2 * spend[ref] > middle),
    }


def expected_cohorts(rows: list[tuple[str, str, int]], months_per_period: int) -> dict[str, list[tuple[int, int]]]:
    """Cohort label -> [(customers buying, cents)] for each period since the first purchase, up to AS_OF."""
    periods: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))  # ref -> period -> cents
    for ref, day, cents in rows:  # a free order (0.00) is a purchase too
        periods[ref][(int(day[:4]) * 12 + int(day[5:7]) - 1) // months_per_period] += cents
    last = (int(AS_OF[:4]) * 12 + int(AS_OF[5:7]) - 1) // months_per_period
    cells: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for bought in periods.values():
        first = min(bought)
        for period, cents in bought.items():
            cells[first][period - first][0] += 1
            cells[first][period - first][1] += cents

    def label(index: int) -> str:
        if months_per_period == 1:
            return f"{index // 12}-{index % 12 + 1:02d}"
        return f"{index // 4}-Q{index % 4 + 1}"

    return {
        label(first): [tuple(cells[first][k]) if k in cells[first] else (0, 0) for k in range(last - first + 1)]
        for first in sorted(cells)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "crmcli-cdnow")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = parse(cdnow_text(args.cache))
    want = expected(rows)
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = work / "cdnow.db"
        customers = work / "customers.csv"
        purchases = work / "purchases.csv"
        with customers.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["ref", "name", "source"])
            for ref in sorted({ref for ref, _, _ in rows}):
                writer.writerow([ref, f"CDNOW customer {ref}", "cdnow"])
        with purchases.open("w", newline="") as out:
            writer = csv.writer(out)
            # CDNOW's ids are numbers, which are also crmcli ids: name them as refs, unambiguously.
            writer.writerow(["customer_ref", "amount", "at"])
            for ref, day, cents in rows:
                writer.writerow([ref, f"{cents // 100}.{cents % 100:02d}", day])
        started = time.perf_counter()
        crmcli(db, "customer", "import", str(customers), "-f", "json")
        loaded = json.loads(crmcli(db, "purchase", "import", str(purchases), "-f", "json"))
        load_seconds = time.perf_counter() - started
        if (loaded["inserted"], loaded["rejected"]) != (len(rows), 0):
            problems.append(f"imported {loaded['inserted']} of {len(rows)} rows, rejected {loaded['rejected']}")
        pareto = json.loads(crmcli(db, "report", "pareto", "--as-of", AS_OF, "-f", "json"))
        rfm = json.loads(crmcli(db, "report", "rfm", "--customers", "--as-of", AS_OF, "-f", "json"))
        segments = json.loads(crmcli(db, "report", "rfm", "--as-of", AS_OF, "-f", "json"))
        value = json.loads(crmcli(db, "report", "value", "--as-of", AS_OF, "-f", "json"))
        cohorts = {
            (period, months): json.loads(
                crmcli(db, "report", "cohorts", "--period", period, "--as-of", AS_OF, "-f", "json")
            )
            for period, months in (("month", 1), ("quarter", 3))
        }

    for key in ("customers", "top_customers", "top_share", "customers_for_80_percent"):
        if pareto[key] != want[key]:
            problems.append(f"pareto {key}: crmcli {pareto[key]}, independent {want[key]}")
    revenue_cents = int(pareto["revenue"].replace(".", ""))
    if revenue_cents != want["revenue_cents"]:
        problems.append(f"revenue: crmcli {pareto['revenue']}, independent {want['revenue_cents']} cents")
    got_rfm = {row["ref"]: (row["r"], row["f"], row["m"], row["segment"]) for row in rfm}
    differing = [ref for ref in want["rfm"] if got_rfm.get(ref) != want["rfm"][ref]]  # type: ignore[attr-defined]
    if differing or len(got_rfm) != len(want["rfm"]):  # type: ignore[arg-type]
        problems.append(f"rfm differs for {len(differing)} customers, e.g. {differing[:5]}")
    got_sizes = {s["segment"]: s["customers"] for s in segments if s["customers"]}
    if got_sizes != want["segments"]:
        problems.append(f"segment sizes: crmcli {got_sizes}, independent {want['segments']}")
    if value["affluents"] + value["champions"] != want["affluents"]:
        problems.append("customers above the median lifetime value differ")

    for (period, months), report in cohorts.items():
        got = {
            c["cohort"]: [(p["customers"], int(p["revenue"].replace(".", ""))) for p in c["periods"]]
            for c in report["cohorts"]
        }
        if got != expected_cohorts(rows, months):
            problems.append(f"cohorts by {period} differ from the independent computation")

    print(f"CDNOW: {len(rows)} transactions, {len({r for r, _, _ in rows})} customers; "
          f"loaded through crmcli import in {load_seconds:.1f} s")
    print(f"buyers {pareto['customers']}, revenue {pareto['revenue']}, top 20% = {pareto['top_customers']} customers "
          f"with {pareto['top_share']:.1%} of revenue; {pareto['customers_for_80_percent']} customers make 80%")
    print("RFM segments: " + ", ".join(f"{s['segment']} {s['customers']}" for s in segments))
    print(f"value groups: champions {value['champions']}, affluents {value['affluents']}, "
          f"advocates {value['advocates']}, misers {value['misers']}")
    monthly = cohorts[("month", 1)]["cohorts"]
    print("monthly cohorts (share still buying 1, 2, 3 months on): " + ", ".join(
        f"{c['cohort']} {c['customers']} customers "
        + "/".join(f"{p['share']:.1%}" for p in c["periods"][1:4]) for c in monthly))
    for problem in problems:
        print("MISMATCH:", problem)
    print("all figures match the independent computation" if not problems else f"{len(problems)} mismatch(es)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
