"""Parsing and formatting of the values users type: times, money, emails, phones."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from crmcli.errors import Invalid

_OFFSET = re.compile(r"([+-])(\d+)([dw])", re.ASCII)
# Plain ASCII addresses that email-validator accepts unchanged except for case (tests/test_values.py
# checks the two agree); anything else (quotes, IDNA, special-use names, long parts) goes to the library.
_PLAIN_EMAIL = re.compile(
    r"(?P<local>[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,64}(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?P<tld>[a-z]{2,63}))"
)
_SPECIAL_USE = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})
# North American numbers already in E.164: the phone library returns them unchanged (an area code
# never starts with 0 or 1, so no national prefix is stripped) and all have the one possible length.
_NANP_E164 = re.compile(r"\+1[2-9]\d{9}")


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- dates and times ----------------------------------------------------------------

DATE_ORDERS = ("ymd", "dmy", "mdy")
FIRST_YEAR, LAST_YEAR = 1900, 2200
WHEN_FORMATS = "YYYY-MM-DD, 2026/10/1, 2026年10月1日, an ISO timestamp, today, yesterday, +30d or -7d"
_WORDS = {"today": 0, "yesterday": -1, "tomorrow": 1}
_CLOCK = r"(?:(?: |t)(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<F>\d{1,6}))?)? ?(?P<ampm>[ap]m)?)?"
# Year first, as ISO writes it and as spreadsheets write it (2026/10/1 14:30, 2026.10.01, 2026年10月1日).
_YEAR_FIRST = re.compile(
    r"(?P<y>\d{4})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})"
    + _CLOCK
    + r"|(?P<cy>\d{4})\s*年\s*(?P<cm>\d{1,2})\s*月\s*(?P<cd>\d{1,2})\s*日"
    + _CLOCK.replace("?P<", "?P<c"),
    re.ASCII,
)
# Year last (1.10.2026, 10/1/2026): day or month first is a matter of custom, so only with date_order.
_YEAR_LAST = re.compile(r"(?P<a>\d{1,2})(?P<sep>[-/.])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4})" + _CLOCK, re.ASCII)


def parse_when(
    text: str,
    tz: ZoneInfo,
    *,
    now: datetime | None = None,
    end_of_day: bool = False,
    date_order: str = "ymd",
) -> datetime:
    """Parse a date or time as a person or a spreadsheet writes it; the result is aware UTC.

    Accepted: ``YYYY-MM-DD`` (also ``2026-10-1``, ``2026/10/1``, ``2026.10.1``,
    ``2026年10月1日``, each optionally followed by ``14:30`` or ``14:30:15``), ISO 8601
    timestamps, ``now``, ``today``, ``yesterday``, ``tomorrow`` and offsets from now
    (``+30d``, ``-7d``, ``+2w``). ``1.10.2026``-style dates need ``date_order`` ``dmy``
    or ``mdy``. A bare date is a day in the business time zone: its start, or with
    ``end_of_day`` its last microsecond; a time without an offset is read there too.
    Years outside 1900-2200 are refused: they are typing mistakes, and beyond them
    date arithmetic overflows.
    """
    now = now or utcnow()
    if len(text) >= 10 and text[4:5] == "-" and text[:4].isdigit() and text.isascii():
        moment = _iso_fast(text, tz, end_of_day)  # what exports and tills write: no regex, no lowering
        if moment is not None:
            return moment
    raw = " ".join(text.split()).lower()
    if not raw:
        raise Invalid(f"no date given: use {WHEN_FORMATS}")
    if raw == "now":
        return now
    try:
        moment = _parse_when(raw, text, tz, now, end_of_day, date_order)
    except OverflowError:
        moment = None
    if moment is None or not FIRST_YEAR <= moment.astimezone(tz).year <= LAST_YEAR:
        raise Invalid(f"bad date {text!r}: years from {FIRST_YEAR} to {LAST_YEAR} only")
    return moment


def _iso_fast(text: str, tz: ZoneInfo, end_of_day: bool) -> datetime | None:
    """``YYYY-MM-DD`` or an ISO timestamp within the accepted years, else None for the full parser."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return _day(day, None, tz, end_of_day) if FIRST_YEAR <= day.year <= LAST_YEAR else None
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if not FIRST_YEAR + 1 <= moment.year <= LAST_YEAR - 1:
        return None  # near the edges the full parser checks the year in the business time zone
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC)


def _parse_when(raw: str, text: str, tz: ZoneInfo, now: datetime, end_of_day: bool, order: str) -> datetime | None:
    if raw in _WORDS:
        return _day(now.astimezone(tz).date() + timedelta(days=_WORDS[raw]), None, tz, end_of_day)
    if match := _OFFSET.fullmatch(raw):
        sign, count, unit = match.groups()
        if len(count) > 6:
            return None
        delta = timedelta(days=int(count) * (7 if unit == "w" else 1))
        moment = now + delta if sign == "+" else now - delta
        return _day(moment.astimezone(tz).date(), None, tz, end_of_day) if end_of_day else moment
    if match := _YEAR_FIRST.fullmatch(raw):
        g = {k.removeprefix("c"): v for k, v in match.groupdict().items() if v is not None}
        return _day(_date(int(g["y"]), int(g["m"]), int(g["d"]), text), _clock(g, text), tz, end_of_day)
    if match := _YEAR_LAST.fullmatch(raw):
        if order not in ("dmy", "mdy"):
            raise Invalid(
                f"bad date {text!r}: is it day or month first? Write the year first (YYYY-MM-DD), "
                "or set date_order: dmy or mdy in the config"
            )
        g = match.groupdict()
        day, month = (g["a"], g["b"]) if order == "dmy" else (g["b"], g["a"])
        return _day(_date(int(g["y"]), int(month), int(day), text), _clock(g, text), tz, end_of_day)
    if not raw[:1].isdigit() or not raw.isascii():
        raise Invalid(f"bad date or time {text!r}: use {WHEN_FORMATS}")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Invalid(f"bad date or time {text!r}: use {WHEN_FORMATS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        return None
    return moment.astimezone(UTC)


def _date(year: int, month: int, day: int, text: str) -> date:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise OverflowError
    try:
        return date(year, month, day)
    except ValueError:
        raise Invalid(f"bad date {text!r}: there is no such day") from None


def _clock(groups: dict[str, str | None], text: str) -> time | None:
    if groups.get("H") is None:
        return None
    hour, minute, second = int(groups["H"] or 0), int(groups["M"] or 0), int(groups.get("S") or 0)
    if groups.get("ampm"):
        if not 1 <= hour <= 12:
            raise Invalid(f"bad time {text!r}: with am/pm the hour is 1 to 12")
        hour = hour % 12 + (12 if groups["ampm"] == "pm" else 0)
    fraction = int((groups.get("F") or "0").ljust(6, "0"))
    try:
        return time(hour, minute, second, fraction)
    except ValueError:
        raise Invalid(f"bad time {text!r}: there is no such time of day") from None


def _day(day: date, clock: time | None, tz: ZoneInfo, end_of_day: bool) -> datetime:
    if clock is None:
        clock = time.max if end_of_day else time.min
    return datetime.combine(day, clock, tzinfo=tz).astimezone(UTC)


def check_happened(
    moment: datetime | None, what: str, *, now: datetime | None = None, tz: ZoneInfo | None = None
) -> datetime | None:
    """Refuse a time for something that has happened (a sale, a payment) more than a day ahead.

    A day of slack covers time zones and a till whose clock runs ahead. The refusal
    shows the day in ``tz``, the business time zone.
    """
    if moment is None:
        return None
    now = now or utcnow()
    if moment > now + timedelta(days=1):
        day = moment.astimezone(tz or UTC).date().isoformat()
        raise Invalid(f"{what} {day} is in the future: only what has happened can be recorded")
    return moment


def iso(moment: datetime | None, tz: ZoneInfo) -> str | None:
    """ISO 8601 with the business time zone's offset, to the second."""
    if moment is None:
        return None
    return moment.astimezone(tz).isoformat(timespec="seconds")


# --- money --------------------------------------------------------------------------

NUMBER_FORMATS = ("decimal_point", "decimal_comma")
MAX_AMOUNT = 10**12  # in major units: far above any sale a small shop makes, far below overflow
CURRENCY_SIGNS = ("¥", "￥", "$", "€", "£", "元", "RMB")
# What the fast path takes is exactly what Babel takes unchanged (tests/test_values.py checks it).
_PLAIN_NUMBER = {
    False: re.compile(r"[+-]?\d{1,13}(?:\.\d{1,6})?", re.ASCII),
    True: re.compile(r"[+-]?\d{1,13}(?:,\d{1,6})?", re.ASCII),
}
_NUMBER_CHARS = re.compile(r"[+-]?[0-9][0-9.,]*")
_LOCALE = {False: "en_US", True: "de_DE"}  # 1,234.50 and 1.234,50: the two customs, with Babel's grouping rules


def parse_money(
    text: str | int | Decimal,
    minor_digits: int,
    *,
    what: str = "amount",
    decimal_comma: bool = False,
    currency: str | None = None,
) -> int:
    """A decimal amount to integer minor units, read exactly as written or refused.

    ``.`` is the decimal separator and ``,`` groups thousands (``1,234.50``), unless
    ``decimal_comma`` (``1.234,50``). A separator that could be either (``12,50`` by
    default) is refused, never guessed. Currency signs around the number (``$``, ``¥``,
    ``€``, ``£``, ``元``, ``RMB`` and the ``currency`` code) are accepted; exponents,
    NaN, infinities and amounts above 10^12 are not.
    """
    if isinstance(text, Decimal | int):
        value = Decimal(text)
    elif _PLAIN_NUMBER[decimal_comma].fullmatch(text):  # the common case, read without any string surgery
        value = Decimal(text.replace(",", ".") if decimal_comma else text)
    else:
        value = _read_number(text, what=what, decimal_comma=decimal_comma, currency=currency)
        group = "." if decimal_comma else ","
        if minor_digits >= 3 and re.fullmatch(rf"[+-]?\d{{1,3}}\{group}\d{{3}}", _strip_currency(text, currency)):
            # 1,234 is 1234 or, with three minor digits (KWD), 1.234 written with a decimal comma
            raise Invalid(f"bad {what} {text!r}: ambiguous: thousands or decimals? Write it without grouping")
    if not value.is_finite():
        raise Invalid(f"bad {what} {str(text)!r}: use a number such as 19.90")
    if abs(value) > MAX_AMOUNT:
        raise Invalid(f"bad {what} {str(text)!r}: more than 10^12 is not an amount crmcli can take")
    scaled = value.scaleb(minor_digits)
    if scaled != scaled.to_integral_value():
        raise Invalid(f"bad {what} {str(text)!r}: at most {minor_digits} decimal places")
    return int(scaled)


def parse_percent(text: str, *, what: str = "percent", decimal_comma: bool = False) -> int:
    """A percentage such as ``15``, ``12.5`` or ``12.5%`` in basis points (1250), read like an amount."""
    value = _read_number(text.strip().removesuffix("%"), what=what, decimal_comma=decimal_comma, currency=None)
    points = value * 100
    if points != points.to_integral_value():
        raise Invalid(f"bad {what} {text!r}: at most two decimal places")
    if abs(points) > 10**6:
        raise Invalid(f"bad {what} {text!r}: a percentage is at most 100")
    return int(points)


def money(minor: int | None, minor_digits: int) -> Decimal | None:
    """Integer minor units to a Decimal with exactly ``minor_digits`` places."""
    if minor is None:
        return None
    return Decimal(int(minor)).scaleb(-minor_digits).quantize(Decimal(1).scaleb(-minor_digits))


def _strip_currency(text: str, currency: str | None) -> str:
    signs = (*CURRENCY_SIGNS, currency.upper()) if currency else CURRENCY_SIGNS
    core = text.strip()
    changed = True
    while changed and core:
        changed = False
        upper = core.upper()
        for sign in signs:
            if upper.startswith(sign):
                core, changed = core[len(sign) :].strip(), True
            elif upper.endswith(sign):
                core, changed = core[: -len(sign)].strip(), True
            upper = core.upper()
    if core[:1] in "+-" and core[1:2] and not core[1:2].isdigit():
        return core[0] + _strip_currency(core[1:], currency)  # -$5.00
    return core


def _read_number(text: str, *, what: str, decimal_comma: bool, currency: str | None) -> Decimal:
    core = _strip_currency(text, currency)
    example = "19,90" if decimal_comma else "19.90"
    if not core:
        raise Invalid(f"no {what} given: use a number such as {example}")
    if _PLAIN_NUMBER[decimal_comma].fullmatch(core):
        return Decimal(core.replace(",", ".") if decimal_comma else core)
    if not _NUMBER_CHARS.fullmatch(core) or not core.isascii():
        lowered = core.lower()
        if any(word in lowered for word in ("nan", "inf")):
            reason = "not a number"
        elif re.fullmatch(r"[+-]?[\d.,]+e[+-]?\d+", lowered):
            reason = "exponents are not accepted; write the number out"
        else:
            reason = f"use a number such as {example}"
        raise Invalid(f"bad {what} {text!r}: {reason}")
    from babel.numbers import NumberFormatError, parse_decimal

    try:
        return parse_decimal(core, locale=_LOCALE[decimal_comma], strict=True)
    except NumberFormatError:
        pass
    if not decimal_comma and core.count(",") == 1 and "." not in core:
        hint = f"is it {core.replace(',', '.')}? Write that, or pass --decimal-comma (config number_format)"
        raise Invalid(f"bad {what} {text!r}: ambiguous decimal comma; {hint}") from None
    if decimal_comma and core.count(".") == 1 and "," not in core:
        hint = f"is it {core.replace('.', ',')}? With --decimal-comma (number_format: decimal_comma) write that"
        raise Invalid(f"bad {what} {text!r}: ambiguous decimal point; {hint}") from None
    grouping = "1.234,50" if decimal_comma else "1,234.50"
    raise Invalid(f"bad {what} {text!r}: ambiguous separators; write it as {grouping} or without grouping") from None


def parse_birthday(text: str) -> str:
    """A birthday as ``MM-DD`` (month and day, no year; 02-29 allowed), read exactly or refused."""
    m = re.fullmatch(r"\s*(\d{1,2})[-/](\d{1,2})\s*", text, re.ASCII)
    if m:
        month, day = int(m.group(1)), int(m.group(2))
        if 1 <= month <= 12 and 1 <= day <= calendar.monthrange(2024, month)[1]:  # 2024: a leap year
            return f"{month:02d}-{day:02d}"
    raise Invalid(f"bad birthday {text!r}: write the month and day as MM-DD, e.g. 03-14", fields=("birthday",))


def normalize_email(text: str) -> str:
    """Check an email's syntax and return it in lower case."""
    candidate = text.strip()
    lowered = candidate.lower()
    plain = _PLAIN_EMAIL.fullmatch(lowered)
    if (
        plain
        and len(lowered) <= 254
        and len(plain["local"]) <= 64
        and "--" not in plain["domain"]  # IDNA rules for such labels are the library's business
        and not _SPECIAL_USE.intersection(plain["domain"].split("."))
    ):
        return lowered
    from email_validator import EmailNotValidError, validate_email

    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise Invalid(f"bad email {text!r}: {exc}") from None
    return result.normalized.lower()


MIN_PHONE_DIGITS, MAX_PHONE_DIGITS = 6, 15  # shorter is an extension or a typo; E.164 allows 15
PHONE_REGION_HINT = (
    "phone numbers without +country code are compared by their digits; set default_phone_region "
    "(e.g. US, GB, CN) in the config to store them as +E.164"
)


def normalize_phone(text: str, region: str | None) -> str:
    """E.164 when the number can be read (with ``+`` or a default region), else refused.

    Without a default region, a number that does not start with ``+`` is kept as its
    digits, since its country cannot be known: ``138 0013 8000`` and ``13800138000``
    are then the same number, and a duplicate is found whichever way it was typed.
    """
    candidate = text.strip()
    if not candidate.startswith("+") and not region:
        digits = re.sub(r"[\s().-]+", "", candidate)
        if not re.fullmatch(r"[0-9]+", digits, re.ASCII):
            raise Invalid(f"bad phone {text!r}: use digits, or +country code and number")
        if not MIN_PHONE_DIGITS <= len(digits) <= MAX_PHONE_DIGITS:
            few = len(digits) < MIN_PHONE_DIGITS
            raise Invalid(f"bad phone {text!r}: too {'short' if few else 'long'} to be a phone number")
        return digits
    if _NANP_E164.fullmatch(candidate):
        return candidate
    import phonenumbers

    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        raise Invalid(f"bad phone {text!r}: not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise Invalid(f"bad phone {text!r}: wrong number of digits")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_compared_by_digits(text: str | None, region: str | None) -> bool:
    """True when ``text`` is stored as bare digits for want of a region (see :data:`PHONE_REGION_HINT`)."""
    return bool(text and text.strip() and not region and not text.strip().startswith("+"))
