"""Marshmallow schemas of /api/v1: what each endpoint accepts and returns, and the source of
the OpenAPI document. Input schemas RAISE on unknown fields."""
