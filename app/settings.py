"""Typed settings: the only place that reads the process environment.

Names are the environment variables of DESIGN.md ("Settings"). Required values
without a safe default (SECRET_KEY, CREDENTIALS_KEY, COMPANY_ADDRESS) stop the
process at start-up with the variable's name; so do malformed values.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os.path
import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rotator.nameservers import parse_nameservers

DEFAULT_FREEMAIL_DOMAINS = (
    "gmail.com,googlemail.com,outlook.com,hotmail.com,live.com,msn.com,yahoo.com,"
    "ymail.com,aol.com,icloud.com,me.com,mac.com,gmx.com,gmx.de,gmx.net,web.de,"
    "mail.com,proton.me,protonmail.com,zoho.com,yandex.ru,yandex.com,mail.ru,"
    "qq.com,163.com,free.fr,orange.fr,libero.it,t-online.de"
)


# Spamhaus ZEN and DBL, SpamCop, Barracuda, SURBL (DESIGN.md "Warm-up, blacklists, health").
DEFAULT_DNSBL_IP_LISTS = "zen.spamhaus.org,bl.spamcop.net,b.barracudacentral.org"
DEFAULT_DNSBL_DOMAIN_LISTS = "dbl.spamhaus.org,multi.surbl.org"
# Google Workspace, SendGrid (s1, s2), Microsoft 365 (selector1, selector2), common others.
DEFAULT_DKIM_SELECTORS = "google,s1,s2,selector1,selector2,default,dkim,mail,k1"
_DNS_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"(?:{_DNS_LABEL}\.)*{_DNS_LABEL}")


_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!$'*+=^_`{|}~.-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


# The network steps one message may wait on, each bounded by SMTP_TIMEOUT_SECONDS: the idle
# probe (NOOP) and MAIL on a reused connection the server dropped, then the reconnect
# (connect, greeting, EHLO, STARTTLS, TLS handshake, EHLO, AUTH in up to three round trips),
# MAIL, RCPT, DATA, the message bytes and the reply to the final dot.
SMTP_STEPS_PER_MESSAGE = 16


class SettingsError(SystemExit):
    """Raised at start-up when the environment is missing or malformed."""


def _csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    sendfleet_env: Literal["development", "test", "production"] = "development"
    database_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/sendfleet"
    redis_url: str = "redis://127.0.0.1:6379/0"
    celery_broker_url: str | None = None  # defaults to REDIS_URL
    secret_key: SecretStr
    credentials_key: SecretStr
    public_base_url: str = "http://localhost:5000"
    # Web UI sign-in: after this many wrong passwords in a row for one account, or from one
    # client address, each further try waits 2, 4, 8 ... s, up to the maximum.
    login_free_failures_per_account: int = Field(5, ge=1)
    login_free_failures_per_address: int = Field(20, ge=1)
    login_lockout_max_seconds: int = Field(900, ge=1)
    # Reverse proxies in front of the API whose X-Forwarded-For is believed (werkzeug's
    # ProxyFix), so the lock-out keys on the client's address, not the proxy's (which
    # would lock every user out at once). 0: the header is ignored, as it must be when
    # clients reach the API directly (they could pick any address).
    trusted_proxies: int = Field(0, ge=0, le=5)
    # Where the new-campaign wizard keeps an uploaded CSV between its steps (a day at most);
    # unset: <system temp dir>/sendfleet-uploads.
    web_upload_dir: str | None = None
    company_address: str
    # The first client, created by migration 0003, which owns every row that existed before.
    default_client_name: str = Field("default", min_length=1, max_length=200)
    sandbox_smtp_url: str | None = None

    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_api_base: str = "https://api.telegram.org"
    # One Bot API call may take at most this long (connect, send, answer): a Bot API that
    # hangs holds an alert worker for no longer. Failed calls retry with backoff.
    telegram_timeout_seconds: float = Field(5, gt=0, le=60)
    telegram_retries: int = Field(5, ge=0, le=20)
    telegram_retry_backoff_seconds: int = Field(30, ge=1, le=3600)
    sentry_dsn: SecretStr | None = None
    # GET /metrics: when set, only `Authorization: Bearer <token>` may read it.
    metrics_bearer_token: SecretStr | None = None
    # Each scrape-time query of /metrics stops after this (statement_timeout).
    metrics_query_timeout_seconds: float = Field(5, gt=0, le=60)
    # prometheus_client's multiprocess directory (gunicorn.conf.py sets it for the API's
    # workers); read here so the /metrics route knows what the counters do.
    prometheus_multiproc_dir: str | None = None
    dnsbl_nameservers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Blacklist and sender-authentication checks (worker.jobs.blacklist, .domain_checks).
    # Resolvers are IP, IP:PORT or [IPv6]:PORT; the DNSBL ones must share one port (c-ares
    # takes one port for all). Spamhaus refuses public resolvers: use your own.
    dnsbl_ip_lists: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: _csv(DEFAULT_DNSBL_IP_LISTS)
    )
    dnsbl_domain_lists: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: _csv(DEFAULT_DNSBL_DOMAIN_LISTS)
    )
    dnsbl_timeout_seconds: float = Field(5, gt=0, le=60)
    dnsbl_tries: int = Field(2, ge=1, le=10)
    # The own relays' public IPs (Postfix nodes): blacklist-checked, SPF ip4/ip6, PTR.
    sending_ips: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Resolvers for SPF / DKIM / DMARC / MX / PTR; empty: DNSBL_NAMESERVERS, then the system's.
    sender_auth_nameservers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    sender_auth_timeout_seconds: float = Field(5, gt=0, le=60)
    dkim_selectors: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: _csv(DEFAULT_DKIM_SELECTORS)
    )

    limit_system_per_minute: int = Field(100, ge=0)
    limit_account_per_minute: int = Field(10, ge=0)
    limit_sending_domain_per_day: int = Field(2000, ge=0)
    limit_recipient_domain_per_day: int = Field(20, ge=0)
    limit_freemail_per_day: int = Field(1000, ge=0)
    # Every client's own caps unless overridden (PUT /limits/client/<id>); unset: none.
    limit_client_per_minute: int | None = Field(None, ge=0)
    limit_client_per_day: int | None = Field(None, ge=0)
    freemail_domains: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: _csv(DEFAULT_FREEMAIL_DOMAINS)
    )
    dispatch_interval_seconds: float = Field(5, gt=0, le=3600)
    dispatch_batch_size: int = Field(500, ge=1, le=20000)
    dispatch_max_in_flight: int = Field(5000, ge=1)
    send_group_size: int = Field(50, ge=1, le=1000)
    # Rows of a send task claimed in one commit (with the previous group's outcomes): fewer
    # commits per message; a worker killed mid-group leaves at most this many `unknown`.
    # 10: 1.5-1.8x the throughput of 5 (bench/send.py), still a small crash exposure.
    send_claim_group: int = Field(10, ge=1, le=100)
    # Limits on the wire: the dispatcher places each send at a moment every window allows,
    # up to this far ahead (an account's sends evenly spaced across its minute, plus up to
    # SEND_JITTER_SECONDS of random delay each); a worker that reaches a send later than
    # SEND_SLOT_TOLERANCE_SECONDS after its moment gives the place back and the send is
    # placed again. Windows count that tolerance on top of their span, so a send up to
    # that late still keeps every limit as the receiving server counts it.
    dispatch_horizon_seconds: float = Field(30, ge=0, le=300)
    send_jitter_seconds: float = Field(0, ge=0, le=60)
    send_slot_tolerance_seconds: float = Field(1.0, gt=0, le=30)
    send_pacing: bool = True
    # Soft time limit of one send task (a group of up to SEND_GROUP_SIZE messages); the hard
    # limit is a minute more.
    send_task_time_limit_seconds: int = Field(1800, ge=60)
    # A worker's pool process whose resident memory is above this once a task is done is
    # replaced by a fresh fork (Celery's worker_max_memory_per_child; an idle one holds
    # about 100 MB RSS, most of it shared with its parent): a slow leak never grows into
    # the host's memory. 0: never replaced.
    worker_max_memory_per_child_mb: int = Field(512, ge=0)
    retry_delays_seconds: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [300, 900, 3600]
    )
    warmup_start: int = Field(50, ge=1)
    warmup_step: int = Field(50, ge=0)
    # The daily ramp (worker.jobs.warmup) runs at this hour in WARMUP_TIMEZONE and judges
    # the local day before: an account advances only after a day under the bounce rate,
    # with at least WARMUP_MIN_SENDS sends (0: idle days advance too), no blacklist
    # listing, no authentication failure and its domain's SPF and DKIM passing.
    warmup_hour: int = Field(6, ge=0, le=23)
    warmup_timezone: str = "UTC"
    warmup_max_bounce_percent: float = Field(5, gt=0, le=100)
    warmup_min_sends: int = Field(1, ge=0)
    # The daily DNS checks (blacklists, sender authentication) run before the ramp so that
    # it judges fresh results; the daily summary after it. Hours in WARMUP_TIMEZONE.
    daily_checks_hour: int = Field(5, ge=0, le=23)
    daily_summary_hour: int = Field(8, ge=0, le=23)
    # Health checks (worker.jobs.health): every account's SMTP login at this interval; an
    # account whose pause ran out is checked within RESUME_CHECK_INTERVAL_SECONDS and
    # returns only when it passes, else stays paused for another HEALTH_CHECK_INTERVAL.
    health_check_interval_seconds: int = Field(1800, ge=60)
    resume_check_interval_seconds: float = Field(60, gt=0, le=3600)
    health_check_timeout_seconds: float = Field(20, gt=0, le=300)
    health_check_concurrency: int = Field(10, ge=1, le=200)
    health_check_test_send: bool = False  # also send a short message to the account itself
    health_history_days: int = Field(30, ge=1)
    # Two beat processes by mistake: the one holding this Redis lock schedules; the other
    # waits and takes over when the lock's holder stops renewing it for this long.
    beat_lock_timeout_seconds: int = Field(30, ge=2, le=3600)
    failures_before_pause: int = Field(3, ge=1)
    failure_pause_seconds: int = Field(86400, ge=60)
    policy_pause_seconds: int = Field(86400, ge=60)
    # Refusals by what they are about (worker.jobs.outcomes): a recipient handed back by an
    # account-level refusal goes to another account at most this many times (and never more
    # often than its campaign has accounts), then fails with the last reply.
    max_handbacks: int = Field(3, ge=0, le=20)
    # A receiving domain that greylists or throttles gets nothing for this long, doubling
    # with each refusal after the back-off ended, up to the maximum.
    domain_backoff_seconds: int = Field(60, ge=1)
    domain_backoff_max_seconds: int = Field(3600, ge=1)
    # Campaign guard: content refusals from this many accounts, or this many in all, since
    # the campaign was last started or resumed (and within the window), pause the campaign.
    content_guard_accounts: int = Field(2, ge=1)
    content_guard_refusals: int = Field(5, ge=1)
    content_guard_window_seconds: int = Field(86400, ge=60)
    # Account guard: of the account's last N recipient outcomes (within an hour), this many
    # refused across this many recipient domains is the account's problem: pause it.
    account_refusal_window: int = Field(10, ge=2, le=1000)
    account_refusal_threshold: int = Field(8, ge=1)
    account_refusal_domains: int = Field(3, ge=1)
    # Rate guards (worker.jobs.rate_guards): a campaign, an account or a client's sending
    # domain whose last GUARD_WINDOW_SENDS final outcomes (sent, bounced, failed; since it
    # was started or resumed and within GUARD_WINDOW_SECONDS) number at least
    # GUARD_MIN_SENDS and are over the bounce or failure rate (percent) is paused.
    guard_bounce_rate_percent: float = Field(10, gt=0, le=100)
    guard_failure_rate_percent: float = Field(10, gt=0, le=100)
    guard_min_sends: int = Field(20, ge=1)
    guard_window_sends: int = Field(500, ge=1, le=100_000)
    guard_window_seconds: int = Field(86400, ge=60)
    # Alert once a UTC day when an account has used this share of its cap today.
    guard_cap_alert_percent: float = Field(80, gt=0, le=100)
    # Only for `sending` rows with no recorded holder (written by an older version): a held
    # row is judged by its holder's heartbeat, never by its age.
    send_lease_seconds: int = Field(600, ge=1)
    # Only for `queued` rows no send process has started on (the task is still in the broker),
    # counted from the moment the send was placed at (it may be placed ahead).
    queued_stale_seconds: int = Field(300, ge=1)
    recovery_interval_seconds: float = Field(15, gt=0)
    heartbeat_interval_seconds: float = Field(5, gt=0, le=300)
    heartbeat_ttl_seconds: float = Field(15, gt=0, le=3600)
    alert_dedup_seconds: int = Field(3600, ge=0)
    # The mailto part of List-Unsubscribe, only for a mailbox the operator owns; unset: none.
    unsubscribe_mailbox: str | None = None

    smtp_timeout_seconds: float = Field(30, gt=0, le=600)
    # Certificates to trust for SMTP TLS besides the system's (a PEM bundle): an own relay
    # or a test server with a private CA or a self-signed certificate.
    smtp_ca_file: str | None = None
    smtp_idle_seconds: float = Field(60, gt=0)
    # Open SMTP connections of one process: to one server (many accounts share a relay,
    # which serves a limited number of clients at once: Postfix 100 by default, for every
    # process of every node), and in all. The least recently used idle one makes room.
    smtp_max_connections_per_host: int = Field(8, ge=1, le=1000)
    smtp_max_connections: int = Field(100, ge=1, le=10000)

    # Uploads over HTTP only (the CLI reads local files, bounded by rows): 1,000,000 rows of
    # five ordinary columns are ~60 MB, wide exports (Google, Outlook: 30-90 columns) 2-3x.
    import_max_bytes: int = Field(200 * 1024 * 1024, ge=1)
    # JSON bodies are parsed whole into memory (~10x their size), so they keep their own,
    # smaller cap; more recipients go as CSV.
    api_max_json_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    # Per rendered template (subject, text, HTML); at creation and at every send.
    template_max_output_chars: int = Field(2_000_000, ge=10_000, le=50_000_000)
    template_max_render_seconds: float = Field(1.0, gt=0, le=60)
    import_max_rows: int = Field(1_000_000, ge=1)
    import_check_mx: bool = False
    import_error_limit: int = Field(100, ge=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator(
        "freemail_domains",
        "dnsbl_nameservers",
        "dnsbl_ip_lists",
        "dnsbl_domain_lists",
        "sending_ips",
        "sender_auth_nameservers",
        "dkim_selectors",
        mode="before",
    )
    @classmethod
    def _split_names(cls, value: object) -> object:
        parts = _csv(value)
        return [p.lower() for p in parts] if isinstance(parts, list) else parts

    @field_validator("dnsbl_nameservers", "sender_auth_nameservers")
    @classmethod
    def _resolvers(cls, value: list[str]) -> list[str]:
        return [str(ns) for ns in parse_nameservers(value)]

    @field_validator("dnsbl_nameservers")
    @classmethod
    def _one_dnsbl_port(cls, value: list[str]) -> list[str]:
        if len({ns.port for ns in parse_nameservers(value)}) > 1:
            raise ValueError("every DNSBL resolver must use the same port")
        return value

    @field_validator("sending_ips")
    @classmethod
    def _ip_addresses(cls, value: list[str]) -> list[str]:
        try:
            return [str(ipaddress.ip_address(ip)) for ip in value]
        except ValueError as exc:
            raise ValueError(f"must be comma-separated IP addresses ({exc})") from None

    @field_validator("dnsbl_ip_lists", "dnsbl_domain_lists", "dkim_selectors")
    @classmethod
    def _dns_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _DNS_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a DNS name")
        return value

    @field_validator("retry_delays_seconds", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        return _csv(value)

    @field_validator("retry_delays_seconds")
    @classmethod
    def _positive_delays(cls, value: list[int]) -> list[int]:
        if not value or any(v <= 0 for v in value):
            raise ValueError("must be a comma-separated list of positive seconds")
        return value

    @field_validator("credentials_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr) -> SecretStr:
        try:
            raw = base64.urlsafe_b64decode(value.get_secret_value().encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ValueError(
                "must be a Fernet key (32 url-safe base64-encoded bytes); make one with: "
                "python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        if value.startswith("postgres://"):
            value = "postgresql://" + value[len("postgres://") :]
        return value

    @field_validator("redis_url", "celery_broker_url")
    @classmethod
    def _redis_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// URL")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("company_address")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty: every message carries the postal address")
        return value.strip()

    @field_validator("warmup_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name like Europe/Berlin)"
            ) from None
        return value

    @field_validator("smtp_ca_file")
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not os.path.isfile(value):
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("unsubscribe_mailbox")
    @classmethod
    def _mailbox_address(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        # It goes into a mailto: URL in a header: a plain ASCII address, nothing to escape.
        if not _PLAIN_ADDRESS.fullmatch(value):
            raise ValueError("must be an e-mail address (ASCII, like unsubscribe@example.com)")
        return value

    @model_validator(mode="after")
    def _https_in_production(self) -> Settings:
        # RFC 8058 one-click unsubscribe URLs must be https; only a local sandbox may use http.
        if self.sendfleet_env == "production" and not self.public_base_url.startswith("https://"):
            raise ValueError("PUBLIC_BASE_URL must be https:// in production (RFC 8058)")
        return self

    @model_validator(mode="after")
    def _timings_agree(self) -> Settings:
        # A heartbeat that may expire between two refreshes would declare a live send lost.
        if self.heartbeat_ttl_seconds < 2 * self.heartbeat_interval_seconds:
            raise ValueError(
                f"HEARTBEAT_TTL_SECONDS ({self.heartbeat_ttl_seconds:g}) must be at least twice "
                f"HEARTBEAT_INTERVAL_SECONDS ({self.heartbeat_interval_seconds:g})"
            )
        # One message may legitimately take this long before any timeout fires; a shorter
        # lease would call a send that is still running lost.
        needed = self.smtp_timeout_seconds * SMTP_STEPS_PER_MESSAGE
        if self.send_lease_seconds < needed:
            raise ValueError(
                f"SEND_LEASE_SECONDS ({self.send_lease_seconds}) must be at least "
                f"SMTP_TIMEOUT_SECONDS ({self.smtp_timeout_seconds:g}) x "
                f"{SMTP_STEPS_PER_MESSAGE} steps of one message = {needed:g}"
            )
        return self

    @model_validator(mode="after")
    def _guard_window_holds_the_minimum(self) -> Settings:
        # A window smaller than the minimum could never hold enough sends to judge.
        if self.guard_window_sends < self.guard_min_sends:
            raise ValueError(
                f"GUARD_WINDOW_SENDS ({self.guard_window_sends}) must be at least "
                f"GUARD_MIN_SENDS ({self.guard_min_sends})"
            )
        return self

    def is_freemail(self, domain: str) -> bool:
        return domain in self.freemail_domains


def load_settings(**overrides: object) -> Settings:
    """Reads the environment once; a bad or missing value exits naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            problem = "is required" if err["type"] == "missing" else err["msg"]
            if not err["loc"]:  # a rule across variables: its message names them
                lines.append(f"  {problem.removeprefix('Value error, ')}")
                continue
            lines.append(f"  {str(err['loc'][0]).upper()}: {problem}")
        raise SettingsError("Sendfleet configuration error:\n" + "\n".join(lines)) from None
