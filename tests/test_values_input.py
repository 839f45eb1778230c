"""Values read exactly as the user meant them, or refused: amounts, dates, phones."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from babel.numbers import NumberFormatError, parse_decimal
from hypothesis import given, settings
from hypothesis import strategies as st

from crmcli.errors import Invalid
from crmcli.values import check_happened, normalize_phone, parse_money, parse_when

UTC_ZONE = ZoneInfo("UTC")
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def amount(text: str, **kw: object) -> int:
    return parse_money(text, 2, currency="USD", **kw)  # type: ignore[arg-type]


def refusal(text: str, **kw: object) -> str:
    with pytest.raises(Invalid) as caught:
        amount(text, **kw)
    return str(caught.value)


# --- amounts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minor"),
    [
        ("19.90", 1990),
        ("19.9", 1990),
        ("0", 0),
        ("0.00", 0),
        ("1,234.50", 123450),
        ("1,234,567", 123456700),
        ("$19.90", 1990),
        ("¥ 88", 8800),
        ("￥88.80", 8880),
        ("€5", 500),
        ("£5.50", 550),
        ("19.90 元", 1990),
        ("RMB 19.90", 1990),
        ("USD 19.90", 1990),
        ("19.90 usd", 1990),
        (" 7 ", 700),
        ("-$5.00", -500),
    ],
)
def test_amounts_read_with_a_decimal_point(text: str, minor: int) -> None:
    assert amount(text) == minor


@pytest.mark.parametrize(
    ("text", "minor"),
    [("12,50", 1250), ("1.234,50", 123450), ("1,5", 150), ("19", 1900), ("€ 1.234", 123400), ("0,00", 0)],
)
def test_amounts_read_with_a_decimal_comma(text: str, minor: int) -> None:
    assert amount(text, decimal_comma=True) == minor


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("12,50", "ambiguous decimal comma; is it 12.50? Write that, or pass --decimal-comma"),
        ("1,5", "ambiguous decimal comma; is it 1.5?"),
        ("1,2,3", "ambiguous separators"),
        ("1,23.5", "ambiguous separators"),
        ("1.234,50", "ambiguous separators"),
        ("1e5", "exponents are not accepted"),
        ("1E+3", "exponents are not accepted"),
        ("NaN", "not a number"),
        ("inf", "not a number"),
        ("-Infinity", "not a number"),
        ("1000000000000.01", "more than 10^12"),
        ("99999999999999999999999", "more than 10^12"),
        ("²", "use a number such as 19.90"),
        ("١٢", "use a number such as 19.90"),
        ("12.345", "at most 2 decimal places"),
        ("", "no amount given"),
        ("$", "no amount given"),
        ("abc", "use a number such as 19.90"),
        ("5-", "use a number such as 19.90"),
        ("0x10", "use a number such as 19.90"),
    ],
)
def test_amounts_refused_with_a_reason(text: str, reason: str) -> None:
    assert reason in refusal(text)


def test_a_decimal_point_is_refused_when_commas_are_decimal() -> None:
    assert "ambiguous decimal point; is it 19,90?" in refusal("19.90", decimal_comma=True)


def test_grouping_that_could_be_three_decimals_is_refused_for_three_digit_currencies() -> None:
    assert parse_money("1,234", 2) == 123400
    with pytest.raises(Invalid, match="thousands or decimals"):
        parse_money("1,234", 3)
    with pytest.raises(Invalid, match="thousands or decimals"):
        parse_money("1.234", 3, decimal_comma=True)
    assert parse_money("1,234.500", 3) == 1234500


def test_config_amounts_keep_their_exact_value() -> None:
    assert parse_money(Decimal("0.1"), 2) == 10
    with pytest.raises(Invalid):
        parse_money(Decimal("NaN"), 2)


@settings(max_examples=500, deadline=None)
@given(
    whole=st.integers(min_value=0, max_value=10**12 - 1),
    cents=st.one_of(st.none(), st.integers(min_value=0, max_value=99)),
    comma=st.booleans(),
    grouped=st.booleans(),
)
def test_babel_and_the_fast_path_agree(whole: int, cents: int | None, comma: bool, grouped: bool) -> None:
    """A number written in either custom, grouped or not, reads back as itself."""
    group, point = (".", ",") if comma else (",", ".")
    digits = f"{whole:,}".replace(",", group) if grouped else str(whole)
    text = digits + (f"{point}{cents:02d}" if cents is not None else "")
    expected = whole * 100 + (cents or 0)
    assert amount(text, decimal_comma=comma) == expected
    try:
        library = parse_decimal(text, locale="de_DE" if comma else "en_US", strict=True)
    except NumberFormatError:
        library = None
    assert library is not None and int(library * 100) == expected


# --- dates -----------------------------------------------------------------------


def when(text: str, **kw: object) -> datetime:
    return parse_when(text, UTC_ZONE, now=NOW, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-10-01", datetime(2026, 10, 1, tzinfo=UTC)),
        ("2026-10-1", datetime(2026, 10, 1, tzinfo=UTC)),
        ("2026/10/1", datetime(2026, 10, 1, tzinfo=UTC)),
        ("2026/10/01 14:30", datetime(2026, 10, 1, 14, 30, tzinfo=UTC)),
        ("2026.10.01 14:30:15", datetime(2026, 10, 1, 14, 30, 15, tzinfo=UTC)),
        ("2026年10月1日", datetime(2026, 10, 1, tzinfo=UTC)),
        ("2026年10月1日 9:05", datetime(2026, 10, 1, 9, 5, tzinfo=UTC)),
        ("2026-10-01T14:30:00+08:00", datetime(2026, 10, 1, 6, 30, tzinfo=UTC)),
        ("2026-10-01T14:30:00Z", datetime(2026, 10, 1, 14, 30, tzinfo=UTC)),
        ("today", datetime(2026, 11, 24, tzinfo=UTC)),
        ("yesterday", datetime(2026, 11, 23, tzinfo=UTC)),
        ("+30d", datetime(2026, 12, 24, 12, tzinfo=UTC)),
        ("-7d", datetime(2026, 11, 17, 12, tzinfo=UTC)),
        ("now", NOW),
    ],
)
def test_dates_as_people_and_spreadsheets_write_them(text: str, expected: datetime) -> None:
    assert when(text) == expected


def test_a_date_in_the_business_time_zone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    assert parse_when("2026/10/1", shanghai) == datetime(2026, 9, 30, 16, tzinfo=UTC)
    assert parse_when("2026年10月1日", shanghai, end_of_day=True).hour == 15


def test_year_last_dates_need_a_date_order() -> None:
    with pytest.raises(Invalid, match="day or month first.*date_order: dmy or mdy"):
        when("1.10.2026")
    assert when("1.10.2026", date_order="dmy") == datetime(2026, 10, 1, tzinfo=UTC)
    assert when("10/1/2026", date_order="mdy") == datetime(2026, 10, 1, tzinfo=UTC)
    assert when("10/1/2026 2:30 PM", date_order="mdy") == datetime(2026, 10, 1, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("9999-01-01", "years from 1900 to 2200"),
        ("1899-12-31", "years from 1900 to 2200"),
        ("0001-01-01T00:00:00", "years from 1900 to 2200"),
        ("+99999999999d", "years from 1900 to 2200"),
        ("-999999w", "years from 1900 to 2200"),
        ("+100000d", "years from 1900 to 2200"),
        ("2026-02-30", "no such day"),
        ("2026-10-01 25:00", "no such time of day"),
        ("13/13/2026", "day or month first"),
        ("٢٠٢٦-١٠-٠١", "use YYYY-MM-DD"),
        ("soon", "use YYYY-MM-DD"),
        ("", "no date given"),
    ],
)
def test_dates_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(Invalid) as caught:
        when(text)
    assert reason in str(caught.value)


def test_what_has_happened_cannot_be_more_than_a_day_ahead() -> None:
    assert check_happened(when("+1d"), "--at", now=NOW) is not None
    assert check_happened(when("2026-11-25"), "--at", now=NOW) is not None
    with pytest.raises(Invalid, match="--at 2026-11-26 is in the future"):
        check_happened(when("2026-11-26 12:01"), "--at", now=NOW)


# --- phones ----------------------------------------------------------------------


def test_without_a_region_phones_are_compared_by_their_digits() -> None:
    assert normalize_phone("13800138000", None) == normalize_phone("138 0013 8000", None) == "13800138000"
    assert normalize_phone("(020) 7946-0018", None) == "02079460018"
    assert normalize_phone("+86 138 0013 8000", None) == "+8613800138000"


@pytest.mark.parametrize(("text", "reason"), [("12345", "too short"), ("1" * 16, "too long"), ("12a456", "use digits")])
def test_phones_that_cannot_be_real_are_refused(text: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        normalize_phone(text, None)
    with pytest.raises(Invalid):
        normalize_phone(text, "US")
