"""Flask CLI: `flask --app app keys|clients|users|import|dev ...` (`db`: Flask-Migrate)."""

from __future__ import annotations

from flask import Flask


def register_cli(app: Flask) -> None:
    from app.cli.clients import clients
    from app.cli.dev import dev
    from app.cli.imports import import_command
    from app.cli.keys import keys
    from app.cli.users import users

    app.cli.add_command(keys)
    app.cli.add_command(clients)
    app.cli.add_command(users)
    app.cli.add_command(import_command)
    app.cli.add_command(dev)
