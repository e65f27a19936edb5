"""Initial schema: teams, users, API keys, audit log, usage ledger and daily roll-ups.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Timestamps are timezone-aware UTC everywhere.
TS = sa.DateTime(timezone=True)


def _identity() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("models", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("email", sa.String(320), nullable=True, unique=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("team_id", sa.String(40), sa.ForeignKey("teams.id", ondelete="SET NULL"), nullable=True),
        sa.Column("external_id", sa.String(300), nullable=True, unique=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_users_team_id", "users", ["team_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_prefix", sa.String(20), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("team_id", sa.String(40), sa.ForeignKey("teams.id", ondelete="SET NULL"), nullable=True),
        sa.Column("models", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("rotated_from", sa.String(40), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_api_keys_team_id", "api_keys", ["team_id"])
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])


def _audit() -> None:
    op.create_table(
        "audit_log",
        # INTEGER PRIMARY KEY is SQLite's rowid alias, the only way it autoincrements.
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("object_type", sa.String(30), nullable=False),
        sa.Column("object_id", sa.String(60), nullable=False),
        sa.Column("team_id", sa.String(40), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
    )
    op.create_index("ix_audit_log_ts", "audit_log", ["ts"])
    op.create_index("ix_audit_log_team_id", "audit_log", ["team_id"])


def _usage() -> None:
    op.create_table(
        "usage",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("team_id", sa.String(40), nullable=True),
        sa.Column("user_id", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(300), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("dialect", sa.String(20), nullable=False),
        sa.Column("endpoint", sa.String(20), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(100), nullable=True),
        sa.Column("deployment", sa.String(300), nullable=True),
        sa.Column("upstream_model", sa.String(200), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("cost_unknown", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(40), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("fallback", sa.Boolean(), nullable=False),
    )
    # The ledger's query patterns: a time range, optionally narrowed to a key, team, user or model.
    op.create_index("ix_usage_ts", "usage", ["ts"])
    op.create_index("ix_usage_key_ts", "usage", ["key_id", "ts"])
    op.create_index("ix_usage_team_ts", "usage", ["team_id", "ts"])
    op.create_index("ix_usage_user_ts", "usage", ["user_id", "ts"])
    op.create_index("ix_usage_model_ts", "usage", ["model", "ts"])
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("team_id", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(40), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
    )
    op.create_index("ix_usage_daily_team_day", "usage_daily", ["team_id", "day"])


def upgrade() -> None:
    _identity()
    _audit()
    _usage()


def downgrade() -> None:
    for table in ("usage_daily", "usage", "audit_log", "api_keys", "users", "teams"):
        op.drop_table(table)
