"""crmcli.choices is where the fixed vocabularies live; the modules that check them agree with it."""

from __future__ import annotations

from crmcli import choices
from crmcli.config import STAGES
from crmcli.io.importing import DUPLICATE_MODES
from crmcli.services import coupons, interactions, referrals


def test_the_modules_check_against_the_same_values() -> None:
    assert STAGES == choices.STAGES
    assert interactions.KINDS == choices.INTERACTION_KINDS
    assert coupons.STATUSES == choices.COUPON_STATUSES
    assert referrals.STATUSES == choices.REFERRAL_STATUSES
    assert DUPLICATE_MODES == choices.DUPLICATE_MODES
