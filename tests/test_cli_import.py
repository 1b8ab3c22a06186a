"""`flask --app app import CAMPAIGN_ID FILE.csv` as operators run it, in a real subprocess."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from app.extensions import db
from app.models import Recipient
from tests.test_cli import flask_cli


def recipients(campaign_id: int) -> list[tuple[str, dict[str, str]]]:
    db.session.rollback()
    rows = db.session.execute(
        select(Recipient.email, Recipient.fields)
        .where(Recipient.campaign_id == campaign_id)
        .order_by(Recipient.id)
    )
    return [(email, fields) for email, fields in rows]


def test_import_prints_the_report_and_stores_the_rows(factory, settings_env, tmp_path: Path):
    campaign = factory.create_campaign()
    factory.suppress("gone@example.com")
    path = tmp_path / "contacts.csv"
    path.write_bytes(
        "\ufeffEmail;Vorname\r\nann@example.com;Änne\r\nnope;X\r\nANN@example.com;A\r\n"
        "gone@example.com;G\r\n".encode()
    )
    result = flask_cli(settings_env, "import", str(campaign.id), str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Imported 1 recipients into campaign {campaign.id}."
    assert lines[1] == "Rejected: 1 invalid, 1 duplicate, 1 suppressed."
    assert lines[2] == "Rejected rows:"
    assert lines[3] == "  row 3\tnope\tAn email address must have an @-sign."
    assert lines[4] == "  row 4\tann@example.com\tduplicate of row 2"
    assert lines[5] == "  row 5\tgone@example.com\tthe address is suppressed"
    assert recipients(campaign.id) == [("ann@example.com", {"vorname": "Änne"})]


def test_the_error_list_is_capped_and_says_so(factory, settings_env, tmp_path: Path):
    campaign = factory.create_campaign()
    path = tmp_path / "bad.csv"
    path.write_text("email\n" + "".join(f"bad{i}\n" for i in range(5)) + "ok@example.com\n")
    result = flask_cli(
        {**settings_env, "IMPORT_ERROR_LIMIT": "2"}, "import", str(campaign.id), str(path)
    )
    assert result.returncode == 0, result.stderr
    assert "First 2 of 5 rejected rows:" in result.stdout
    assert result.stdout.count("  row ") == 2


def test_bad_input_exits_non_zero_naming_the_field_and_stores_nothing(
    factory, settings_env, tmp_path: Path
):
    campaign = factory.create_campaign()
    factory.create_recipients(campaign, ["before@example.com"])
    path = tmp_path / "names.csv"
    path.write_text("name,company\nAnn,ACME\n")
    result = flask_cli(settings_env, "import", str(campaign.id), str(path))
    assert result.returncode == 1
    assert "Error: file: the file has no email column" in result.stderr
    assert "nothing was imported" in result.stderr
    assert recipients(campaign.id) == [("before@example.com", {})]


def test_a_file_over_the_row_limit_exits_non_zero(factory, settings_env, tmp_path: Path):
    campaign = factory.create_campaign()
    path = tmp_path / "many.csv"
    path.write_text("email\n" + "".join(f"u{i}@example.com\n" for i in range(11)))
    result = flask_cli(
        {**settings_env, "IMPORT_MAX_ROWS": "10"}, "import", str(campaign.id), str(path)
    )
    assert result.returncode == 1
    assert "file: the file has more than 10 data rows" in result.stderr
    assert recipients(campaign.id) == []


def test_an_unknown_campaign_exits_non_zero(app, settings_env, tmp_path: Path):
    path = tmp_path / "ok.csv"
    path.write_text("email\na@example.com\n")
    result = flask_cli(settings_env, "import", "4242", str(path))
    assert result.returncode == 1
    assert "campaign: campaign 4242 does not exist" in result.stderr


def test_a_missing_file_is_a_usage_error(app, settings_env, tmp_path: Path):
    result = flask_cli(settings_env, "import", "1", str(tmp_path / "missing.csv"))
    assert result.returncode == 2
    assert "missing.csv" in result.stderr
