"""Small datasets whose report figures are worked out by hand (see tests/cli/test_report.py)."""

from __future__ import annotations

from tests.conftest import Cli


def build_shop(cli: Cli) -> dict[str, int]:
    """Six customers who joined on Dec 1, 2025; buyers A, B, C, F (D's only purchase is refunded, E never bought).

    A: 100 (Jan 1, due Jan 31, paid Feb 5: late) + 50 (Mar 1)   net 150, 2 orders, last Mar 1
    B: 300 (Feb 1)                                               net 300, 1 order,  last Feb 1
    C: 100 (Mar 1), referred by B (verified by the purchase)     net 100, 1 order,  last Mar 1
    D: 200 (Jan 15) refunded Jan 20, referred by E (back to pending)    not a buyer
    E: no purchase, referred by A (pending)
    F: 50 + 50 + 50 (Feb 15, 20, 25)                             net 150, 3 orders, last Feb 25
    """
    joined = ("--at", "2025-12-01")  # everyone joined before the first sale
    ids = {n: cli.new_id("customer", "add", n, *joined) for n in "AB"}
    ids["C"] = cli.new_id("customer", "add", "C", "--referred-by", str(ids["B"]), *joined)
    ids["E"] = cli.new_id("customer", "add", "E", "--referred-by", str(ids["A"]), *joined)
    ids["D"] = cli.new_id("customer", "add", "D", "--referred-by", str(ids["E"]), *joined)
    ids["F"] = cli.new_id("customer", "add", "F", *joined)
    late = cli.new_id("purchase", "add", "1", "100", "--at", "2026-01-01", "--due", "2026-01-31")
    cli.ok("purchase", "pay", str(late), "--at", "2026-02-05")
    for who, amount, at in (
        ("A", "50", "2026-03-01"),
        ("B", "300", "2026-02-01"),
        ("C", "100", "2026-03-01"),
        ("F", "50", "2026-02-15"),
        ("F", "50", "2026-02-20"),
        ("F", "50", "2026-02-25"),
    ):
        cli.ok("purchase", "add", str(ids[who]), amount, "--at", at)
    refunded = cli.new_id("purchase", "add", str(ids["D"]), "200", "--at", "2026-01-15")
    cli.ok("purchase", "refund", str(refunded), "--at", "2026-01-20")
    assert ids == {"A": 1, "B": 2, "C": 3, "E": 4, "D": 5, "F": 6}
    return ids
