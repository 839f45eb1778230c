"""report --html: one self-contained page, opened in headless Chromium with no network."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.conftest import Cli


@pytest.fixture
def shop(cli: Cli) -> Cli:
    for n, name in enumerate(["Ann Lee", "Bob Stone", "Cy Young", "Di Park", "Ed Ball"]):
        cid = cli.new_id("customer", "add", name, "--email", f"c{n}@example.com")
        for month in range(1, 2 + n):
            cli.ok("purchase", "add", str(cid), f"{20 * (n + 1)}.00", "--at", f"2026-0{month}-15")
        cli.ok("interaction", "log", str(cid), "--kind", "survey", "--rating", str(1 + n), "--at", "2026-05-01")
    cli.ok(
        "interaction",
        "log",
        "c0@example.com",
        "--kind",
        "complaint",
        "--summary",
        "late <b>parcel</b>",
        "--at",
        "2026-05-02",
    )
    return cli


def test_the_page_holds_every_report_and_nothing_remote(shop: Cli, tmp_path: Path) -> None:
    page = tmp_path / "june.html"
    result = shop.ok("report", "--html", str(page), "--as-of", "2026-06-30")
    assert "june.html" in result.stderr
    text = page.read_text(encoding="utf-8")
    for section in ("dashboard", "pareto", "rfm", "value", "cohorts", "payment", "satisfaction", "sla"):
        assert f'<section id="{section}">' in text
    assert text.count("<svg") >= 5 and "<polyline" in text  # the Pareto curve
    assert "@page { size: A4" in text
    assert not re.search(r"(?:src|href)\s*=|url\(|@import|https?://", text, re.I)
    assert "&lt;b&gt;parcel&lt;/b&gt;" in text  # text is escaped, never markup
    assert "As of 2026-06-30" in text and "USD" in text


def test_an_existing_file_needs_force_and_the_database_is_never_written(shop: Cli, tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    page.write_text("keep")
    result = shop("report", "--html", str(page))
    assert result.exit_code == 1 and "already exists" in result.stderr and page.read_text() == "keep"
    shop.ok("report", "--html", str(page), "--force")
    assert page.read_text().startswith("<!DOCTYPE html>")
    refused = shop("report", "--html", str(shop.db_path), "--force")
    assert refused.exit_code == 1 and "refusing" in refused.stderr


def _png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the raw (unfiltered-enough) scanlines of an 8-bit RGB(A) PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (CI installs it)")
def test_chromium_renders_the_page_offline(shop: Cli, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    shop.ok("report", "--html", str(page), "--as-of", "2026-06-30")
    shot, netlog = tmp_path / "shot.png", tmp_path / "net.json"
    base = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--proxy-server=127.0.0.1:9",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=900,2400",
    ]
    subprocess.run(
        [*base, f"--log-net-log={netlog}", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=False,
    )
    width, height, raw = _png_pixels(shot)
    assert (width, height) == (900, 2400)
    # distinct byte triples of the (filtered) scanlines: a blank page has a handful
    assert len({raw[i : i + 3] for i in range(0, min(len(raw), 3_000_000), 3)}) > 50
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<svg") >= 5 and 'aria-label="Pareto curve"' in dom and "RFM segments" in dom
    log = netlog.read_text(errors="replace") if netlog.exists() else ""
    # the page asked for nothing but itself (Chromium's own clock and update checks are not the page's)
    urls = set(re.findall(r'"url":"([^"]+)"', log))
    own = re.compile(r"https?://[^/]*(google\.com|googleapis\.com|gvt1\.com|gstatic\.com)/")
    assert all(u.startswith(("file:", "data:", "chrome:", "about:")) or own.match(u) for u in urls), urls
