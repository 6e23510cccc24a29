"""Writes in one round trip: procedures that write, commit, and return the commit's LSN.

A PUT used to take four round trips (BEGIN, the upsert, COMMIT, then `SELECT
pg_current_wal_lsn()` for the consistency token). A procedure called outside a transaction
block may COMMIT itself and read the WAL position after that, so one prepared CALL does it all.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The token's LSN must be at or after the commit record, so that a replica that has replayed
# it has the write. After COMMIT has flushed that record, the WAL write position is past it;
# synchronous_commit = off would let COMMIT return before the flush, so a session that turned
# it off gets `local` (a flush of its own WAL) for this one commit. Stronger levels stay.
PUT = """
CREATE PROCEDURE c50k_put_item(
    item_id bigint, item_body text, INOUT commit_lsn pg_lsn DEFAULT NULL
)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO items (id, body) VALUES (item_id, item_body)
    ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, updated_at = now();
    IF current_setting('synchronous_commit') = 'off' THEN
        SET LOCAL synchronous_commit = local;
    END IF;
    COMMIT;
    commit_lsn := pg_current_wal_lsn();
END
$$
"""

DELETE = """
CREATE PROCEDURE c50k_delete_item(
    item_id bigint, INOUT deleted boolean DEFAULT NULL, INOUT commit_lsn pg_lsn DEFAULT NULL
)
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM items WHERE id = item_id;
    deleted := FOUND;
    IF current_setting('synchronous_commit') = 'off' THEN
        SET LOCAL synchronous_commit = local;
    END IF;
    COMMIT;
    commit_lsn := pg_current_wal_lsn();
END
$$
"""


def upgrade() -> None:
    op.execute(PUT)
    op.execute(DELETE)


def downgrade() -> None:
    op.execute("DROP PROCEDURE c50k_delete_item(bigint, boolean, pg_lsn)")
    op.execute("DROP PROCEDURE c50k_put_item(bigint, text, pg_lsn)")
