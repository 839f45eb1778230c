"""Named groups of customers for 'customer list --segment' and 'coupon issue --segment':
the RFM segments, the churn-risk bands and 'Valuable but Slipping'."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from crmcli.config import Config
from crmcli.errors import Invalid
from crmcli.reports.prediction import SEGMENTS as CLV_SEGMENTS
from crmcli.reports.prediction import customers_in_clv_segment, find_clv_segment
from crmcli.reports.rfm import SEGMENT_NAMES
from crmcli.reports.rfm import customers_in_segment as customers_in_rfm_segment
from crmcli.values import utcnow


def customers_in_segment(*, session: Session, config: Config, segment: str, as_of: datetime | None = None) -> list[int]:
    """Ids of the live customers in a segment; names match without regard to case or punctuation."""
    if find_clv_segment(segment) is not None:
        return customers_in_clv_segment(session=session, config=config, segment=segment, as_of=as_of or utcnow())
    try:
        return customers_in_rfm_segment(session=session, segment=segment, as_of=as_of)
    except Invalid:
        names = ", ".join((*SEGMENT_NAMES, *CLV_SEGMENTS))
        raise Invalid(f"unknown segment {segment!r}: use one of {names}") from None
