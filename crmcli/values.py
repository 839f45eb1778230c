"""Parsing and formatting of the values users type: times, money, emails, phones."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from crmcli.errors import Invalid

_OFFSET = re.compile(r"^([+-])(\d+)([dw])$")
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


def parse_when(text: str, tz: ZoneInfo, *, now: datetime | None = None, end_of_day: bool = False) -> datetime:
    """Parse ``YYYY-MM-DD``, an ISO timestamp, ``today``, ``now`` or ``+30d``/``-7d``/``+2w``.

    A bare date (or ``today``/an offset with ``end_of_day``) is a day in the business
    time zone: its start, or with ``end_of_day`` its last microsecond. A timestamp
    without an offset is read in the business time zone. The result is aware UTC.
    """
    now = now or utcnow()
    raw = text.strip().lower()
    day: date | None = None
    if raw == "now":
        return now
    if raw == "today":
        day = now.astimezone(tz).date()
    elif match := _OFFSET.match(raw):
        sign, count, unit = match.groups()
        delta = timedelta(days=int(count) * (7 if unit == "w" else 1))
        moment = now + delta if sign == "+" else now - delta
        if not end_of_day:
            return moment
        day = moment.astimezone(tz).date()
    elif len(raw) == 10:
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise Invalid(f"bad date {text!r}: use YYYY-MM-DD, today or +30d") from None
    if day is not None:
        local = datetime.combine(day, time.max if end_of_day else time.min, tzinfo=tz)
        return local.astimezone(UTC)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Invalid(f"bad date or time {text!r}: use YYYY-MM-DD, an ISO timestamp, today, +30d or -7d") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC)


def iso(moment: datetime | None, tz: ZoneInfo) -> str | None:
    """ISO 8601 with the business time zone's offset, to the second."""
    if moment is None:
        return None
    return moment.astimezone(tz).isoformat(timespec="seconds")


def parse_money(text: str | int | Decimal, minor_digits: int, *, what: str = "amount") -> int:
    """A decimal amount to integer minor units; refuses floats' rounding surprises."""
    try:
        value = Decimal(str(text).strip().replace(",", "")) if not isinstance(text, Decimal) else text
    except InvalidOperation:
        raise Invalid(f"bad {what} {text!r}: use a number such as 19.90") from None
    if not value.is_finite():
        raise Invalid(f"bad {what} {text!r}: use a number such as 19.90")
    scaled = value.scaleb(minor_digits)
    if scaled != scaled.to_integral_value():
        raise Invalid(f"bad {what} {text!r}: at most {minor_digits} decimal places")
    return int(scaled)


def money(minor: int | None, minor_digits: int) -> Decimal | None:
    """Integer minor units to a Decimal with exactly ``minor_digits`` places."""
    if minor is None:
        return None
    return Decimal(int(minor)).scaleb(-minor_digits).quantize(Decimal(1).scaleb(-minor_digits))


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


def normalize_phone(text: str, region: str | None) -> str:
    """E.164 when the number can be read (with ``+`` or a default region), else refused.

    Without a default region, a number that does not start with ``+`` is kept with
    its spacing collapsed, since its country cannot be known.
    """
    candidate = text.strip()
    if not candidate.startswith("+") and not region:
        digits = re.sub(r"[\s().-]+", " ", candidate).strip()
        if not re.fullmatch(r"[0-9 ]{5,20}", digits):
            raise Invalid(f"bad phone {text!r}: use digits, or +country code and number")
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
