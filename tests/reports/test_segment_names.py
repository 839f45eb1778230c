"""The segment names --help and completion offer (crmcli/choices.py, importing nothing) are the
names the reports give, so a segment the help lists is one a report can return."""

from crmcli.choices import CLV_SEGMENTS, RFM_SEGMENTS
from crmcli.reports.prediction import SEGMENTS as CLV_BANDS
from crmcli.reports.rfm import SEGMENT_NAMES


def test_rfm_segments_listed_for_help_are_the_reports_names() -> None:
    assert RFM_SEGMENTS == SEGMENT_NAMES


def test_clv_segments_listed_for_help_are_the_reports_bands() -> None:
    assert CLV_SEGMENTS == tuple(CLV_BANDS)
