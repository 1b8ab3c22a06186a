"""SQLAlchemy 2.0 models; PostgreSQL is the source of truth. Schema changes go through
Alembic (app/migrations) only."""

from app.models.accounts import Account, AccountStatus
from app.models.auth import ApiKey, User
from app.models.backoffs import DomainBackoff
from app.models.base import Base
from app.models.blacklist import BlacklistCheck, BlacklistStatus
from app.models.campaigns import OPEN_STATUSES, TRANSITIONS, Campaign, CampaignStatus
from app.models.clients import Client, ClientStatus, UserClient, UserRole
from app.models.events import Event, EventType
from app.models.forecast_snapshots import ForecastSnapshot
from app.models.limits import SCOPES, LimitOverride
from app.models.recipient_counts import RecipientCount
from app.models.recipients import DUE_STATUSES, FINAL_STATUSES, Recipient, RecipientStatus
from app.models.sender_auth import AuthVerdict, SenderAuthCheck
from app.models.suppressions import Suppression, SuppressionKind, SuppressionReason
from app.models.warmup import HealthCheck, RampOutcome, WarmupDay

__all__ = [
    "DUE_STATUSES",
    "FINAL_STATUSES",
    "OPEN_STATUSES",
    "SCOPES",
    "TRANSITIONS",
    "Account",
    "AccountStatus",
    "ApiKey",
    "AuthVerdict",
    "Base",
    "BlacklistCheck",
    "BlacklistStatus",
    "Campaign",
    "CampaignStatus",
    "Client",
    "ClientStatus",
    "DomainBackoff",
    "Event",
    "EventType",
    "ForecastSnapshot",
    "HealthCheck",
    "LimitOverride",
    "RampOutcome",
    "Recipient",
    "RecipientCount",
    "RecipientStatus",
    "SenderAuthCheck",
    "Suppression",
    "SuppressionKind",
    "SuppressionReason",
    "User",
    "UserClient",
    "UserRole",
    "WarmupDay",
]
