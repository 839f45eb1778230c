"""Memory and time of one `crmcli customer import`: a streaming sanity check, not a timed test.

    python benchmarks/import_memory.py               # 100,000 rows
    python benchmarks/import_memory.py 10000 100000  # several sizes: the peak should hardly move

For each N it writes an N-row customer CSV (fixed seed) into a temp folder, runs
``crmcli --db tmp.db customer import FILE`` in a child process with no user config,
and prints the wall time and the child's peak RSS (``getrusage(RUSAGE_CHILDREN)``,
kilobytes on Linux). Import streams, so the peak should stay flat as N grows.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FIRST = ["James", "Mary", "Wei", "Fatima", "Carlos", "Aiko", "Olga", "Kwame", "Priya", "Liam", "王", "Zoë"]
LAST = ["Smith", "Chen", "Okafor", "García", "Tanaka", "Ivanova", "Mensah", "Patel", "小明", "Čapek"]
CITIES = ["Riverton", "Lakeside", "Hill Valley", "北京", "Zürich"]
SOURCES = ["web", "walk-in", "referral", "fair"]
STAGES = ["lead", "verified", "prospect", "customer", "repeat", "lost"]
TAGS = ["vip", "local", "newsletter", "wholesale"]
HEADER = ["name", "email", "phone", "company", "city", "source", "stage", "tags", "ref", "referred_by", "note"]

# Runs in its own process per size, so RUSAGE_CHILDREN covers that one import only.
MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - start
print(done.returncode, seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.stderr.write(done.stderr)
"""


def write_customers(path: Path, n: int, seed: int = 7) -> None:
    """N customers: 80% with an email, 70% with a phone as typed, 5% referred by an earlier one."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(1, n + 1):
            writer.writerow(
                [
                    f"{rng.choice(FIRST)} {rng.choice(LAST)} {i}",
                    f"c{i}@example.com" if rng.random() < 0.8 else "",
                    f"+1 212 {200 + i // 10000:03d} {i % 10000:04d}" if rng.random() < 0.7 else "",
                    f"Company {i % 500}" if rng.random() < 0.3 else "",
                    rng.choice(CITIES),
                    rng.choice(SOURCES),
                    rng.choice(STAGES),
                    ";".join(rng.sample(TAGS, rng.randint(0, 2))),
                    f"R{i}",
                    f"R{rng.randint(1, i - 1)}" if i > 1 and rng.random() < 0.05 else "",
                    "likes tea, not coffee\nasks for invoices" if rng.random() < 0.1 else "",
                ]
            )


def crmcli_command() -> list[str]:
    beside = Path(sys.executable).parent / "crmcli"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("crmcli")
    return [found] if found else [sys.executable, "-m", "crmcli"]


def measure(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="crmcli-import-memory-") as tmp:
        work = Path(tmp)
        data = work / "customers.csv"
        write_customers(data, n)
        env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config"), "XDG_DATA_HOME": str(work / "data")}
        for name in ("CRMCLI_CONFIG", "CRMCLI_DB"):
            env.pop(name, None)
        command = [*crmcli_command(), "--db", str(work / "tmp.db"), "customer", "import", str(data)]
        child = subprocess.run([sys.executable, "-c", MEASURE, *command], env=env, capture_output=True, text=True)
        code, seconds, peak_kb = child.stdout.split()
        if code != "0":
            sys.exit(f"import of {n} rows failed (exit {code}):\n{child.stderr}")
        print(
            f"{n:>9,} rows  {data.stat().st_size / 1e6:6.1f} MB of CSV  {float(seconds):7.2f} s  "
            f"{n / float(seconds):8,.0f} rows/s  peak RSS {int(peak_kb) / 1024:6.1f} MB"
        )


def main(argv: list[str]) -> int:
    sizes = [int(arg.replace("_", "").replace(",", "")) for arg in argv] or [100_000]
    print(f"{' '.join(crmcli_command())} customer import; Python {sys.version.split()[0]}")
    for n in sizes:
        measure(n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
