"""CSV recipient import: encodings, dialects, validation, dedup, suppression, limits, atomicity."""

from __future__ import annotations

import io
from typing import Any, BinaryIO

import pytest
from sqlalchemy import select

from app.db import unit_of_work
from app.errors import InvalidInput, NotFound, PayloadTooLarge
from app.extensions import db
from app.models import Campaign, Event, Recipient
from app.services.csv_reader import BLOCK_SIZE
from app.services.imports import ImportReport, RowError, import_csv
from app.settings import Settings


def run(
    settings: Settings, campaign_id: int, data: bytes | BinaryIO, **overrides: Any
) -> ImportReport:
    if overrides:
        settings = settings.model_copy(update=overrides)
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    with unit_of_work() as session:
        return import_csv(session, campaign_id, stream, settings)


def stored(campaign_id: int) -> list[tuple[str, str, dict[str, Any], str]]:
    db.session.rollback()
    rows = db.session.execute(
        select(Recipient.email, Recipient.domain, Recipient.fields, Recipient.status)
        .where(Recipient.campaign_id == campaign_id)
        .order_by(Recipient.id)
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


def emails(campaign_id: int) -> list[str]:
    return [row[0] for row in stored(campaign_id)]


def errors(report: ImportReport) -> list[tuple[int, str | None, str]]:
    return [(e.row, e.email, e.reason) for e in report.errors]


@pytest.fixture
def campaign(factory) -> Campaign:
    return factory.create_campaign()


def test_valid_rows_become_pending_recipients_with_their_fields(factory, campaign, settings):
    factory.create_campaign(name="other")  # its field names must not leak
    data = (
        b"Email,First Name,Company,lastName\n"
        b"Ann@Example.COM, Ann ,ACME,\n"
        b"bob@example.org,Bob,,Builder\n"
    )
    report = run(settings, campaign.id, data)
    assert report.as_dict() == {
        "imported": 2,
        "rejected": {"invalid": 0, "duplicate": 0, "suppressed": 0},
        "errors": [],
        "warnings": {"blank_fields": {}, "messages": []},
    }
    assert report.field_names == ["company", "first_name", "last_name"]
    # Every column is a field of every row: an empty cell is "" (so `{{ last_name }}`
    # renders instead of failing at send time); values trimmed.
    assert stored(campaign.id) == [
        (
            "ann@example.com",
            "example.com",
            {"first_name": "Ann", "company": "ACME", "last_name": ""},
            "pending",
        ),
        (
            "bob@example.org",
            "example.org",
            {"first_name": "Bob", "company": "", "last_name": "Builder"},
            "pending",
        ),
    ]
    refreshed = db.session.get(Campaign, campaign.id)
    assert refreshed is not None and refreshed.field_names == ["company", "first_name", "last_name"]


def test_field_names_are_merged_into_the_campaigns_sorted(factory, settings):
    campaign = factory.create_campaign(field_names=["zip", "city"])
    run(settings, campaign.id, b"email,City,Age\na@example.com,Berlin,40\n")
    db.session.rollback()
    assert db.session.get(Campaign, campaign.id).field_names == ["age", "city", "zip"]


def test_an_imported_event_records_the_counts_without_addresses(campaign, settings):
    run(settings, campaign.id, b"email\na@example.com\nnope\na@example.com\n")
    db.session.rollback()
    event = db.session.execute(select(Event)).scalar_one()
    assert (event.type, event.campaign_id) == ("imported", campaign.id)
    assert event.data == {
        "imported": 1,
        "rejected": {"invalid": 1, "duplicate": 1, "suppressed": 0},
        "rows": 3,
    }
    assert "example.com" not in str(event.data)


@pytest.mark.parametrize(
    "header",
    ["Email", "E-mail", "Email Address", "e_mail", "EMAIL", " E-Mail Address ", "emailAddress"],
)
def test_header_variants_find_the_email_column(campaign, settings, header):
    data = f"Name,{header}\nAnn,ann@example.com\n".encode()
    assert run(settings, campaign.id, data).imported == 1
    assert stored(campaign.id)[0][2] == {"name": "Ann"}


def test_headers_become_template_names(campaign, settings):
    data = "email,First Name,Prénom,2nd Line,,if,customerID\na@example.com,1,2,3,4,5,6\n"
    report = run(settings, campaign.id, data.encode())
    assert report.field_names == sorted(
        ["first_name", "prénom", "field_2nd_line", "column_5", "if_", "customer_id"]
    )
    assert stored(campaign.id)[0][2] == {
        "first_name": "1",
        "prénom": "2",
        "field_2nd_line": "3",
        "column_5": "4",
        "if_": "5",
        "customer_id": "6",
    }


def test_utf8_bom_and_semicolons(campaign, settings):
    data = "\ufeffE-Mail;Vorname;Betrag\nanna@example.de;Jörg;12,50\n".encode()
    report = run(settings, campaign.id, data)
    assert report.imported == 1
    assert stored(campaign.id)[0][2] == {"vorname": "Jörg", "betrag": "12,50"}


def test_tab_delimited(campaign, settings):
    data = b"name\temail\tnote\nAnn\tann@example.com\thas, commas; and semicolons\n"
    run(settings, campaign.id, data)
    assert stored(campaign.id)[0][2] == {"name": "Ann", "note": "has, commas; and semicolons"}


def test_latin1_bytes(campaign, settings):
    data = "email,name,city\nm@example.de,Müller,Köln\ne@example.fr,Hélène,€uro\n".encode("cp1252")
    run(settings, campaign.id, data)
    assert [r[2] for r in stored(campaign.id)] == [
        {"name": "Müller", "city": "Köln"},
        {"name": "Hélène", "city": "€uro"},
    ]


def test_a_latin1_line_deep_in_a_utf8_file_loses_nothing(campaign, settings):
    head = "email,name\nzoe@example.com,Zoë\n".encode()
    filler_rows = [f"user{i}@example.com,Ünal {i}\n".encode() for i in range(60_000)]
    late = "late@example.com,Müller\n".encode("latin-1")
    data = head + b"".join(filler_rows) + late
    assert len(head) + sum(map(len, filler_rows)) > BLOCK_SIZE
    report = run(settings, campaign.id, data)
    assert report.imported == 60_002
    rows = stored(campaign.id)
    assert rows[0][2] == {"name": "Zoë"} and rows[-1][2] == {"name": "Müller"}
    assert rows[1000][2] == {"name": "Ünal 999"}


def test_a_multibyte_character_across_the_block_boundary_stays_whole(campaign, settings):
    data = b"email,name\n"
    n = 0
    while len(data) < BLOCK_SIZE - 200:
        n += 1
        data += f"filler{n}@example.com,{'f' * 80}\n".encode()
    pad = b"x" * (BLOCK_SIZE - 1 - len(data) - len(b"a@example.com,"))
    data += b"a@example.com," + pad + "é\nb@example.com,ß\n".encode()
    assert data[BLOCK_SIZE - 1 : BLOCK_SIZE + 1] == "é".encode()
    run(settings, campaign.id, data)
    assert [r[2]["name"][-1] for r in stored(campaign.id)[-2:]] == ["é", "ß"]


def test_crlf_blank_lines_and_spreadsheet_row_numbers(campaign, settings):
    data = (
        b"email,name\r\n"
        b"\r\n"  # row 2, blank
        b"a@example.com,A\r\n"  # row 3
        b",,\r\n"  # row 4, blank in a spreadsheet
        b"not-an-email,B\r\n"  # row 5
        b"\r\n"
    )
    report = run(settings, campaign.id, data)
    assert report.imported == 1
    assert report.rejected["invalid"] == 1
    assert errors(report)[0][:2] == (5, "not-an-email")


def test_quoted_fields_with_delimiters_quotes_and_line_breaks(campaign, settings):
    data = (
        b"email,address,quote\n"
        b'a@example.com,"1 Main St\nSpringfield, USA","She said ""hi"""\n'  # one row: 2
        b'bad,"x\ny\nz",q\n'  # row 3, over three lines
        b'c@example.com,"tab\there \\ back\\slash",\n'
    )
    report = run(settings, campaign.id, data)
    assert report.imported == 2
    assert errors(report)[0][:2] == (3, "bad")
    assert [r[2] for r in stored(campaign.id)] == [
        {"address": "1 Main St\nSpringfield, USA", "quote": 'She said "hi"'},
        {"address": "tab\there \\ back\\slash", "quote": ""},
    ]


def test_classic_mac_line_breaks(campaign, settings):
    run(settings, campaign.id, b"email,name\ra@example.com,A\rb@example.com,B\r")
    assert emails(campaign.id) == ["a@example.com", "b@example.com"]


def test_invalid_addresses_are_reported_with_row_and_reason(campaign, settings):
    data = (
        b"email,name\n"
        b"good@example.com,ok\n"
        b",no address\n"
        b"no-at-sign.example.com,x\n"
        b"two@@example.com,x\n"
        b"dot.@example.com,x\n"
        b"user@localhost,x\n"
        b"user@exa mple.com,x\n"
    )
    report = run(settings, campaign.id, data)
    assert report.imported == 1
    assert report.rejected == {"invalid": 6, "duplicate": 0, "suppressed": 0}
    assert errors(report) == [
        (3, None, "no email address"),
        (4, "no-at-sign.example.com", "An email address must have an @-sign."),
        (5, "two@@example.com", "The part after the @-sign contains invalid characters: '@'."),
        (
            6,
            "dot.@example.com",
            "An email address cannot have a period immediately before the @-sign.",
        ),
        (7, "user@localhost", "The part after the @-sign is not valid. It should have a period."),
        (8, "user@exa mple.com", "The part after the @-sign contains invalid characters: SPACE."),
    ]


def test_rows_with_too_many_values_are_rejected_short_rows_are_padded(campaign, settings):
    data = b"email,name\na@example.com,A,,\nb@example.com,Smith, John\nc@example.com\n"
    report = run(settings, campaign.id, data)
    assert emails(campaign.id) == ["a@example.com", "c@example.com"]
    assert errors(report) == [
        (3, "b@example.com", "the row has 3 values but the header has 2 columns")
    ]


def test_duplicates_in_the_file_keep_the_first_occurrence(campaign, settings):
    data = b"email,n\nAnn@Example.com,1\nbob@example.com,2\nann@EXAMPLE.COM,3\nANN@example.com,4\n"
    report = run(settings, campaign.id, data)
    assert report.rejected == {"invalid": 0, "duplicate": 2, "suppressed": 0}
    assert errors(report) == [
        (4, "ann@example.com", "duplicate of row 2"),
        (5, "ann@example.com", "duplicate of row 2"),
    ]
    assert [(r[0], r[2]) for r in stored(campaign.id)] == [
        ("ann@example.com", {"n": "1"}),
        ("bob@example.com", {"n": "2"}),
    ]


def test_addresses_already_in_the_campaign_are_duplicates_and_stay_unchanged(
    factory, campaign, settings
):
    factory.create_recipients(campaign, ["ann@example.com"], fields={"n": "old"}, status="sent")
    other = factory.create_campaign()
    factory.create_recipients(other, ["bob@example.com"])
    report = run(settings, campaign.id, b"email,n\nANN@example.com,new\nbob@example.com,b\n")
    assert report.imported == 1
    assert errors(report) == [(2, "ann@example.com", "already in this campaign")]
    assert stored(campaign.id) == [
        ("ann@example.com", "example.com", {"n": "old"}, "sent"),
        ("bob@example.com", "example.com", {"n": "b"}, "pending"),
    ]


def test_suppressed_addresses_and_domains_are_rejected(factory, campaign, settings):
    factory.suppress("Gone@Example.com")
    factory.suppress("blocked.org")
    factory.suppress("xn--mnchen-3ya.de")  # suppressed by its IDNA form
    data = (
        b"email\ngone@example.com\nkept@example.com\nanyone@BLOCKED.org\nx@sub.blocked.org\n"
    ) + "y@münchen.de\n".encode()
    report = run(settings, campaign.id, data)
    assert emails(campaign.id) == ["kept@example.com", "x@sub.blocked.org"]
    assert report.rejected == {"invalid": 0, "duplicate": 0, "suppressed": 3}
    assert errors(report) == [
        (2, "gone@example.com", "the address is suppressed"),
        (4, "anyone@blocked.org", "the domain blocked.org is suppressed"),
        (6, "y@münchen.de", "the domain münchen.de is suppressed"),
    ]


def test_a_duplicate_of_a_suppressed_address_counts_as_duplicate(factory, campaign, settings):
    factory.suppress("gone@example.com")
    report = run(settings, campaign.id, b"email\ngone@example.com\nGONE@example.com\n")
    assert report.rejected == {"invalid": 0, "duplicate": 1, "suppressed": 1}


def test_idna_domains_are_stored_as_email_validator_normalises_them(campaign, settings):
    run(settings, campaign.id, b"email\nAnna@XN--MNCHEN-3YA.DE\n")
    assert stored(campaign.id)[0][:2] == ("anna@münchen.de", "münchen.de")


def test_counts_are_exact_and_errors_listed_up_to_the_limit_in_row_order(
    factory, campaign, settings
):
    factory.suppress("s.example")
    factory.create_recipients(campaign, ["old@example.com"])
    lines = ["email"]
    for i in range(1, 301):
        kind = i % 5
        choices = [f"ok{i}@example.com", f"bad{i}", "ok1@example.com", f"x{i}@s.example"]
        lines.append([*choices, "old@example.com"][kind])
    report = run(settings, campaign.id, ("\n".join(lines) + "\n").encode(), import_error_limit=7)
    # ok1 first appears on row 3 (i=2); old@ is in the campaign, then repeats in the file.
    assert report.imported == 61
    assert report.rejected == {"invalid": 60, "duplicate": 119, "suppressed": 60}
    assert sum(report.rejected.values()) + report.imported == 300
    assert errors(report) == [
        (2, "bad1", "An email address must have an @-sign."),
        (4, "x3@s.example", "the domain s.example is suppressed"),
        (5, "old@example.com", "already in this campaign"),
        (7, "bad6", "An email address must have an @-sign."),
        (8, "ok1@example.com", "duplicate of row 3"),
        (9, "x8@s.example", "the domain s.example is suppressed"),
        (10, "old@example.com", "duplicate of row 5"),
    ]
    assert len(emails(campaign.id)) == 62


def test_no_errors_are_listed_when_the_limit_is_zero(campaign, settings):
    report = run(settings, campaign.id, b"email\nbad\n", import_error_limit=0)
    assert report.rejected["invalid"] == 1 and report.errors == []


def test_rejected_address_cells_are_cut_in_the_error_list(campaign, settings):
    long_cell = "x" * 5000
    report = run(settings, campaign.id, f"email\n{long_cell}\n".encode())
    assert report.errors[0].email == "x" * 320 + "…"


# --- bad files: a clear 4xx naming the field, nothing stored ------------------------


def assert_refused(
    settings: Settings, campaign_id: int, data: bytes | BinaryIO, error: type, text: str, **kw: Any
) -> None:
    with pytest.raises(error) as caught:
        run(settings, campaign_id, data, **kw)
    assert caught.value.field == "file"
    assert text in caught.value.message
    assert emails(campaign_id) == ["before@example.com"]
    assert db.session.execute(select(Event)).first() is None


@pytest.fixture
def seeded(factory, campaign) -> Campaign:
    """A campaign with one recipient stored before the import."""
    factory.create_recipients(campaign, ["before@example.com"], fields={"k": "v"})
    return campaign


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", "the file is empty"),
        (b"\n\r\n  \n", "the file is empty"),
        (b"\xef\xbb\xbf", "the file is empty"),
        (b"email,name\n", "header row but no data rows"),
        (b"email,name\n\n,\n", "header row but no data rows"),
    ],
)
def test_empty_and_header_only_files_are_refused(seeded, settings, data, text):
    assert_refused(settings, seeded.id, data, InvalidInput, text)


def test_a_file_without_an_email_column_is_refused_naming_its_columns(seeded, settings):
    assert_refused(
        settings, seeded.id, b"name,company\nAnn,ACME\n", InvalidInput, "has no email column"
    )
    with pytest.raises(InvalidInput, match="'name', 'company'"):
        run(settings, seeded.id, b"name,company\nAnn,ACME\n")


def test_a_file_without_a_header_row_says_so(seeded, settings):
    with pytest.raises(InvalidInput, match="needs a header row"):
        run(settings, seeded.id, b"ann@example.com,Ann\nbob@example.com,Bob\n")


def test_two_email_columns_are_refused(seeded, settings):
    assert_refused(
        settings,
        seeded.id,
        b"Email,E-mail\na@example.com,b@example.com\n",
        InvalidInput,
        "more than one email column ('Email', 'E-mail')",
    )


def test_headers_that_become_the_same_field_are_refused_naming_both(seeded, settings):
    assert_refused(
        settings,
        seeded.id,
        b"email,First Name,first_name\na@example.com,A,B\n",
        InvalidInput,
        "columns 'First Name' and 'first_name' both become the field 'first_name'",
    )


PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (PNG, "a PNG image"),
        (b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 40, ".xlsx"),
        ("email\na@example.com\n".encode("utf-16"), "UTF-16"),
        (b"email\n" + b"a@example.com\n" * 10 + b"b@exa\x00mple.com\n", "NUL bytes"),
    ],
)
def test_binary_files_are_refused(seeded, settings, data, text):
    assert_refused(settings, seeded.id, data, InvalidInput, text)


def test_a_nul_byte_late_in_the_file_undoes_the_rows_before_it(seeded, settings):
    rows = b"".join(f"u{i}@example.com\n".encode() for i in range(100_000))
    assert len(rows) > BLOCK_SIZE
    assert_refused(settings, seeded.id, b"email\n" + rows + b"\x00\n", InvalidInput, "NUL")


def test_a_file_over_the_size_limit_is_refused(seeded, settings):
    data = b"email\n" + b"a@example.com\n" * 100
    assert_refused(
        settings,
        seeded.id,
        data,
        PayloadTooLarge,
        "import limit of 1,000 bytes",
        import_max_bytes=1000,
    )


class Unseekable(io.RawIOBase):
    """A 60 MB upload that arrives as a stream: rows of ~2 KB, made on demand."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.served = 0
        self.largest_read = 0
        self._pending = b"email,notes\n"
        self._n = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        assert size > 0, "the importer must never ask for the whole stream"
        self.largest_read = max(self.largest_read, size)
        while len(self._pending) < size and self.served + len(self._pending) < self.total:
            self._n += 1
            self._pending += f"user{self._n}@example.com,{'n' * 2000}\n".encode()
        chunk, self._pending = self._pending[:size], self._pending[size:]
        self.served += len(chunk)
        return chunk


def test_a_60_mb_stream_is_refused_without_being_read_whole(seeded, settings):
    # The default limit is 200 MB (a million ordinary rows fit); 50 MB here to stay cheap.
    settings = settings.model_copy(update={"import_max_bytes": 50 * 1024 * 1024})
    stream = Unseekable(60 * 1024 * 1024)
    assert_refused(settings, seeded.id, stream, PayloadTooLarge, "import limit of 50 MB")
    assert stream.served <= settings.import_max_bytes + BLOCK_SIZE
    assert stream.largest_read <= BLOCK_SIZE


def test_a_60_mb_file_is_refused_before_it_is_read(seeded, settings, tmp_path):
    path = tmp_path / "big.csv"
    with path.open("wb") as f:
        f.write(b"email\n")
        f.truncate(60 * 1024 * 1024)
    settings = settings.model_copy(update={"import_max_bytes": 50 * 1024 * 1024})
    with path.open("rb") as f:
        assert_refused(settings, seeded.id, f, PayloadTooLarge, "50 MB")
        assert f.tell() == 0


def test_the_row_limit_undoes_every_row_imported_before_it(seeded, settings):
    data = b"email,n\n" + b"".join(f"u{i}@example.com,{i}\n".encode() for i in range(5001))
    assert_refused(
        settings,
        seeded.id,
        data,
        PayloadTooLarge,
        "more than 5,000 data rows",
        import_max_rows=5000,
    )
    assert stored(seeded.id) == [("before@example.com", "example.com", {"k": "v"}, "pending")]


def test_the_row_limit_counts_data_rows_only(campaign, settings):
    data = b"email\n\na@example.com\n\nb@example.com\n"
    assert run(settings, campaign.id, data, import_max_rows=2).imported == 2


def test_an_unknown_campaign_is_not_found(app_context, settings):
    with pytest.raises(NotFound) as caught:
        run(settings, 424242, b"email\na@example.com\n")
    assert caught.value.field == "campaign"
    assert "424242" in caught.value.message


@pytest.mark.parametrize("status", ["completed", "cancelled"])
def test_closed_campaigns_are_refused(factory, settings, status):
    campaign = factory.create_campaign(status=status)
    with pytest.raises(InvalidInput) as caught:
        run(settings, campaign.id, b"email\na@example.com\n")
    assert caught.value.field == "campaign"
    assert status in caught.value.message
    assert emails(campaign.id) == []


@pytest.mark.parametrize("status", ["draft", "running", "paused"])
def test_open_campaigns_accept_recipients(factory, settings, status):
    campaign = factory.create_campaign(status=status)
    assert run(settings, campaign.id, b"email\na@example.com\n").imported == 1


def test_two_imports_in_one_transaction(campaign, settings):
    with unit_of_work() as session:
        first = import_csv(session, campaign.id, io.BytesIO(b"email\na@example.com\n"), settings)
        second = import_csv(
            session, campaign.id, io.BytesIO(b"email\na@example.com\nb@example.com\n"), settings
        )
    assert (first.imported, second.imported) == (1, 1)
    assert second.errors == [RowError(2, "a@example.com", "already in this campaign")]


def test_a_failed_import_leaves_the_session_usable_after_rollback(seeded, settings):
    with pytest.raises(InvalidInput):
        run(settings, seeded.id, b"name\nx\n")
    assert run(settings, seeded.id, b"email\nnew@example.com\n").imported == 1


def test_the_staging_tables_do_not_outlive_the_import(campaign, settings):
    run(settings, campaign.id, b"email\na@example.com\n")
    with unit_of_work() as session:
        count = session.execute(
            select(db.func.count())
            .select_from(db.text("pg_tables"))
            .where(db.text("tablename LIKE 'import_%'"))
        ).scalar_one()
    assert count == 0
