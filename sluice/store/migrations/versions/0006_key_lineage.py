"""Keys: the lineage a rotated key belongs to, so its limits' windows and its budgets carry over.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("lineage", sa.String(40), nullable=True))
    op.create_index("ix_api_keys_lineage", "api_keys", ["lineage"])
    # Keys rotated before this revision: follow rotated_from back to the first key of the chain.
    keys = sa.table("api_keys", sa.column("id", sa.String), sa.column("rotated_from", sa.String),
                    sa.column("lineage", sa.String))
    bind = op.get_bind()
    parent = {row.id: row.rotated_from for row in bind.execute(sa.select(keys.c.id, keys.c.rotated_from))}
    for key_id, rotated_from in parent.items():
        if rotated_from is None:
            continue
        root, seen = rotated_from, {key_id}
        while parent.get(root) is not None and root not in seen:  # a missing parent or a cycle ends the walk
            seen.add(root)
            root = parent[root]
        bind.execute(keys.update().where(keys.c.id == key_id).values(lineage=root))


def downgrade() -> None:
    op.drop_index("ix_api_keys_lineage", table_name="api_keys")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("lineage")
