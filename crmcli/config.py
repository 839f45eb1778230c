"""Typed configuration: YAML file validated into a model, flags and env on top.

Precedence for the file: ``--config`` > ``CRMCLI_CONFIG`` > ``config.yaml`` in the
user config directory > built-in defaults. Precedence for the database:
``--db`` > ``CRMCLI_DB`` > ``database`` in the file > ``crm.db`` in the user data dir.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crmcli.choices import STAGES as STAGES  # re-exported: the services import it from here
from crmcli.errors import ConfigError

APP_NAME = "crmcli"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Currency(_Strict):
    code: Annotated[str, Field(min_length=3, max_length=3)] = "USD"
    minor_digits: Annotated[int, Field(ge=0, le=4)] = 2


class Points(_Strict):
    per_currency_unit: Annotated[Decimal, Field(ge=0)] = Decimal("0.1")
    per_month_of_tenure: Annotated[int, Field(ge=0)] = 1
    value_per_point: Annotated[Decimal, Field(ge=0)] = Decimal("0.01")
    reset_on_late_payment: bool = True
    # Earned points expire, oldest first, at the end of the day they reach this age (None: never).
    expire_after_days: Annotated[int | None, Field(gt=0, le=36500)] = None


class Tier(_Strict):
    name: Annotated[str, Field(min_length=1)]
    min_spend: Annotated[Decimal, Field(ge=0)]


class Reward(_Strict):
    percent: Annotated[Decimal | None, Field(gt=0, le=100)] = None
    amount: Annotated[Decimal | None, Field(gt=0)] = None
    points: Annotated[int | None, Field(gt=0)] = None
    expires_in_days: Annotated[int, Field(gt=0)] = 90

    @model_validator(mode="after")
    def _one_kind(self) -> Reward:
        given = [k for k in ("percent", "amount", "points") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of percent, amount or points")
        return self


class CampaignReward(Reward):
    """A reward the daily job gives, as coupons of a campaign (so its budget applies) or points."""

    campaign: Annotated[str, Field(min_length=1, max_length=80)] = "apology"


class BirthdayReward(CampaignReward):
    campaign: Annotated[str, Field(min_length=1, max_length=80)] = "birthday"
    days_before: Annotated[int, Field(ge=0, le=60)] = 7  # given this many days ahead (0: on the day)


class Referrals(_Strict):
    qualifying_purchase: Annotated[Decimal, Field(ge=0)] = Decimal(0)
    reward_referrer: Reward = Reward(percent=Decimal(10))
    reward_referred: Reward = Reward(percent=Decimal(10))
    # Rewards wait until the qualifying purchase has stood this many days unrefunded (the daily job).
    hold_days: Annotated[int, Field(ge=0, le=365)] = 0
    # More referrals than this from one referrer within an hour is a fraud signal.
    max_per_hour: Annotated[int, Field(gt=0)] = 5


class Followup(_Strict):
    lead: Annotated[int, Field(gt=0)] = 2
    verified: Annotated[int, Field(gt=0)] = 3
    prospect: Annotated[int, Field(gt=0)] = 7
    customer: Annotated[int, Field(gt=0)] = 30
    repeat: Annotated[int, Field(gt=0)] = 60
    lost: Annotated[int, Field(gt=0)] = 180


class Sla(_Strict):
    complaint_first_response_minutes: Annotated[int, Field(gt=0)] = 10
    complaint_resolution_hours: Annotated[Decimal, Field(gt=0)] = Decimal(4)
    breach_reward: CampaignReward | None = None  # an apology per complaint past a deadline (None: none)


class Payment(_Strict):
    big_customer_top_share: Annotated[Decimal, Field(gt=0, lt=1)] = Decimal("0.2")
    good_payer_on_time_ratio: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.9")


class Clv(_Strict):
    """Predicted value (``report clv``): the horizon, the data the model needs, the churn bands."""

    horizon_days: Annotated[int, Field(gt=0, le=3650)] = 365
    min_repeat_customers: Annotated[int, Field(ge=10)] = 50
    min_history_days: Annotated[int, Field(ge=1)] = 90
    churn_risk_medium: Annotated[Decimal, Field(gt=0, lt=1)] = Decimal("0.25")
    churn_risk_high: Annotated[Decimal, Field(gt=0, lt=1)] = Decimal("0.5")
    valuable_top_share: Annotated[Decimal, Field(gt=0, lt=1)] = Decimal("0.2")

    @model_validator(mode="after")
    def _bands_in_order(self) -> Clv:
        if self.churn_risk_medium >= self.churn_risk_high:
            raise ValueError("churn_risk_medium must be below churn_risk_high")
        return self


class Backups(_Strict):
    keep: Annotated[int, Field(ge=1)] = 3  # automatic backups kept next to a SQLite database


def _default_tiers() -> list[Tier]:
    return [
        Tier(name="bronze", min_spend=Decimal(0)),
        Tier(name="silver", min_spend=Decimal(1000)),
        Tier(name="gold", min_spend=Decimal(5000)),
    ]


def supported_region(region: str) -> bool:
    """phonenumbers knows the region (``region`` in ``phonenumbers.SUPPORTED_REGIONS``), told
    from its per-region metadata files without importing it: importing phonenumbers costs
    every command a tenth of a second, and only the commands that read phones need it."""
    from importlib.util import find_spec

    spec = find_spec("phonenumbers")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        data = Path(folder) / "data"
        if data.is_dir():
            plain = len(region) == 2 and region.isascii() and region.isalpha()
            return plain and (data / f"region_{region}.py").is_file()
    import phonenumbers  # another layout: ask it

    return region in phonenumbers.SUPPORTED_REGIONS


class Config(_Strict):
    database: str | None = None
    timezone: str = "UTC"
    currency: Currency = Currency()
    default_phone_region: str | None = None
    number_format: Literal["decimal_point", "decimal_comma"] = "decimal_point"
    date_order: Literal["ymd", "dmy", "mdy"] = "ymd"
    points: Points = Points()
    tiers: list[Tier] = Field(default_factory=_default_tiers)
    referrals: Referrals = Referrals()
    birthday_reward: BirthdayReward | None = None  # None: no birthday rewards
    followup: Followup = Followup()
    sla: Sla = Sla()
    payment: Payment = Payment()
    clv: Clv = Clv()
    lock_timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    backups: Backups = Backups()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("default_phone_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        region = value.upper()
        if not supported_region(region):
            raise ValueError(f"unknown region {value!r}; use a two-letter code such as US or GB")
        return region

    @field_validator("tiers")
    @classmethod
    def _tiers_sorted(cls, tiers: list[Tier]) -> list[Tier]:
        if not tiers:
            raise ValueError("at least one tier is needed")
        return sorted(tiers, key=lambda t: t.min_spend)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def decimal_comma(self) -> bool:
        return self.number_format == "decimal_comma"


def _format_error(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'"
    message = err["msg"].removeprefix("Value error, ")
    return f"{source}: bad value for '{key}': {message}"


def user_config_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME)) / "config.yaml"


def user_data_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME)) / "crm.db"


def parse_config(raw: Any, source: str = "config") -> Config:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the config file chosen by precedence, or the defaults when there is none."""
    explicit = path or os.environ.get("CRMCLI_CONFIG")
    file = Path(explicit) if explicit else user_config_path()
    if not explicit and not file.exists():
        return Config()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot read config file {file}: {reason}") from None
    import yaml  # only with a file to read: PyYAML costs a command a hundredth of a second to load

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {file} is not valid YAML{where}") from None
    return parse_config(raw, str(file))


def database_target(flag: str | None, config: Config) -> str:
    """The database path or URL chosen by precedence.

    The default file's folder is created on first use; a folder the user named must exist.
    """
    chosen = flag or os.environ.get("CRMCLI_DB") or config.database
    if chosen:
        return chosen
    default = user_data_path()
    try:
        default.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the data folder {default.parent}: {exc.strerror}") from None
    return str(default)
