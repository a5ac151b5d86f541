"""Exact row counts kept by triggers, so a list's `total` is not a scan.

`row_counts` holds the list totals (live users, active live users, posts of
live authors); `post_counts` holds each user's post count and whether the user
is live (the lock that keeps `posts_visible` exact when a post and its
author's soft delete race). No foreign key: the users triggers keep it, and a
million seeded users would pay a key check each. Triggers update both in the writing transaction,
so a count commits or rolls back with the rows it counts.

PostgreSQL: each backend adds to its own `row_counts` row (shard = its pid),
so concurrent writers never wait on one hot counter row; a backend's first
write folds the rows of backends that are gone into its own. Inserts and
deletes are counted per statement (transition tables: one counter update for a
million seeded rows), updates per row, only when they change what is counted.

SQLite (the embedded default, one writer at a time): one row per counter and
row-level triggers. A later migration that rebuilds `users` or `posts` in
batch mode there drops these triggers and must create them again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = ("users_live", "users_active", "posts_visible")

BACKFILL = (
    """
    INSERT INTO post_counts (author_id, posts, author_live)
    SELECT u.id, (SELECT count(*) FROM posts p WHERE p.author_id = u.id),
           u.deleted_at IS NULL
    FROM users u
    """,
    """
    INSERT INTO row_counts (name, shard, n)
    SELECT 'users_live', 0, count(*) FROM users WHERE deleted_at IS NULL
    UNION ALL
    SELECT 'users_active', 0, count(*) FROM users
    WHERE deleted_at IS NULL AND is_active
    UNION ALL
    SELECT 'posts_visible', 0, count(*) FROM posts p
    JOIN users u ON u.id = p.author_id WHERE u.deleted_at IS NULL
    """,
)

POSTGRESQL = (
    # Shard 0 (the backfill) is never a live backend's pid: the first write folds it.
    """
    CREATE FUNCTION row_count_add(counter text, delta bigint) RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
        IF delta = 0 THEN
            RETURN;
        END IF;
        UPDATE row_counts SET n = n + delta
        WHERE name = counter AND shard = pg_backend_pid();
        IF NOT FOUND THEN
            WITH folded AS (
                DELETE FROM row_counts
                WHERE name = counter AND shard IN (
                    SELECT r.shard FROM row_counts r
                    WHERE r.name = counter AND NOT EXISTS (
                        SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.shard)
                    FOR UPDATE OF r SKIP LOCKED)
                RETURNING n)
            INSERT INTO row_counts (name, shard, n)
            SELECT counter, pg_backend_pid(), delta + coalesce(sum(n), 0)
            FROM folded;
        END IF;
    END $$
    """,
    """
    CREATE FUNCTION users_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        sign bigint := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
        live bigint;
        active bigint;
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO post_counts (author_id, posts, author_live)
            SELECT id, 0, deleted_at IS NULL FROM new_rows;
            SELECT count(*) FILTER (WHERE deleted_at IS NULL),
                   count(*) FILTER (WHERE deleted_at IS NULL AND is_active)
            INTO live, active FROM new_rows;
        ELSE
            -- A user's posts are gone before the user (posts_author_id_fkey).
            DELETE FROM post_counts c USING old_rows o WHERE c.author_id = o.id;
            SELECT count(*) FILTER (WHERE deleted_at IS NULL),
                   count(*) FILTER (WHERE deleted_at IS NULL AND is_active)
            INTO live, active FROM old_rows;
        END IF;
        PERFORM row_count_add('users_live', sign * live);
        PERFORM row_count_add('users_active', sign * active);
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER users_count_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION users_count_rows()
    """,
    """
    CREATE TRIGGER users_count_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION users_count_rows()
    """,
    """
    CREATE FUNCTION users_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        was_live boolean := OLD.deleted_at IS NULL;
        now_live boolean := NEW.deleted_at IS NULL;
        sign bigint := CASE WHEN NEW.deleted_at IS NULL THEN 1 ELSE -1 END;
        author_posts bigint;
    BEGIN
        IF was_live <> now_live THEN
            -- Locks the author's post_counts row: a post inserted concurrently
            -- waits, then sees author_live as this transaction left it.
            UPDATE post_counts SET author_live = now_live
            WHERE author_id = NEW.id RETURNING posts INTO author_posts;
            PERFORM row_count_add('users_live', sign);
            PERFORM row_count_add('posts_visible', sign * coalesce(author_posts, 0));
        END IF;
        PERFORM row_count_add(
            'users_active',
            (now_live AND NEW.is_active)::int - (was_live AND OLD.is_active)::int);
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER users_count_update AFTER UPDATE OF deleted_at, is_active ON users
    FOR EACH ROW
    WHEN ((OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)
          OR OLD.is_active <> NEW.is_active)
    EXECUTE FUNCTION users_count_update()
    """,
    """
    CREATE FUNCTION posts_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        visible bigint;
    BEGIN
        IF TG_OP = 'INSERT' THEN
            WITH per_author AS (
                SELECT author_id, count(*) AS n FROM new_rows GROUP BY author_id),
            counted AS (
                UPDATE post_counts c SET posts = c.posts + p.n FROM per_author p
                WHERE c.author_id = p.author_id RETURNING c.author_live, p.n)
            SELECT coalesce(sum(n) FILTER (WHERE author_live), 0) INTO visible
            FROM counted;
        ELSE
            WITH per_author AS (
                SELECT author_id, count(*) AS n FROM old_rows GROUP BY author_id),
            counted AS (
                UPDATE post_counts c SET posts = c.posts - p.n FROM per_author p
                WHERE c.author_id = p.author_id RETURNING c.author_live, p.n)
            SELECT -coalesce(sum(n) FILTER (WHERE author_live), 0) INTO visible
            FROM counted;
        END IF;
        PERFORM row_count_add('posts_visible', visible);
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER posts_count_insert AFTER INSERT ON posts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION posts_count_rows()
    """,
    """
    CREATE TRIGGER posts_count_delete AFTER DELETE ON posts
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION posts_count_rows()
    """,
    """
    CREATE FUNCTION posts_count_move() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        was_visible int;
        now_visible int;
    BEGIN
        UPDATE post_counts SET posts = posts - 1 WHERE author_id = OLD.author_id
        RETURNING author_live::int INTO was_visible;
        UPDATE post_counts SET posts = posts + 1 WHERE author_id = NEW.author_id
        RETURNING author_live::int INTO now_visible;
        PERFORM row_count_add(
            'posts_visible', coalesce(now_visible, 0) - coalesce(was_visible, 0));
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER posts_count_move AFTER UPDATE OF author_id ON posts
    FOR EACH ROW WHEN (OLD.author_id <> NEW.author_id)
    EXECUTE FUNCTION posts_count_move()
    """,
    # TRUNCATE fires no delete trigger; TRUNCATE users needs CASCADE (posts).
    """
    CREATE FUNCTION row_counts_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_TABLE_NAME = 'posts' THEN
            UPDATE post_counts SET posts = 0 WHERE posts <> 0;
            DELETE FROM row_counts WHERE name = 'posts_visible';
        ELSE
            DELETE FROM post_counts;
            DELETE FROM row_counts
            WHERE name IN ('users_live', 'users_active', 'posts_visible');
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER users_count_truncate AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION row_counts_truncated()
    """,
    """
    CREATE TRIGGER posts_count_truncate AFTER TRUNCATE ON posts
    FOR EACH STATEMENT EXECUTE FUNCTION row_counts_truncated()
    """,
)

POSTGRESQL_DOWN = (
    "DROP TRIGGER posts_count_truncate ON posts",
    "DROP TRIGGER users_count_truncate ON users",
    "DROP TRIGGER posts_count_move ON posts",
    "DROP TRIGGER posts_count_delete ON posts",
    "DROP TRIGGER posts_count_insert ON posts",
    "DROP TRIGGER users_count_update ON users",
    "DROP TRIGGER users_count_delete ON users",
    "DROP TRIGGER users_count_insert ON users",
    "DROP FUNCTION row_counts_truncated()",
    "DROP FUNCTION posts_count_move()",
    "DROP FUNCTION posts_count_rows()",
    "DROP FUNCTION users_count_update()",
    "DROP FUNCTION users_count_rows()",
    "DROP FUNCTION row_count_add(text, bigint)",
)

SQLITE = (
    """
    CREATE TRIGGER users_count_insert AFTER INSERT ON users BEGIN
        INSERT INTO post_counts (author_id, posts, author_live)
        VALUES (NEW.id, 0, (NEW.deleted_at IS NULL));
        UPDATE row_counts SET n = n + (NEW.deleted_at IS NULL) WHERE name = 'users_live';
        UPDATE row_counts SET n = n + ((NEW.deleted_at IS NULL) AND NEW.is_active)
        WHERE name = 'users_active';
    END
    """,
    """
    CREATE TRIGGER users_count_delete AFTER DELETE ON users BEGIN
        DELETE FROM post_counts WHERE author_id = OLD.id;
        UPDATE row_counts SET n = n - (OLD.deleted_at IS NULL) WHERE name = 'users_live';
        UPDATE row_counts SET n = n - ((OLD.deleted_at IS NULL) AND OLD.is_active)
        WHERE name = 'users_active';
    END
    """,
    """
    CREATE TRIGGER users_count_update AFTER UPDATE OF deleted_at, is_active ON users
    WHEN (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL) OR OLD.is_active <> NEW.is_active BEGIN
        UPDATE row_counts SET n = n + (NEW.deleted_at IS NULL) - (OLD.deleted_at IS NULL) WHERE name = 'users_live';
        UPDATE row_counts
        SET n = n + ((NEW.deleted_at IS NULL) AND NEW.is_active) - ((OLD.deleted_at IS NULL) AND OLD.is_active)
        WHERE name = 'users_active';
        UPDATE row_counts SET n = n + ((NEW.deleted_at IS NULL) - (OLD.deleted_at IS NULL)) * coalesce(
            (SELECT posts FROM post_counts WHERE author_id = NEW.id), 0)
        WHERE name = 'posts_visible';
        UPDATE post_counts SET author_live = (NEW.deleted_at IS NULL) WHERE author_id = NEW.id;
    END
    """,
    """
    CREATE TRIGGER posts_count_insert AFTER INSERT ON posts BEGIN
        UPDATE post_counts SET posts = posts + 1 WHERE author_id = NEW.author_id;
        UPDATE row_counts SET n = n + coalesce(
            (SELECT author_live FROM post_counts WHERE author_id = NEW.author_id), 0)
        WHERE name = 'posts_visible';
    END
    """,
    """
    CREATE TRIGGER posts_count_delete AFTER DELETE ON posts BEGIN
        UPDATE post_counts SET posts = posts - 1 WHERE author_id = OLD.author_id;
        UPDATE row_counts SET n = n - coalesce(
            (SELECT author_live FROM post_counts WHERE author_id = OLD.author_id), 0)
        WHERE name = 'posts_visible';
    END
    """,
    """
    CREATE TRIGGER posts_count_move AFTER UPDATE OF author_id ON posts
    WHEN OLD.author_id <> NEW.author_id BEGIN
        UPDATE post_counts SET posts = posts - 1 WHERE author_id = OLD.author_id;
        UPDATE post_counts SET posts = posts + 1 WHERE author_id = NEW.author_id;
        UPDATE row_counts SET n = n
            + coalesce((SELECT author_live FROM post_counts
                        WHERE author_id = NEW.author_id), 0)
            - coalesce((SELECT author_live FROM post_counts
                        WHERE author_id = OLD.author_id), 0)
        WHERE name = 'posts_visible';
    END
    """,
)

SQLITE_DOWN = tuple(
    f"DROP TRIGGER {name}"
    for name in (
        "posts_count_move",
        "posts_count_delete",
        "posts_count_insert",
        "users_count_update",
        "users_count_delete",
        "users_count_insert",
    )
)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        # No write may land between the backfill and the triggers.
        op.execute("LOCK TABLE users, posts IN SHARE ROW EXCLUSIVE MODE")
    op.create_table(
        "row_counts",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", "shard", name="row_counts_pkey"),
    )
    op.create_table(
        "post_counts",
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("posts", sa.BigInteger(), nullable=False),
        sa.Column("author_live", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("author_id", name="post_counts_pkey"),
    )
    for statement in BACKFILL + (POSTGRESQL if postgresql else SQLITE):
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_DOWN if postgresql else SQLITE_DOWN:
        op.execute(statement)
    op.drop_table("post_counts")
    op.drop_table("row_counts")
