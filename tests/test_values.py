"""The fast paths in crmcli.values accept and reject exactly what the libraries do."""

from __future__ import annotations

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from crmcli.errors import Invalid
from crmcli.values import normalize_email, normalize_phone

ATOMS = st.text(alphabet="abcXYZ019.-_+'%!#", min_size=0, max_size=8)
DOMAIN = st.lists(st.text(alphabet="abz09-", min_size=0, max_size=6), min_size=1, max_size=3).map(".".join)
TLD = st.sampled_from(["com", "io", "CO", "test", "local", "b1", "x", "onion", "xn--p1ai", "museum", ""])


def library_email(text: str) -> str | None:
    try:
        return validate_email(text.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def ours_email(text: str) -> str | None:
    try:
        return normalize_email(text)
    except Invalid:
        return None


@settings(max_examples=3000, deadline=None)
@given(local=ATOMS, domain=DOMAIN, tld=TLD, pad=st.sampled_from(["", " "]))
def test_email_fast_path_agrees_with_email_validator(local: str, domain: str, tld: str, pad: str) -> None:
    text = f"{pad}{local}@{domain}.{tld}{pad}" if tld else f"{local}@{domain}"
    assert ours_email(text) == library_email(text)


@pytest.mark.parametrize(
    "text",
    [
        "Ann@Example.COM",
        "a..b@x.com",
        ".a@x.com",
        "a.@x.com",
        "a@-x.com",
        "a@x-.com",
        "a@x.com.",
        "a@localhost",
        "a@x.test",
        '"quoted"@x.com',
        "a@xn--bcher-kva.ch",
        "a" * 65 + "@x.com",
        "a@" + "b" * 64 + ".com",
        "ä@x.com",
        "a@@x.com",
    ],
)
def test_email_edge_cases_agree(text: str) -> None:
    assert ours_email(text) == library_email(text)


def library_phone(text: str, region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@settings(max_examples=3000, deadline=None)
@given(
    digits=st.one_of(
        st.text(alphabet="0123456789", min_size=6, max_size=16),
        st.text(alphabet="0123456789", min_size=10, max_size=10).map(lambda d: "1" + d),
    ),
    region=st.sampled_from([None, "US", "GB", "CA"]),
)
def test_e164_fast_path_agrees_with_phonenumbers(digits: str, region: str | None) -> None:
    text = "+" + digits
    try:
        ours: str | None = normalize_phone(text, region)
    except Invalid:
        ours = None
    assert ours == library_phone(text, region)
