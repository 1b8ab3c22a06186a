from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db
from app.outages import outages

blp = Blueprint("health", __name__, description="Liveness of the API and its stores")


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})
    database = fields.String(required=True, metadata={"example": "ok"})
    redis = fields.String(required=True, metadata={"example": "ok"})


@blp.route("")
@blp.doc(security=[])
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=HealthSchema, description="PostgreSQL or Redis is down")
def health() -> tuple[dict[str, str], int]:
    result = {"status": "ok", "database": "ok", "redis": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        db.session.rollback()
        outages.failed("database", exc)  # one log line per outage, however often polled
        result["database"] = "down"
    try:
        current_app.extensions["redis"].ping()
    except (RedisError, OSError) as exc:
        outages.failed("redis", exc)
        result["redis"] = "down"
    if "down" in result.values():
        result["status"] = "degraded"
        return result, 503
    return result, 200
