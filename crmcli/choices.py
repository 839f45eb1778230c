"""The domain's fixed vocabularies: lifecycle stages, interaction kinds, statuses, modes.

Plain tuples in a module that imports nothing, so the CLI can list them in
``--help`` (as Enums, see crmcli/cli/options.py) without loading the database
stack, and the services validate against the same values.
"""

from __future__ import annotations

STAGES = ("lead", "verified", "prospect", "customer", "repeat", "lost")
INTERACTION_KINDS = ("call", "email", "meeting", "visit", "message", "complaint", "survey", "note")
COUPON_STATUSES = ("active", "used", "expired", "void")
REFERRAL_STATUSES = ("pending", "verified", "rejected", "review")
# Referral fraud signals (crmcli/services/signals.py): a blocking one holds the referral for review.
BLOCKING_SIGNALS = ("same_phone", "same_email", "same_household", "disposable_email", "burst", "refunded_purchase")
REFERRAL_SIGNALS = (*BLOCKING_SIGNALS, "no_repeat_purchase")
# What an import does with a row that matches an existing record.
DUPLICATE_MODES = ("skip", "update", "error")
EXPORT_FORMATS = ("csv", "json")
# Segments a --segment option takes: the RFM segments (crmcli/reports/rfm.py names each
# cell) and the churn bands of the predicted value (crmcli/reports/prediction.py).
RFM_SEGMENTS = (
    "Champions",
    "Loyal",
    "Potential Loyalists",
    "New Customers",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "Can't Lose Them",
    "At Risk",
    "Hibernating",
)
CLV_SEGMENTS = ("Low Churn Risk", "Medium Churn Risk", "High Churn Risk", "Valuable but Slipping")
SEGMENTS = (*RFM_SEGMENTS, *CLV_SEGMENTS)
