from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from crmcli.config import Config, database_target, load_config, parse_config
from crmcli.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_documents_exactly_the_defaults() -> None:
    raw = yaml.safe_load((ROOT / "config.example.yaml").read_text(encoding="utf-8"))
    assert parse_config(raw) == Config()
    assert set(raw) == set(Config.model_fields)


def test_every_key_in_the_example_is_commented() -> None:
    text = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    for key in Config.model_fields:
        assert f"{key}:" in text


def test_no_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config() == Config()


def test_values_are_typed(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("timezone: Asia/Shanghai\npoints: {per_currency_unit: 0.5}\n")
    config = load_config(file)
    assert config.timezone == "Asia/Shanghai"
    assert config.points.per_currency_unit == Decimal("0.5")
    assert config.points.per_month_of_tenure == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour: blue\n", "unknown key 'colour'"),
        ("points: {per_month: 3}\n", "unknown key 'points.per_month'"),
        ("timezone: Mars/Olympus\n", "bad value for 'timezone'"),
        ("sla: {complaint_first_response_minutes: soon}\n", "'sla.complaint_first_response_minutes'"),
        ("followup: {lead: -1}\n", "'followup.lead'"),
        ("tiers: []\n", "'tiers'"),
        ("default_phone_region: XX\n", "'default_phone_region'"),
        ("number_format: comma\n", "bad value for 'number_format': Input should be 'decimal_point' or 'decimal_comma'"),
        ("date_order: dym\n", "bad value for 'date_order'"),
        ("referrals: {reward_referrer: {percent: 10, points: 5}}\n", "'referrals.reward_referrer'"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("timezone: [unclosed\n", "not valid YAML at line"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert message in str(info.value)
    assert str(file) in str(info.value)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")


def test_precedence_flag_env_file_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config(database=str(tmp_path / "file.db"))
    assert database_target("flag.db", config) == "flag.db"
    monkeypatch.setenv("CRMCLI_DB", "env.db")
    assert database_target(None, config) == "env.db"
    monkeypatch.delenv("CRMCLI_DB")
    assert database_target(None, config) == str(tmp_path / "file.db")
    assert database_target(None, Config()).endswith("crm.db")


def test_env_config_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("timezone: Europe/Paris\n")
    monkeypatch.setenv("CRMCLI_CONFIG", str(file))
    assert load_config().timezone == "Europe/Paris"


def test_cli_reports_bad_config_in_one_line(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    file = tmp_path / "c.yaml"
    file.write_text("colour: blue\n")
    cli.config_path = file
    result = cli("customer", "list")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"Error: {file}: unknown key 'colour'"]
    assert "Traceback" not in result.stderr


def test_lock_timeout_and_backups_keys() -> None:
    from crmcli.config import parse_config

    config = parse_config({"lock_timeout_seconds": 120, "backups": {"keep": 5}})
    assert (config.lock_timeout_seconds, config.backups.keep) == (120, 5)
    assert (Config().lock_timeout_seconds, Config().backups.keep) == (60, 3)
    with pytest.raises(ConfigError, match="lock_timeout_seconds"):
        parse_config({"lock_timeout_seconds": 0})
    with pytest.raises(ConfigError, match="backups.keep"):
        parse_config({"backups": {"keep": 0}})


def test_supported_regions_are_those_of_phonenumbers() -> None:
    """The region check reads phonenumbers' metadata files instead of importing it: the same answer."""
    import string

    import phonenumbers

    from crmcli.config import supported_region

    codes = [a + b for a in string.ascii_uppercase for b in string.ascii_uppercase]
    assert {c for c in codes if supported_region(c)} == set(phonenumbers.SUPPORTED_REGIONS)
    assert not supported_region("001") and not supported_region("us") and not supported_region("")
