"""Limits and budgets: a ``limits`` JSON on keys, teams and users, a key's priority, and USD budgets.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # batch_alter_table: SQLite cannot add columns with every ALTER form; on PostgreSQL it is a plain ALTER.
    for table in ("teams", "users", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("limits", sa.JSON(), nullable=True))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("priority", sa.String(20), nullable=True))
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("period", sa.String(10), nullable=False),
        sa.Column("max_usd", sa.Float(), nullable=False),
        sa.Column("soft_usd", sa.Float(), nullable=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("team_id", sa.String(40), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        # One budget per subject and period: two would leave "which limit wins" to chance.
        sa.UniqueConstraint("scope", "subject", "period", name="uq_budget_subject_period"),
    )
    op.create_index("ix_budgets_team_id", "budgets", ["team_id"])


def downgrade() -> None:
    op.drop_index("ix_budgets_team_id", table_name="budgets")
    op.drop_table("budgets")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("priority")
    for table in ("api_keys", "users", "teams"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("limits")
