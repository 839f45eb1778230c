"""crmcli against the limit (plain sqlite3) and a peer (sqlite-utils), side by side, in one run.

    python benchmarks/generate.py --customers 1000000      # once: the data (fixed seed)
    python benchmarks/run.py                               # N = 1,000,000; --quick for 20,000

Every task runs as a separate process, timed from start to exit (start-up included),
with its own peak RSS from wait4(). Each figure is reported as the ratio
crmcli / baseline measured in the same run, since the machine is shared and noisy.
Results go to stdout as a table and to benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable


@dataclass
class Measure:
    seconds: float
    peak_mb: float
    cpu_seconds: float | None = None  # user + system CPU of the process: what a busy machine does not inflate
    tree_pss_mb: float | None = None  # peak of the process and its children together (see TreeMemory)


@dataclass
class Row:
    task: str
    rows: int
    crmcli: Measure
    baseline: str
    base: Measure
    target: float | None

    @property
    def ratio(self) -> float:
        return self.crmcli.seconds / self.base.seconds if self.base.seconds else float("inf")

    @property
    def cpu_ratio(self) -> float | None:
        if not self.crmcli.cpu_seconds or not self.base.cpu_seconds:
            return None
        return self.crmcli.cpu_seconds / self.base.cpu_seconds


def run(command: list[str], *, env: dict[str, str] | None = None, stdout: int | None = subprocess.DEVNULL) -> Measure:
    """Wall time, CPU time and peak RSS of one process (and only that one)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"failed: {' '.join(command)}\n{err[-2000:]}")
    return Measure(round(seconds, 3), round(usage.ru_maxrss / 1024, 1), round(usage.ru_utime + usage.ru_stime, 3))


def median_of(runs: list[Measure]) -> Measure:
    return Measure(
        round(statistics.median(r.seconds for r in runs), 3),
        max(r.peak_mb for r in runs),
        round(statistics.median(r.cpu_seconds or 0.0 for r in runs), 3),
    )


class TreeMemory(threading.Thread):
    """The peak memory of a process and its children together (an import and its reading
    process), sampled twice a second as their proportional set size: a page two processes
    share counts half to each, so the libraries a forked child shares are not counted twice
    as summed RSS would. Linux only (``/proc``); elsewhere it stays 0."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            self.peak_kb = max(self.peak_kb, _tree_pss_kb(self.pid))

    def stop(self) -> float:
        self.done.set()
        self.join()
        return round(self.peak_kb / 1024, 1)


def _tree_pss_kb(pid: int) -> int:
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        children = []
    total = 0
    for each in (pid, *children):
        try:
            rollup = Path(f"/proc/{each}/smaps_rollup").read_text()
        except OSError:
            continue  # ended between the two reads
        total += sum(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    return total


def run_with_till(command: list[str], till: list[str], *, after: float = 3.0) -> tuple[Measure, dict[str, object]]:
    """``command`` (an import) timed as :func:`run`, while a till's ``purchase add`` runs from another
    process ``after`` seconds in: did it complete, how long did it take, was the import still running."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    memory = TreeMemory(proc.pid)
    memory.start()
    time.sleep(after)
    sale_started = time.perf_counter()
    sale = subprocess.run(till, capture_output=True, text=True)
    sale_seconds = time.perf_counter() - sale_started
    during = proc.poll() is None
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    tree_pss = memory.stop()
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"failed: {' '.join(command)}\n{err[-2000:]}")
    outcome = {
        "sale completed": sale.returncode == 0,
        "sale seconds": round(sale_seconds, 2),
        "sale finished while the import ran": during,
        "sale error": sale.stderr.strip()[-300:] if sale.returncode else "",
    }
    return Measure(round(seconds, 3), round(usage.ru_maxrss / 1024, 1), tree_pss_mb=tree_pss), outcome


def best_of(times: int, command: list[str], **kw: object) -> Measure:
    return median_of([run(command, **kw) for _ in range(times)])  # type: ignore[arg-type]


def side_by_side(times: int, command: list[str], base: list[str]) -> tuple[Measure, Measure]:
    """The median of ``times`` runs of each, taken in turn, so that a change in the machine's
    load between them weighs on both alike."""
    ours: list[Measure] = []
    theirs: list[Measure] = []
    for _ in range(times):
        ours.append(run(command))
        theirs.append(run(base))
    return median_of(ours), median_of(theirs)


def compile_crmcli() -> None:
    """Write crmcli's bytecode, as installing the package does (pip compiles every module), so
    start-up is timed as a user runs it, not with crmcli compiled from source in every process
    (a checkout run with PYTHONDONTWRITEBYTECODE); the libraries it is compared with have theirs."""
    import compileall

    spec = subprocess.run([PY, "-c", "import crmcli; print(crmcli.__file__)"], capture_output=True, text=True)
    compileall.compile_dir(str(Path(spec.stdout.strip()).parent), quiet=1)


def crmcli(db: Path, config: Path, *args: str) -> list[str]:
    return [PY, "-m", "crmcli", "--db", str(db), "--config", str(config), *args]


def baseline(name: str, *args: str) -> list[str]:
    return [PY, str(HERE / "baselines.py"), name, *args]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20,000 customers: a laptop check")
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest.json")
    parser.add_argument(
        "--scripting", action="store_true", help="only start-up and batch mode, on a demo database (~2 min)"
    )
    parser.add_argument("--imports", action="store_true", help="only the imports and the till (no reports)")
    args = parser.parse_args()
    if args.scripting:
        return scripting_only(args.work, args.out)
    n = 20_000 if args.quick else args.customers
    data = args.data / str(n)
    if not (data / "purchases.csv").exists():
        subprocess.run([PY, str(HERE / "generate.py"), "--customers", str(n), "--out", str(data)], check=True)
    small = n // 10
    small_data = args.data / str(small)
    if not (small_data / "customers.csv").exists():
        subprocess.run([PY, str(HERE / "generate.py"), "--customers", str(small), "--out", str(small_data)], check=True)

    work = Path(args.work or tempfile.mkdtemp(prefix="crmcli-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.yaml"
    config.write_text("default_phone_region: US\n")
    rows: list[Row] = []

    def fresh(name: str) -> Path:
        db = work / name
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        subprocess.run(crmcli(db, config, "db", "upgrade"), check=True, capture_output=True)
        return db

    # --- customer import, phones as people type them (full validation) vs the limit and the peer
    db = fresh("crm.db")
    ours = run(crmcli(db, config, "customer", "import", str(data / "customers.csv")))
    raw = run(baseline("insert-customers", str(fresh("raw.db")), str(data / "customers.csv")))
    rows.append(Row("customer import (typed phones)", n, ours, "sqlite3 executemany", raw, 2.5))
    peer_db = work / "peer.db"
    peer_db.unlink(missing_ok=True)
    sqlite_utils = shutil.which("sqlite-utils") or str(Path(PY).parent / "sqlite-utils")
    if Path(sqlite_utils).exists():
        peer = run([sqlite_utils, "insert", str(peer_db), "customer", str(data / "customers.csv"), "--csv"])
        rows.append(Row("customer import (typed phones)", n, ours, "sqlite-utils insert --csv", peer, 1.0))
    e164_db = fresh("e164.db")
    ours_e164 = run(crmcli(e164_db, config, "customer", "import", str(data / "customers_e164.csv")))
    raw_e164 = run(baseline("insert-customers", str(fresh("raw_e164.db")), str(data / "customers_e164.csv")))
    rows.append(Row("customer import (E.164 phones)", n, ours_e164, "sqlite3 executemany", raw_e164, 2.5))
    small_db = fresh("small.db")
    ours_small = run(crmcli(small_db, config, "customer", "import", str(small_data / "customers.csv")))

    # --- purchase import: 5 x N rows, customers named by ref
    raw_p = work / "raw_purchases.db"
    shutil.copy(db, raw_p)
    fast_p = work / "fast_purchases.db"
    shutil.copy(db, fast_p)
    # ... while a till records a sale from another process (it must not be locked out)
    ours_p, till = run_with_till(
        crmcli(db, config, "purchase", "import", str(data / "purchases.csv")),
        crmcli(db, config, "purchase", "add", "id:1", "5.00"),
    )
    base_p = run(baseline("insert-purchases", str(raw_p), str(data / "purchases.csv")))
    rows.append(Row("purchase import", 5 * n, ours_p, "sqlite3 executemany", base_p, 2.0))
    # the limit: the same plain writer with its best pragma (a 256 MB page cache)
    best_p = run(baseline("insert-purchases-fast", str(fast_p), str(data / "purchases.csv")))
    rows.append(Row("purchase import", 5 * n, ours_p, "sqlite3, 256 MB cache", best_p, 1.5))
    imports = {
        "customer import peak MB": ours.peak_mb,
        "customer import peak MB at N/10": ours_small.peak_mb,
        "customer import growth (N vs N/10)": round(ours.peak_mb / ours_small.peak_mb, 2),
        "purchase import peak MB": ours_p.peak_mb,
        "purchase import peak MB, with its reading process (PSS)": ours_p.tree_pss_mb,
        **{f"till during purchase import: {k}": v for k, v in till.items()},
    }
    if args.imports:
        print_report(rows, imports, n, args.out)
        return 0

    # --- reports: crmcli start-up, SQL and rendering vs the same SQL through sqlite3
    timed: dict[str, Measure] = {}
    for report in ("rfm", "pareto", "value"):
        sql = subprocess.run(baseline("capture-sql", str(db), report), capture_output=True, text=True, check=True)
        (work / f"{report}.json").write_text(sql.stdout)
        ours_r = timed[report] = best_of(3, crmcli(db, config, "report", report, "-f", "json"))
        base_r = best_of(3, baseline("run-sql", str(db), str(work / f"{report}.json")))
        rows.append(Row(f"report {report}", n, ours_r, "same SQL via sqlite3", base_r, 1.5))
    # report clv fits two models over every buyer: measured against report rfm on the same database
    ours_clv = best_of(3, crmcli(db, config, "report", "clv", "-f", "json"))
    rows.append(Row("report clv", n, ours_clv, "crmcli report rfm", timed["rfm"], 3.0))

    # --- export
    ours_x = run(crmcli(db, config, "customer", "export", "--out", str(work / "export.csv")))
    sql = subprocess.run(baseline("capture-sql", str(db), "export"), capture_output=True, text=True, check=True)
    (work / "export.json").write_text(sql.stdout)
    base_x = run(baseline("export-customers", str(db), str(work / "export_raw.csv"), str(work / "export.json")))
    rows.append(Row("customer export", n, ours_x, "csv.writer over a cursor", base_x, 2.0))
    ours_x_small = run(crmcli(small_db, config, "customer", "export", "--out", str(work / "export_small.csv")))

    rows += scripting_rows(work, config, db, str(n // 2))
    memory = {
        **imports,
        "customer export peak MB": ours_x.peak_mb,
        "customer export growth (N vs N/10)": round(ours_x.peak_mb / ours_x_small.peak_mb, 2),
    }
    print_report(rows, memory, n, args.out)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


BATCH_COMMANDS = 1_000


def scripting_rows(work: Path, config: Path, db: Path, customer: str) -> list[Row]:
    """Start-up against its baselines, and scripts: 1,000 `purchase add` in one `crmcli batch`
    against one `crmcli purchase add` process (and against 1,000 of them)."""
    app = work / "two_commands.py"
    app.write_text(
        "import typer\napp = typer.Typer()\n@app.command()\ndef hello(name: str) -> None:\n    print(name)\n"
        "@app.command()\ndef bye(name: str) -> None:\n    print(name)\napp()\n"
    )
    compile_crmcli()
    run([PY, "-m", "crmcli", "--help"])  # a first run to warm the file cache, not timed
    helped, typer_app = side_by_side(7, [PY, "-m", "crmcli", "--help"], [PY, str(app), "--help"])
    shown, sqlmodel = side_by_side(7, crmcli(db, config, "customer", "show", customer), [PY, "-c", "import sqlmodel"])
    rows = [
        Row("crmcli --help", 1, helped, "2-command Typer app --help", typer_app, 1.5),
        Row("crmcli customer show", 1, shown, 'python -c "import sqlmodel"', sqlmodel, 1.3),
    ]
    # the sales of a day, spread over the shop's first 200 customers (written last: nothing reads them after)
    sales = db
    commands = work / "sales.jsonl"
    commands.write_text(
        "".join(
            json.dumps({"cmd": "purchase add", "args": {"customer": str(i % 200 + 1), "amount": f"{10 + i % 90}.90"}})
            + "\n"
            for i in range(BATCH_COMMANDS)
        )
    )
    one = best_of(5, crmcli(sales, config, "purchase", "add", "1", "19.90"))
    batch = run(crmcli(sales, config, "batch", str(commands)))
    atomic = run(crmcli(sales, config, "batch", "--atomic", str(commands)))
    processes = Measure(
        round(one.seconds * BATCH_COMMANDS, 3), one.peak_mb, round((one.cpu_seconds or 0.0) * BATCH_COMMANDS, 3)
    )
    rows += [
        Row(f"batch: {BATCH_COMMANDS:,} purchase add", BATCH_COMMANDS, batch, "one purchase add process", one, 5.0),
        Row(
            f"batch --atomic: {BATCH_COMMANDS:,} purchase add",
            BATCH_COMMANDS,
            atomic,
            "one purchase add process",
            one,
            5.0,
        ),
        Row(
            f"batch: {BATCH_COMMANDS:,} purchase add",
            BATCH_COMMANDS,
            batch,
            f"{BATCH_COMMANDS:,} purchase add processes (one x {BATCH_COMMANDS:,})",
            processes,
            None,
        ),
    ]
    return rows


def scripting_only(work_dir: Path | None, out: Path) -> int:
    """run.py --scripting: the start-up and batch rows alone, on a 200-customer demo database."""
    work = Path(work_dir or tempfile.mkdtemp(prefix="crmcli-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.yaml"
    config.write_text("default_phone_region: US\n")
    db = work / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    subprocess.run(crmcli(db, config, "demo", "--customers", "200"), check=True, capture_output=True)
    rows = scripting_rows(work, config, db, "100")
    print_report(rows, {}, 200, out.with_name("scripting.json") if out.name == "latest.json" else out)
    if work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def print_report(rows: list[Row], memory: dict[str, object], n: int, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"crmcli benchmarks, N = {n:,} customers ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, SQLite "
        f"{__import__('sqlite3').sqlite_version})"
    )
    columns = ("task", "rows", "crmcli s", "rows/s", "peak MB", "baseline", "base s", "base MB", "ratio", "CPU ratio")
    for col in (*columns, "target"):
        table.add_column(col, justify="left" if col in ("task", "baseline") else "right")
    for r in rows:
        met = r.target is None or r.ratio <= r.target
        table.add_row(
            r.task,
            f"{r.rows:,}",
            f"{r.crmcli.seconds:.2f}",
            f"{r.rows / r.crmcli.seconds:,.0f}",
            f"{r.crmcli.peak_mb:.0f}",
            r.baseline,
            f"{r.base.seconds:.2f}",
            f"{r.base.peak_mb:.0f}",
            f"[{'green' if met else 'red'}]{r.ratio:.2f}x[/]",
            "" if r.cpu_ratio is None else f"{r.cpu_ratio:.2f}x",
            f"≤ {r.target}x" if r.target else "",
        )
    console = Console()
    console.print(table)
    for key, value in memory.items():
        console.print(f"{key}: {value}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "customers": n,
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "sqlite": __import__("sqlite3").sqlite_version,
                },
                "tasks": [
                    {**asdict(r), "ratio": round(r.ratio, 3), "cpu_ratio": r.cpu_ratio and round(r.cpu_ratio, 3)}
                    for r in rows
                ],
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "memory": memory,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
