"""Reproducible benchmark data: N customers and 5 x N purchases over three years.

    python benchmarks/generate.py --customers 1000000 --out benchmarks/data

Writes, with a fixed seed (same files on every machine):
- customers.csv        name, email, phone (mixed national formats, read with region US),
                       company, city, source, stage, tags, ref, referred_by (about 5% referred)
- customers_e164.csv   the same customers with every phone already in E.164
- purchases.csv        customer (by ref), amount, at, due, paid_at, ref: 5 x N rows over
                       2023-2025, a tenth on 30-day credit, most paid on time
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from datetime import datetime, timedelta
from pathlib import Path

FIRST = [
    "James",
    "Mary",
    "Wei",
    "Fatima",
    "Carlos",
    "Aiko",
    "Olga",
    "Kwame",
    "Priya",
    "Liam",
    "Sofia",
    "Mateo",
    "Chloe",
    "Noah",
    "Amara",
    "Yuki",
    "Ivan",
    "Leila",
    "Tom",
    "Ana",
    "Ravi",
    "Zoe",
    "Omar",
    "Mia",
    "Jin",
]
LAST = [
    "Smith",
    "Johnson",
    "Wang",
    "Khan",
    "Garcia",
    "Sato",
    "Ivanova",
    "Mensah",
    "Patel",
    "Murphy",
    "Rossi",
    "Lopez",
    "Martin",
    "Brown",
    "Okafor",
    "Tanaka",
    "Petrov",
    "Haddad",
    "Lee",
    "Silva",
    "Singh",
    "Young",
]
CITIES = ["Springfield", "Riverton", "Lakeside", "Fairview", "Greenville", "Bristol", "Madison", "Georgetown"]
SOURCES = ["walk-in", "web", "instagram", "referral", "market", "newsletter"]
STAGES = ["lead", "verified", "prospect", "customer", "repeat", "lost"]
TAGS = ["vip", "wholesale", "newsletter", "birthday-club", "local"]
START = datetime(2023, 1, 1)
SPAN_SECONDS = 3 * 365 * 86400


def phone_formats(rng: random.Random) -> tuple[str, str]:
    """(as a person typed it, E.164): a valid US number in one of several spellings."""
    area = rng.choice([212, 312, 415, 617, 646, 718, 202, 305])
    exchange = rng.randint(200, 999)
    line = rng.randint(0, 9999)
    e164 = f"+1{area}{exchange}{line:04d}"
    typed = rng.choice(
        [
            f"({area}) {exchange}-{line:04d}",
            f"{area}-{exchange}-{line:04d}",
            f"{area}.{exchange}.{line:04d}",
            f"+1 {area} {exchange} {line:04d}",
            e164,
        ]
    )
    return typed, e164


def write_customers(out: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    used_phones: set[str] = set()
    with (
        (out / "customers.csv").open("w", newline="", encoding="utf-8") as typed_file,
        (out / "customers_e164.csv").open("w", newline="", encoding="utf-8") as e164_file,
    ):
        typed, e164 = csv.writer(typed_file), csv.writer(e164_file)
        header = ["name", "email", "phone", "company", "city", "source", "stage", "tags", "ref", "referred_by"]
        typed.writerow(header)
        e164.writerow(header)
        for i in range(1, n + 1):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            email = f"{first}.{last}.{i}@example.com".lower() if rng.random() < 0.8 else ""
            phone_typed = phone_e164 = ""
            if rng.random() < 0.7:
                phone_typed, phone_e164 = phone_formats(rng)
                if phone_e164 in used_phones:
                    phone_typed = phone_e164 = ""
                else:
                    used_phones.add(phone_e164)
            referred_by = f"C{rng.randint(1, i - 1):07d}" if i > 1 and rng.random() < 0.05 else ""
            row = [
                f"{first} {last}",
                email,
                phone_typed,
                rng.choice(["", "", "", "Acme Ltd", "Blue Cafe"]),
                rng.choice(CITIES),
                rng.choice(SOURCES),
                rng.choices(STAGES, [10, 5, 8, 40, 30, 7])[0],
                ";".join(rng.sample(TAGS, rng.choice([0, 0, 1, 2]))),
                f"C{i:07d}",
                referred_by,
            ]
            typed.writerow(row)
            row[2] = phone_e164
            e164.writerow(row)


def write_purchases(out: Path, n: int, seed: int) -> None:
    rng = random.Random(seed + 1)
    with (out / "purchases.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer", "amount", "at", "due", "paid_at", "ref"])
        for i in range(1, 5 * n + 1):
            # A few customers buy much more often: the 80/20 shape of real shops.
            customer = int(n * rng.random() ** 2.5) + 1
            at = START + timedelta(seconds=int(rng.random() * SPAN_SECONDS))
            cents = int(rng.lognormvariate(3.2, 0.9) * 100) + 50
            due = paid = ""
            if rng.random() < 0.1:
                due_day = at + timedelta(days=30)
                due = due_day.date().isoformat()
                paid_day = at + timedelta(days=rng.choice([3, 10, 20, 28, 35, 60]))
                paid = paid_day.isoformat(timespec="seconds")
            writer.writerow(
                [
                    f"C{customer:07d}",
                    f"{cents // 100}.{cents % 100:02d}",
                    at.isoformat(timespec="seconds"),
                    due,
                    paid,
                    f"R{i:09d}",
                ]
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    write_customers(args.out, args.customers, args.seed)
    write_purchases(args.out, args.customers, args.seed)
    print(
        f"wrote {args.customers} customers and {5 * args.customers} purchases to {args.out} "
        f"in {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
