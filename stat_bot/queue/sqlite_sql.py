"""SQLite's statements and schema for the relational queue (stat_bot/queue/relational.py).

One name per statement, the same names as PostgreSQL's in postgres_sql.py, so the
queue's logic is written once and each backend supplies its own SQL.
"""

from __future__ import annotations

P = "?"  # the driver's positional placeholder, for statements built with a variable list

# Forward-only migrations; the index + 1 is the schema version it produces.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id               INTEGER PRIMARY KEY,
        namespace        TEXT    NOT NULL,
        job_type         TEXT    NOT NULL,
        args             TEXT    NOT NULL DEFAULT '{}',
        channel          TEXT,
        thread_ts        TEXT,
        user             TEXT,
        source           TEXT    NOT NULL,
        status           TEXT    NOT NULL,
        created_at       REAL    NOT NULL,
        start_after      REAL    NOT NULL,
        started_at       REAL,
        finished_at      REAL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        max_retries      INTEGER NOT NULL DEFAULT 0,
        concurrency      INTEGER NOT NULL DEFAULT 1,
        worker_id        TEXT,
        heartbeat_at     REAL,
        pid              INTEGER,
        exit_code        INTEGER,
        log_dir          TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        report_state     TEXT    NOT NULL DEFAULT 'pending',
        report_error     TEXT,
        is_im            INTEGER NOT NULL DEFAULT 0,
        note             TEXT
    );
    CREATE INDEX jobs_queued ON jobs (start_after, id) WHERE status = 'queued';
    CREATE INDEX jobs_queued_type ON jobs (namespace, job_type) WHERE status = 'queued';
    CREATE INDEX jobs_running ON jobs (namespace, job_type) WHERE status = 'running';
    -- Only the unfinished jobs are indexed beyond the primary key: every index is
    -- another write in each of a job's three transactions. History is read newest
    -- first by id, and pruned by a scan every few hours.

    CREATE TABLE suppressions (
        id         INTEGER PRIMARY KEY,
        namespace  TEXT NOT NULL,
        job_type   TEXT NOT NULL,
        start_at   REAL NOT NULL,
        end_at     REAL NOT NULL,
        user       TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX suppressions_type ON suppressions (namespace, job_type);

    CREATE TABLE schedules (
        key           TEXT PRIMARY KEY,
        namespace     TEXT NOT NULL,
        job_type      TEXT NOT NULL,
        cron          TEXT NOT NULL,
        args          TEXT NOT NULL DEFAULT '{}',
        channel       TEXT,
        enabled       INTEGER NOT NULL DEFAULT 1,
        last_fired_at REAL,
        updated_at    REAL NOT NULL
    );

    CREATE TABLE workers (
        id           TEXT PRIMARY KEY,
        hostname     TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        started_at   REAL NOT NULL,
        heartbeat_at REAL NOT NULL
    );
    """,
    """
    -- The web server's changes to a schedule, kept apart from what the config says.
    ALTER TABLE schedules ADD COLUMN interval_seconds REAL;
    ALTER TABLE schedules ADD COLUMN interval_since REAL;
    ALTER TABLE schedules ADD COLUMN enabled_override INTEGER;

    -- Webhook deliveries already accepted, so a replay enqueues nothing.
    CREATE TABLE deliveries (
        source      TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (source, delivery_id)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_received ON deliveries (received_at);

    -- Counters every process adds to (web workers, bot, dispatcher), read by /metrics.
    CREATE TABLE counters (
        name  TEXT    NOT NULL,
        label TEXT    NOT NULL,
        value INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (name, label)
    ) WITHOUT ROWID;

    -- Each long-running component's latest state (the bot's connection), for /readyz.
    CREATE TABLE beats (
        component TEXT PRIMARY KEY,
        hostname  TEXT    NOT NULL,
        pid       INTEGER NOT NULL,
        state     TEXT    NOT NULL,
        detail    TEXT    NOT NULL,
        at        REAL    NOT NULL
    );
    """,
    """
    -- The asker's Slack name beside their id, for what people read (Trac, the dashboard).
    ALTER TABLE jobs ADD COLUMN user_name TEXT;
    """,
    """
    -- Everyone whose request was merged into a queued job after its first requester,
    -- so each gets the result in their own thread. Goes when the job is pruned.
    CREATE TABLE job_requesters (
        id            INTEGER PRIMARY KEY,
        job_id        INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        channel       TEXT,
        thread_ts     TEXT,
        user          TEXT,
        user_name     TEXT,
        is_im         INTEGER NOT NULL DEFAULT 0,
        source        TEXT    NOT NULL,
        args          TEXT    NOT NULL DEFAULT '{}',
        replaced_args INTEGER NOT NULL DEFAULT 0,
        created_at    REAL    NOT NULL
    );
    CREATE INDEX job_requesters_job ON job_requesters (job_id);
    """,
    """
    -- Every message STAT bot sends on its own, written with the change that causes it and
    -- delivered by report/outbox.py until Slack accepts it, refuses it for good or it expires.
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        kind            TEXT    NOT NULL,
        payload         TEXT    NOT NULL,
        channel         TEXT,
        job_id          INTEGER,
        state           TEXT    NOT NULL DEFAULT 'pending',
        created_at      REAL    NOT NULL,
        expires_at      REAL    NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL    NOT NULL,
        last_error      TEXT,
        parts_done      INTEGER NOT NULL DEFAULT 0,
        posted_channel  TEXT,
        ts              TEXT,
        delivered_at    REAL,
        claimed_by      TEXT,
        claimed_until   REAL,
        version         INTEGER NOT NULL DEFAULT 0,
        ref             TEXT
    );
    CREATE INDEX outbox_ref ON outbox (ref) WHERE ref IS NOT NULL;
    CREATE INDEX outbox_pending ON outbox (next_attempt_at, id) WHERE state = 'pending';
    CREATE INDEX outbox_given_up ON outbox (state) WHERE state IN ('failed', 'expired');
    CREATE INDEX outbox_job ON outbox (job_id) WHERE job_id IS NOT NULL;
    CREATE UNIQUE INDEX outbox_progress ON outbox (job_id) WHERE kind = 'progress';
    -- Reports a STAT bot before the outbox left pending (killed between posting and
    -- recording) can never be confirmed: say so rather than leave them pending forever.
    UPDATE jobs SET report_state = 'failed',
        report_error = 'not known whether it was delivered: STAT bot stopped before recording it'
    WHERE report_state = 'pending' AND finished_at IS NOT NULL;
    """,
    """
    -- Dashboard sessions held on the server (a hash of the cookie's id), so logout ends
    -- one for good: a cookie copied before logout finds no row afterwards.
    CREATE TABLE web_sessions (
        id_hash    TEXT PRIMARY KEY,
        user       TEXT NOT NULL,
        created_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX web_sessions_user ON web_sessions (user);

    -- Rate-limit counters (login throttling) shared by every web worker: one fixed window each.
    CREATE TABLE throttle (
        key        TEXT PRIMARY KEY,
        hits       INTEGER NOT NULL,
        expires_at REAL    NOT NULL
    ) WITHOUT ROWID;

    -- Digests of accepted webhook bodies, so a captured body sent again under a new
    -- delivery id enqueues nothing (kept as long as the deliveries are).
    CREATE TABLE delivery_digests (
        source      TEXT NOT NULL,
        digest      TEXT NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (source, digest)
    ) WITHOUT ROWID;
    CREATE INDEX delivery_digests_received ON delivery_digests (received_at);
    """,
    """
    -- Whether a schedule has fired since it was added. `last_fired_at` starts at the time it
    -- was added (so it never fires for due times before that), and this tells the two apart, so
    -- `status` can say "never". Schedules from before this column count as having fired.
    ALTER TABLE schedules ADD COLUMN has_fired INTEGER NOT NULL DEFAULT 1;
    """,
    """
    -- The hw namespace's memory: each node's latest health (what `hw show` says), and
    -- finished sweeps with every node's result, so the next sweep of the same scope
    -- reports what changed, whichever dispatcher host runs it.
    CREATE TABLE node_health (
        xname      TEXT PRIMARY KEY,
        state      TEXT NOT NULL,
        checked_at REAL NOT NULL,
        data       TEXT NOT NULL,
        job_id     INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE sweeps (
        id          INTEGER PRIMARY KEY,
        scope       TEXT NOT NULL,
        started_at  REAL NOT NULL,
        finished_at REAL NOT NULL,
        job_id      INTEGER,
        results     TEXT NOT NULL
    );
    CREATE INDEX sweeps_scope ON sweeps (scope, id);
    """,
    """
    -- Guarded jobs: who confirmed one, the xnames an exclusive one locks while it runs
    -- (lock keys whose prefix test is containment: jobs/targets.py), and the offers
    -- waiting for a Confirm or Cancel.
    ALTER TABLE jobs ADD COLUMN confirmed_by TEXT;
    CREATE TABLE job_locks (
        job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        key    TEXT    NOT NULL,
        PRIMARY KEY (job_id, key)
    ) WITHOUT ROWID;
    CREATE TABLE confirmations (
        code              TEXT PRIMARY KEY,
        namespace         TEXT NOT NULL,
        job_type          TEXT NOT NULL,
        request           TEXT NOT NULL,
        requested_by      TEXT,
        requested_by_name TEXT,
        channel           TEXT,
        thread_ts         TEXT,
        confirmers        TEXT NOT NULL DEFAULT '[]',
        summary           TEXT NOT NULL,
        state             TEXT NOT NULL DEFAULT 'pending',
        created_at        REAL NOT NULL,
        expires_at        REAL NOT NULL,
        decided_by        TEXT,
        decided_at        REAL,
        job_id            INTEGER,
        offer_id          INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX confirmations_pending ON confirmations (expires_at) WHERE state = 'pending';
    """,
    """
    -- Closing the loop (stat_bot/hardware/loop.py): per xname, the ticket the hardware rules
    -- opened or commented and the problem recorded there, whether the last acted-on check
    -- failed, and the drain / resume offers made, so checks never repeat them.
    CREATE TABLE hw_loop (
        xname        TEXT PRIMARY KEY,
        ticket       INTEGER,
        problem      TEXT,
        failing      INTEGER NOT NULL DEFAULT 0,
        drain_offer  TEXT,
        resume_offer TEXT,
        updated_at   REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    """
    -- Each time a schedule fired, unique per schedule and due time: however many
    -- dispatchers look at a schedule at once, a due time queues its job once.
    CREATE TABLE schedule_firings (
        key      TEXT NOT NULL,
        due      REAL NOT NULL,
        fired_at REAL NOT NULL,
        PRIMARY KEY (key, due)
    ) WITHOUT ROWID;
    """,
    """
    -- Incidents (stat_bot/incidents/): one row each, with its roles and links as JSON, and
    -- the outbox items of its pinned control message and digest message, which every
    -- later change edits. The timeline is its own table, one row per entry.
    CREATE TABLE incidents (
        id             INTEGER PRIMARY KEY,
        channel_id     TEXT,
        channel_name   TEXT NOT NULL,
        description    TEXT NOT NULL,
        status         TEXT NOT NULL,
        opened_by      TEXT,
        opened_by_name TEXT,
        opened_at      REAL NOT NULL,
        resolved_at    REAL,
        roles          TEXT NOT NULL DEFAULT '{}',
        xnames         TEXT NOT NULL DEFAULT '[]',
        tickets        TEXT NOT NULL DEFAULT '[]',
        jobs           TEXT NOT NULL DEFAULT '[]',
        control_outbox BIGINT,
        digest_outbox  BIGINT,
        postmortem     TEXT,
        archived_at    REAL,
        version        INTEGER NOT NULL DEFAULT 1,
        updated_at     REAL NOT NULL
    );
    CREATE INDEX incidents_channel ON incidents (channel_id);
    CREATE INDEX incidents_resolved ON incidents (resolved_at);
    CREATE TABLE incident_events (
        id          INTEGER PRIMARY KEY,
        incident_id BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
        at          REAL NOT NULL,
        kind        TEXT NOT NULL,
        "user"      TEXT,
        user_name   TEXT,
        text        TEXT NOT NULL,
        data        TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX incident_events_incident ON incident_events (incident_id, at, id);
    """,
    """
    -- On-call alerts (stat_bot/oncall/): one row per source and fingerprint, and an alert that
    -- fires again is counted on its row (fire_count), not stored anew.
    CREATE TABLE alerts (
        id             INTEGER PRIMARY KEY,
        source         TEXT NOT NULL,
        fingerprint    TEXT NOT NULL,
        title          TEXT NOT NULL,
        service        TEXT NOT NULL DEFAULT '',
        severity       TEXT NOT NULL DEFAULT '',
        labels         TEXT NOT NULL DEFAULT '{}',
        status         TEXT NOT NULL,
        first_fired_at REAL NOT NULL,
        last_fired_at  REAL NOT NULL,
        resolved_at    REAL,
        fire_count     INTEGER NOT NULL DEFAULT 1,
        url            TEXT,
        updated_at     REAL NOT NULL,
        UNIQUE (source, fingerprint)
    );
    CREATE INDEX alerts_last_fired ON alerts (last_fired_at);
    """,
    """
    -- Runbooks (stat_bot/oncall/runbook_index.py): pages read from documentation sites, the
    -- Trac wiki and the runbooks/ folder, cut into titled sections, a page's sections
    -- replaced only when its content hash changed, runbook_fts indexes the sections (FTS5,
    -- kept in step by triggers, so rows copied in by `db copy` are searchable too).
    CREATE TABLE runbook_pages (
        id           INTEGER PRIMARY KEY,
        source       TEXT NOT NULL,
        key          TEXT NOT NULL,
        url          TEXT NOT NULL,
        title        TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        fetched_at   REAL NOT NULL,
        parsed_at    REAL NOT NULL,
        UNIQUE (source, key)
    );
    CREATE TABLE runbook_sections (
        id       INTEGER PRIMARY KEY,
        page_id  INTEGER NOT NULL REFERENCES runbook_pages (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        anchor   TEXT NOT NULL,
        title    TEXT NOT NULL,
        body     TEXT NOT NULL,
        url      TEXT NOT NULL
    );
    CREATE INDEX runbook_sections_page ON runbook_sections (page_id, position);
    CREATE VIRTUAL TABLE runbook_fts USING fts5 (
        title, body, content='runbook_sections', content_rowid='id',
        tokenize='porter unicode61'
    );
    CREATE TRIGGER runbook_sections_ai AFTER INSERT ON runbook_sections BEGIN
        INSERT INTO runbook_fts (rowid, title, body) VALUES (new.id, new.title, new.body);
    END;
    CREATE TRIGGER runbook_sections_ad AFTER DELETE ON runbook_sections BEGIN
        INSERT INTO runbook_fts (runbook_fts, rowid, title, body)
        VALUES ('delete', old.id, old.title, old.body);
    END;
    CREATE TRIGGER runbook_sections_au AFTER UPDATE ON runbook_sections BEGIN
        INSERT INTO runbook_fts (runbook_fts, rowid, title, body)
        VALUES ('delete', old.id, old.title, old.body);
        INSERT INTO runbook_fts (rowid, title, body) VALUES (new.id, new.title, new.body);
    END;
    -- The section posted in an alert firing's thread (title and url kept: a re-index
    -- replaces sections), and each person's one rating of it.
    CREATE TABLE runbook_answers (
        id         INTEGER PRIMARY KEY,
        alert_id   INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
        fire_count INTEGER NOT NULL,
        section_id INTEGER REFERENCES runbook_sections (id) ON DELETE SET NULL,
        title      TEXT NOT NULL,
        url        TEXT NOT NULL,
        score      REAL NOT NULL,
        ref        TEXT NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (alert_id, fire_count)
    );
    CREATE TABLE runbook_ratings (
        answer_id INTEGER NOT NULL REFERENCES runbook_answers (id) ON DELETE CASCADE,
        user      TEXT NOT NULL,
        helpful   INTEGER NOT NULL,
        rated_at  REAL NOT NULL,
        PRIMARY KEY (answer_id, user)
    );
    """,
    """
    -- Alert acknowledgement (a Slack button, PagerDuty's incident.acknowledged): the first
    -- one of each firing is kept (on the alert for its latest firing, and on the firing). Each firing is kept too, so the handoff and the dashboard count a week's
    -- firings by day (fire_count is the alert's total since it was first seen).
    ALTER TABLE alerts ADD COLUMN acknowledged_at REAL;
    ALTER TABLE alerts ADD COLUMN acknowledged_by TEXT;
    CREATE TABLE alert_firings (
        id       INTEGER PRIMARY KEY,
        alert_id BIGINT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
        fired_at    REAL NOT NULL,
        resolved_at REAL,
        acknowledged_at REAL
    );
    CREATE INDEX alert_firings_at ON alert_firings (fired_at);
    -- Alerts stored before this migration: their latest firing, the one thing known.
    INSERT INTO alert_firings (alert_id, fired_at, resolved_at)
        SELECT id, last_fired_at, resolved_at FROM alerts;
    """,
    """
    -- Each index is another page written by every webhook delivery's commit (the two below
    -- were 2 of its ~10 WAL frames, a fifth of its write time), and they served only the
    -- prune (every 6 hours), which now reads the two tables through: 0.1-0.2 s a million rows.
    DROP INDEX IF EXISTS deliveries_received;
    DROP INDEX IF EXISTS delivery_digests_received;
    """,
    """
    -- A request that coalesces by arguments looked for its twin by reading the arguments
    -- of every queued job of its type: with 20,000 queued checks of one type (one per node
    -- of a large machine) an enqueue took 3.9 ms, with 300 0.09 ms, holding the write
    -- lock. With the arguments in the index it is one search. The type-wide lookups use
    -- the index by its first two columns, and the one of coalescing by type now sorts
    -- the type's queued jobs by id: normally one, as every request of the type merges
    -- into it (only a type switched to it with a backlog has more).
    DROP INDEX IF EXISTS jobs_queued_type;
    CREATE INDEX jobs_queued_args ON jobs (namespace, job_type, args) WHERE status = 'queued';
    """,
)
JOB_COLUMNS = (
    "id, namespace, job_type, args, channel, thread_ts, user, source, status, created_at, "
    "start_after, started_at, finished_at, attempts, max_retries, concurrency, worker_id, "
    "heartbeat_at, pid, exit_code, log_dir, cancel_requested, report_state, report_error, is_im, note, "
    "user_name, confirmed_by"
)

# No RETURNING: the caller knows every value of the new row (relational._queued_job)
# and reads its id from the cursor's lastrowid (RETURNING costs more than the insert).
SQL_INSERT_JOB = """
    INSERT INTO jobs (namespace, job_type, args, channel, thread_ts, user, source, status,
                      created_at, start_after, max_retries, concurrency, is_im, report_state,
                      user_name, confirmed_by)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

SQL_FIND_QUEUED_OF_TYPE = """
    SELECT id, args FROM jobs WHERE status = 'queued' AND namespace = ? AND job_type = ?
    ORDER BY id LIMIT 1
"""
# Arguments are stored as canonical JSON (sorted keys), so equal arguments are equal text.
SQL_FIND_QUEUED_SAME_ARGS = """
    SELECT id, args FROM jobs
    WHERE status = 'queued' AND namespace = :ns AND job_type = :jt AND args = :args
    ORDER BY id LIMIT 1
"""

# The job keeps its first requester (channel, thread, user, source); a merged request
# moves when it starts (ebmbot's "the latest request's delay") and, by type, its args.
SQL_COALESCE = (
    """
    UPDATE jobs SET args = ?, start_after = ?, max_retries = ?, concurrency = ?
    WHERE id = ? RETURNING """
    + JOB_COLUMNS
)

# A requester already answered where the job reports (same channel and thread as the
# job or as an earlier requester: a schedule firing again, a repeated command in one
# thread) is not kept twice.
SQL_ADD_REQUESTER = """
    INSERT INTO job_requesters (job_id, channel, thread_ts, user, user_name, is_im, source, args,
                                replaced_args, created_at)
    SELECT :job_id, :channel, :thread_ts, :user, :user_name, :is_im, :source, :args,
           :replaced_args, :now
    WHERE NOT EXISTS (SELECT 1 FROM jobs
                      WHERE id = :job_id AND channel IS :channel AND thread_ts IS :thread_ts)
      AND NOT EXISTS (SELECT 1 FROM job_requesters
                      WHERE job_id = :job_id AND channel IS :channel AND thread_ts IS :thread_ts)
"""
SQL_MARK_ARGS_REPLACED = (
    "UPDATE job_requesters SET replaced_args = 1 WHERE job_id = :job_id AND :replaced_args "
    "AND channel IS :channel AND thread_ts IS :thread_ts"
)
SQL_REQUESTERS = """
    SELECT job_id, channel, thread_ts, user, user_name, is_im, source, args, replaced_args,
           created_at
    FROM job_requesters WHERE job_id = ? ORDER BY id
"""

SQL_RUNNING_OF_TYPE = (
    "SELECT "
    + JOB_COLUMNS
    + " FROM jobs WHERE status = 'running' AND namespace = ? AND job_type = ?"
)

SQL_ACTIVE_SUPPRESSION_END = """
    SELECT max(end_at) FROM suppressions
    WHERE namespace = ? AND job_type = ? AND start_at <= ? AND end_at > ?
"""

# What enqueue tells the requester: when an active suppression of the type ends, and
# whether a job of the type runs. Two columns: SQL_RUNNING_OF_TYPE's rows are read only
# when one does (the driver describes every column of every statement it runs, rows or
# none, and a job has 28).
SQL_SUPPRESSED_UNTIL_AND_RUNNING = """
    SELECT (SELECT max(end_at) FROM suppressions
            WHERE namespace = :ns AND job_type = :jt AND start_at <= :at AND end_at > :at),
           EXISTS (SELECT 1 FROM jobs
                   WHERE status = 'running' AND namespace = :ns AND job_type = :jt)
"""

# The next claimable job: due, its type below its concurrency limit, not suppressed.
# Both subqueries are uncorrelated, so SQLite evaluates each once per statement, and only
# if needed: each is behind a test, also evaluated once, that no job runs / no suppression
# is active (then no type is at its limit / suppressed); building the subqueries' tables
# cost more than the rest of the claim.
SQL_CLAIM_NEXT = """
    SELECT id FROM jobs AS j
    WHERE j.status = 'queued' AND j.start_after <= :now
      AND (NOT EXISTS (SELECT 1 FROM jobs WHERE status = 'running')
           OR (j.namespace, j.job_type) NOT IN (
                SELECT namespace, job_type FROM jobs WHERE status = 'running'
                GROUP BY namespace, job_type HAVING count(*) >= max(concurrency)))
      AND (NOT EXISTS (SELECT 1 FROM suppressions WHERE start_at <= :now AND end_at > :now)
           OR (j.namespace, j.job_type) NOT IN (
                SELECT namespace, job_type FROM suppressions
                WHERE start_at <= :now AND end_at > :now))
      AND NOT EXISTS (
            SELECT 1 FROM job_locks AS mine
                CROSS JOIN jobs AS r INDEXED BY jobs_running
                CROSS JOIN job_locks AS held
            WHERE mine.job_id = j.id AND r.status = 'running' AND held.job_id = r.id
              AND (substr(held.key, 1, length(mine.key)) = mine.key
                   OR substr(mine.key, 1, length(held.key)) = held.key))
    ORDER BY j.start_after, j.id
    LIMIT 1
"""
# An exclusive job's locks (above: skipped while a running job holds an overlapping key,
# one key a prefix of the other; CROSS JOIN fixes the order: the candidate's few keys,
# then only the running jobs, by their partial index, then their keys by primary key,
# so a job without locks costs one index probe and history never is scanned).
# A merged request's target replaces the job's locks.
SQL_DROP_LOCKS = "DELETE FROM job_locks WHERE job_id = ?"
SQL_ADD_LOCK = "INSERT OR IGNORE INTO job_locks (job_id, key) VALUES (?, ?)"
SQL_JOB_LOCKS = "SELECT key FROM job_locks WHERE job_id = ? ORDER BY key"

CONFIRMATION_COLUMNS = (
    "code, request, requested_by, channel, thread_ts, summary, created_at, expires_at, state, "
    "confirmers, requested_by_name, decided_by, decided_at, job_id, offer_id"
)
SQL_CONFIRMATION_EXISTS = "SELECT 1 FROM confirmations WHERE code = ?"
SQL_INSERT_CONFIRMATION = (
    """
    INSERT INTO confirmations (code, namespace, job_type, request, requested_by,
        requested_by_name, channel, thread_ts, confirmers, summary, created_at, expires_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING """
    + CONFIRMATION_COLUMNS
)
SQL_CONFIRMATION_OFFER = "UPDATE confirmations SET offer_id = ? WHERE code = ?"
SQL_GET_CONFIRMATION = "SELECT " + CONFIRMATION_COLUMNS + " FROM confirmations WHERE code = ?"
SQL_DECIDE_CONFIRMATION = (
    """
    UPDATE confirmations SET state = ?, decided_by = ?, decided_at = ?, job_id = ?
    WHERE code = ? AND state = 'pending' RETURNING """
    + CONFIRMATION_COLUMNS
)
SQL_EXPIRE_CONFIRMATIONS = (
    """
    UPDATE confirmations SET state = 'expired', decided_at = :now
    WHERE state = 'pending' AND expires_at <= :now RETURNING """
    + CONFIRMATION_COLUMNS
)
SQL_PRUNE_CONFIRMATIONS = "DELETE FROM confirmations WHERE state != 'pending' AND created_at < ?"

# Claims the next claimable job (SQL_CLAIM_NEXT) in one statement: the candidate is
# chosen and marked running without a round trip between (the subquery is uncorrelated,
# so it is evaluated once; it finds nothing, and the statement changes nothing, when no
# job is claimable).
SQL_CLAIM_ONE = (
    """
    UPDATE jobs SET status = 'running', started_at = :now, heartbeat_at = :now, worker_id = :worker,
                    attempts = attempts + 1, cancel_requested = 0, pid = NULL, exit_code = NULL
    WHERE id = ("""
    + SQL_CLAIM_NEXT
    + """) RETURNING """
    + JOB_COLUMNS
)

SQL_MARK_STARTED = "UPDATE jobs SET pid = ?, log_dir = ? WHERE id = ?"

# No RETURNING: finish says only whether the job was still running (its rowcount); the
# dispatcher has the job, and reading its 28 columns back cost as much as the update.
SQL_FINISH = """
    UPDATE jobs SET status = ?, exit_code = ?, finished_at = ?, note = coalesce(?, note),
                    report_state = ?
    WHERE id = ? AND status = 'running' AND (? IS NULL OR worker_id = ?)"""

SQL_WORKER_HEARTBEAT = "UPDATE workers SET heartbeat_at = ? WHERE id = ?"
SQL_JOBS_HEARTBEAT = "UPDATE jobs SET heartbeat_at = ? WHERE worker_id = ? AND status = 'running'"
SQL_CANCEL_REQUESTED = (
    "SELECT id FROM jobs WHERE worker_id = ? AND status = 'running' AND cancel_requested = 1"
)

SQL_GET = "SELECT " + JOB_COLUMNS + " FROM jobs WHERE id = ?"
SQL_CANCEL_QUEUED = (
    """
    UPDATE jobs SET status = 'cancelled', finished_at = ?, report_state = 'none', note = ?
    WHERE id = ? AND status = 'queued' RETURNING """
    + JOB_COLUMNS
)
SQL_REQUEST_CANCEL = "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'"
SQL_CANCEL_QUEUED_OF_TYPE = (
    """
    UPDATE jobs SET status = 'cancelled', finished_at = ?, report_state = 'none', note = ?
    WHERE status = 'queued' AND namespace = ? AND job_type = ? RETURNING """
    + JOB_COLUMNS
)

SQL_INSERT_SUPPRESSION = """
    INSERT INTO suppressions (namespace, job_type, start_at, end_at, user, created_at)
    VALUES (?, ?, ?, ?, ?, ?) RETURNING id
"""
SQL_DELETE_SUPPRESSIONS = "DELETE FROM suppressions WHERE namespace = ? AND job_type = ?"
SQL_SUPPRESSIONS = "SELECT id, namespace, job_type, start_at, end_at, user FROM suppressions"
SQL_ACTIVE_SUPPRESSIONS = SQL_SUPPRESSIONS + " WHERE end_at > ? ORDER BY start_at"

SQL_RECORD_REPORT = "UPDATE jobs SET report_state = ?, report_error = ? WHERE id = ?"

SQL_PRUNE = (
    "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ? RETURNING " + JOB_COLUMNS
)
SQL_PRUNE_SUPPRESSIONS = "DELETE FROM suppressions WHERE end_at < ?"

SQL_REGISTER_WORKER = """
    INSERT INTO workers (id, hostname, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at
"""
SQL_UNREGISTER_WORKER = "DELETE FROM workers WHERE id = ?"
SQL_WORKERS = "SELECT id, hostname, pid, started_at, heartbeat_at FROM workers ORDER BY started_at"
SQL_RUNNING_ALL = "SELECT " + JOB_COLUMNS + " FROM jobs WHERE status = 'running'"
SQL_REQUEUE = (
    """
    UPDATE jobs SET status = 'queued', worker_id = NULL, pid = NULL, heartbeat_at = NULL,
                    started_at = NULL, start_after = ?, note = ?
    WHERE id = ? AND status = 'running' RETURNING """
    + JOB_COLUMNS
)
SQL_MARK_LOST = (
    """
    UPDATE jobs SET status = 'lost', finished_at = ?, note = ?, report_state = 'pending'
    WHERE id = ? AND status = 'running' RETURNING """
    + JOB_COLUMNS
)

SCHEDULE_COLUMNS = """
    key, namespace, job_type, cron, args, channel, coalesce(enabled_override, enabled),
    last_fired_at, interval_seconds, interval_since, enabled_override, has_fired
"""
SQL_SCHEDULES = "SELECT " + SCHEDULE_COLUMNS + " FROM schedules ORDER BY key"
SQL_SCHEDULE = "SELECT " + SCHEDULE_COLUMNS + " FROM schedules WHERE key = ?"
SQL_SET_SCHEDULE_INTERVAL = (
    "UPDATE schedules SET interval_seconds = ?, interval_since = ?, updated_at = ? WHERE key = ?"
)
SQL_SET_SCHEDULE_ENABLED = "UPDATE schedules SET enabled_override = ?, updated_at = ? WHERE key = ?"

SQL_INSERT_DELIVERY = """
    INSERT INTO deliveries (source, delivery_id, received_at) VALUES (?, ?, ?)
    ON CONFLICT (source, delivery_id) DO NOTHING
"""
SQL_PRUNE_DELIVERIES = "DELETE FROM deliveries WHERE received_at < ?"
SQL_INSERT_DIGEST = """
    INSERT INTO delivery_digests (source, digest, received_at) VALUES (?, ?, ?)
    ON CONFLICT (source, digest) DO NOTHING
"""
SQL_PRUNE_DIGESTS = "DELETE FROM delivery_digests WHERE received_at < ?"

SQL_OPEN_SESSION = "INSERT INTO web_sessions (id_hash, user, created_at) VALUES (?, ?, ?)"
SQL_EXPIRE_SESSIONS = "DELETE FROM web_sessions WHERE created_at < ?"
SQL_SESSION_USER = "SELECT user FROM web_sessions WHERE id_hash = ? AND created_at >= ?"
SQL_CLOSE_SESSION = "DELETE FROM web_sessions WHERE id_hash = ?"
SQL_CLOSE_USER_SESSIONS = "DELETE FROM web_sessions WHERE user = ?"

# A fixed window per key: the first hit after the window ended starts a new one.
SQL_THROTTLE_HIT = """
    INSERT INTO throttle (key, hits, expires_at) VALUES (:key, :amount, :now + :expiry)
    ON CONFLICT (key) DO UPDATE SET
        hits = CASE WHEN expires_at <= :now THEN excluded.hits ELSE hits + excluded.hits END,
        expires_at = CASE WHEN expires_at <= :now THEN excluded.expires_at ELSE expires_at END
    RETURNING hits
"""
SQL_THROTTLE_GET = "SELECT hits, expires_at FROM throttle WHERE key = ? AND expires_at > ?"
SQL_THROTTLE_CLEAR = "DELETE FROM throttle WHERE key = ?"
SQL_THROTTLE_CLEAR_ALL = "DELETE FROM throttle"
SQL_PRUNE_THROTTLE = "DELETE FROM throttle WHERE expires_at <= ?"
SQL_COUNT = """
    INSERT INTO counters (name, label, value) VALUES (?, ?, ?)
    ON CONFLICT (name, label) DO UPDATE SET value = value + excluded.value
"""
SQL_COUNTERS = "SELECT label, value FROM counters WHERE name = ?"
SQL_BEAT = """
    INSERT INTO beats (component, hostname, pid, state, detail, at) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (component) DO UPDATE SET hostname = excluded.hostname, pid = excluded.pid,
        state = excluded.state, detail = excluded.detail, at = excluded.at
"""
SQL_LOOP_MEMORY = """
    SELECT xname, ticket, problem, failing, drain_offer, resume_offer, updated_at FROM hw_loop
    WHERE xname IN (SELECT value FROM json_each(?))
"""
SQL_REMEMBER_LOOP = """
    INSERT INTO hw_loop (xname, ticket, problem, failing, drain_offer, resume_offer, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (xname) DO UPDATE SET ticket = excluded.ticket, problem = excluded.problem,
        failing = excluded.failing, drain_offer = excluded.drain_offer,
        resume_offer = excluded.resume_offer, updated_at = excluded.updated_at
"""
SQL_BEATS = "SELECT component, hostname, pid, state, detail, at FROM beats ORDER BY component"
SQL_NODE_HEALTH_UPSERT = """
    INSERT INTO node_health (xname, state, checked_at, data, job_id) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (xname) DO UPDATE SET state = excluded.state, checked_at = excluded.checked_at,
        data = excluded.data, job_id = excluded.job_id
    WHERE excluded.checked_at >= node_health.checked_at
"""
SQL_NODE_HEALTH = "SELECT xname, state, checked_at, data, job_id FROM node_health"
SQL_INSERT_SWEEP = """
    INSERT INTO sweeps (scope, started_at, finished_at, job_id, results) VALUES (?, ?, ?, ?, ?)
    RETURNING id
"""
SQL_PRUNE_SWEEPS = """
    DELETE FROM sweeps WHERE scope = ? AND id NOT IN
        (SELECT id FROM sweeps WHERE scope = ? ORDER BY id DESC LIMIT ?)
"""
SQL_LAST_SWEEP = """
    SELECT id, scope, started_at, finished_at, results, job_id FROM sweeps
    WHERE scope = ? AND id < ? ORDER BY id DESC LIMIT 1
"""
SQL_JOB_COUNTS = """
    SELECT namespace, job_type, status, report_state, count(*) FROM jobs
    GROUP BY namespace, job_type, status, report_state
"""
SQL_JOB_TIMINGS = """
    SELECT id, namespace, job_type, status, created_at, start_after, started_at, finished_at
    FROM jobs WHERE created_at >= ? ORDER BY id LIMIT ?
"""
SQL_UPSERT_SCHEDULE = """
    INSERT INTO schedules (key, namespace, job_type, cron, args, channel, enabled, last_fired_at,
                           updated_at, has_fired)
    VALUES (:key, :namespace, :job_type, :cron, :args, :channel, :enabled, :now, :now, 0)
    ON CONFLICT (key) DO UPDATE SET
        namespace = excluded.namespace, job_type = excluded.job_type, cron = excluded.cron,
        args = excluded.args, channel = excluded.channel, enabled = excluded.enabled,
        updated_at = excluded.updated_at
"""
SQL_DELETE_SCHEDULE = "DELETE FROM schedules WHERE key = ?"
SQL_FIRE_SCHEDULE = """
    UPDATE schedules SET last_fired_at = ?, has_fired = 1
    WHERE key = ? AND coalesce(enabled_override, enabled) = 1
      AND (last_fired_at IS NULL OR last_fired_at < ?)
"""

OUTBOX_COLUMNS = (
    "id, kind, payload, channel, job_id, state, created_at, expires_at, attempts, "
    "next_attempt_at, last_error, parts_done, posted_channel, ts, delivered_at, version, ref"
)
SQL_OUTBOX_INSERT = """
    INSERT INTO outbox (kind, payload, channel, job_id, created_at, expires_at, next_attempt_at,
                        ref)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id
"""
# One progress message per job, re-armed by each note; never for a job that has ended,
# and never again once Slack refused it.
SQL_OUTBOX_PROGRESS = """
    INSERT INTO outbox (kind, payload, channel, job_id, created_at, expires_at, next_attempt_at)
    SELECT 'progress', :payload, :channel, :job_id, :now, :expires, :now
    WHERE EXISTS (SELECT 1 FROM jobs WHERE id = :job_id AND status = 'running')
    ON CONFLICT (job_id) WHERE kind = 'progress' DO UPDATE SET
        payload = excluded.payload, expires_at = excluded.expires_at, version = version + 1,
        state = CASE WHEN state IN ('pending', 'delivered') THEN 'pending' ELSE state END,
        next_attempt_at = CASE WHEN state = 'pending' THEN next_attempt_at ELSE :now END
    RETURNING id
"""
SQL_OUTBOX_DROP_PROGRESS = """
    UPDATE outbox SET state = 'dropped', version = version + 1
    WHERE kind = 'progress' AND job_id = ? AND state = 'pending'
"""
SQL_OUTBOX_EXPIRE = (
    """
    UPDATE outbox SET state = 'expired', claimed_by = NULL, claimed_until = NULL,
        last_error = 'not delivered before it expired; last error: '
                     || coalesce(last_error, 'none: it was never tried')
    WHERE state = 'pending' AND expires_at <= :now
      AND (claimed_until IS NULL OR claimed_until <= :now)
    RETURNING """
    + OUTBOX_COLUMNS
)
# Due messages, oldest first. A relayed ticket is only ever sent by the web request that
# waits for it (and expired by anyone). A job's messages go one at a time, in order:
# none while an older one of the same job is leased to a sender (its progress edit
# must not land after its report).
# INDEXED BY: without statistics SQLite walks the whole table in id order to skip a sort,
# which reads every message sent in the history kept (90 days by default) to find the few
# pending ones: 3.2 ms at 50,000, on every claim, in a write transaction.
SQL_OUTBOX_DUE = """
    SELECT id FROM outbox INDEXED BY outbox_pending
    WHERE state = 'pending' AND next_attempt_at <= :now
      AND kind != 'relay' AND (claimed_until IS NULL OR claimed_until <= :now)
      AND (job_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM outbox AS o WHERE o.job_id = outbox.job_id AND o.id < outbox.id
              AND o.claimed_until > :now))
    ORDER BY id LIMIT :limit
"""
SQL_OUTBOX_RENEW = """
    UPDATE outbox SET claimed_until = ? WHERE id = ? AND claimed_by = ? AND state = 'pending'
"""
SQL_OUTBOX_ONE = (
    "SELECT id FROM outbox WHERE id = :only AND state = 'pending' "
    "AND (claimed_until IS NULL OR claimed_until <= :now)"
)
SQL_OUTBOX_LEASE = (
    "UPDATE outbox SET claimed_by = :owner, claimed_until = :until WHERE id = :id RETURNING "
    + OUTBOX_COLUMNS
)
SQL_OUTBOX_PART = "UPDATE outbox SET parts_done = ?, posted_channel = ?, ts = ? WHERE id = ?"
# A progress note re-armed while it was being sent (its version moved on) stays pending.
SQL_OUTBOX_DELIVERED = """
    UPDATE outbox SET state = CASE WHEN version = :version AND state = 'pending'
                                   THEN 'delivered' ELSE state END,
        posted_channel = coalesce(:channel, posted_channel), ts = coalesce(:ts, ts),
        delivered_at = :now, attempts = attempts + 1, last_error = NULL,
        claimed_by = NULL, claimed_until = NULL
    WHERE id = :id
"""
SQL_OUTBOX_RETRY = """
    UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,
        claimed_by = NULL, claimed_until = NULL
    WHERE id = ? AND state = 'pending'
"""
SQL_OUTBOX_DEFER = (
    "UPDATE outbox SET next_attempt_at = ? WHERE state = 'pending' AND next_attempt_at < ?"
)
SQL_OUTBOX_GIVE_UP = """
    UPDATE outbox SET state = ?, last_error = ?, attempts = attempts + 1,
        claimed_by = NULL, claimed_until = NULL
    WHERE id = ? AND state = 'pending' RETURNING kind, job_id
"""
SQL_OUTBOX_RELEASE = "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE id = ?"
SQL_OUTBOX_GET = "SELECT " + OUTBOX_COLUMNS + " FROM outbox WHERE id = ?"
SQL_OUTBOX_FIND = "SELECT " + OUTBOX_COLUMNS + " FROM outbox WHERE ref = ? ORDER BY id"
SQL_OUTBOX_PENDING_SUMMARY = "SELECT count(*), min(created_at) FROM outbox WHERE state = 'pending'"
SQL_OUTBOX_GIVEN_UP = (
    "SELECT state, count(*) FROM outbox WHERE state IN ('failed', 'expired') GROUP BY state"
)
SQL_OUTBOX_LAST_ERROR = (  # INDEXED BY: as SQL_OUTBOX_DUE
    "SELECT last_error FROM outbox INDEXED BY outbox_pending "
    "WHERE state = 'pending' AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1"
)
# A message leased by a sender is not due for the others until its lease ends; a relayed
# ticket is due only to be expired, once its waiting request is gone.
SQL_OUTBOX_NEXT_DUE = """
    SELECT min(max(CASE WHEN kind = 'relay' THEN expires_at ELSE next_attempt_at END,
                   coalesce(claimed_until, 0)))
    FROM outbox WHERE state = 'pending'
"""
SQL_OUTBOX_PROGRESS_POSTED = (
    "SELECT posted_channel, ts FROM outbox WHERE kind = 'progress' AND job_id = ? "
    "AND ts IS NOT NULL"
)
SQL_OUTBOX_REPORTS_LEFT = (
    "SELECT count(*) FROM outbox WHERE job_id = ? AND kind = 'report' AND state = 'pending'"
)
SQL_REPORT_DELIVERED = (
    "UPDATE jobs SET report_state = 'delivered' WHERE id = ? AND report_state = 'pending'"
)
SQL_REPORT_GIVEN_UP = "UPDATE jobs SET report_state = 'failed', report_error = ? WHERE id = ?"
SQL_PRUNE_OUTBOX = "DELETE FROM outbox WHERE state != 'pending' AND created_at < ?"

SQL_NEXT_DUE = "SELECT min(start_after) FROM jobs WHERE status = 'queued'"
SQL_NEXT_DUE_AFTER = SQL_NEXT_DUE + " AND start_after > ?"

SQL_SCHEDULE_KEYS = "SELECT key FROM schedules"
SQL_CONFIRMATIONS_DUE = (
    "SELECT 1 FROM confirmations WHERE state = 'pending' AND expires_at <= ? LIMIT 1"
)
SQL_CONFIRMATIONS = "SELECT " + CONFIRMATION_COLUMNS + " FROM confirmations"
SQL_OUTBOX_ITEMS = "SELECT " + OUTBOX_COLUMNS + " FROM outbox"
SQL_JOBS = "SELECT " + JOB_COLUMNS + " FROM jobs"
SQL_NODE_HEALTH_OF = SQL_NODE_HEALTH + " WHERE xname IN (SELECT value FROM json_each(?))"
# SQLite's write lock already serializes every write transaction: nothing to lock.
SQL_GET_FOR_UPDATE = SQL_GET
SQL_GET_CONFIRMATION_FOR_UPDATE = SQL_GET_CONFIRMATION
SQL_RECORD_FIRING = (
    "INSERT INTO schedule_firings (key, due, fired_at) VALUES (?, ?, ?) "
    "ON CONFLICT (key, due) DO NOTHING"
)
SQL_PRUNE_FIRINGS = "DELETE FROM schedule_firings WHERE due < ?"
SQL_TABLE_COLUMNS = "SELECT name FROM pragma_table_info(?) ORDER BY cid"
SQL_RESET_ID = None  # an INTEGER PRIMARY KEY goes on from the largest id by itself
SQL_TABLE_KEY = "SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk"

INCIDENT_COLUMNS = (
    "id, channel_id, channel_name, description, status, opened_by, opened_by_name, "
    "opened_at, resolved_at, roles, xnames, tickets, jobs, control_outbox, digest_outbox, "
    "postmortem, archived_at, version, updated_at"
)
SQL_INSERT_INCIDENT = (
    """
    INSERT INTO incidents (channel_id, channel_name, description, status, opened_by,
                           opened_by_name, opened_at, xnames, tickets, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    RETURNING """
    + INCIDENT_COLUMNS
)
SQL_GET_INCIDENT = "SELECT " + INCIDENT_COLUMNS + " FROM incidents WHERE id = ?"
SQL_GET_INCIDENT_FOR_UPDATE = SQL_GET_INCIDENT
SQL_INCIDENT_BY_CHANNEL = (
    "SELECT " + INCIDENT_COLUMNS + " FROM incidents WHERE channel_id = ? ORDER BY id DESC LIMIT 1"
)
SQL_INCIDENTS = (
    "SELECT " + INCIDENT_COLUMNS + " FROM incidents "
    "WHERE resolved_at IS NULL OR resolved_at >= ? ORDER BY opened_at DESC, id DESC LIMIT ?"
)
# The update's SET list is built from queue/incident_model.py CHANGEABLE names (checked first).
SQL_UPDATE_INCIDENT = (
    "UPDATE incidents SET {assignments}version = version + 1, updated_at = ? "
    "WHERE id = ? RETURNING " + INCIDENT_COLUMNS
)
SQL_INSERT_INCIDENT_EVENT = """
    INSERT INTO incident_events (incident_id, at, kind, "user", user_name, text, data)
    VALUES (?, ?, ?, ?, ?, ?, ?)
"""
SQL_INCIDENT_EVENTS = """
    SELECT id, incident_id, at, kind, "user", user_name, text, data FROM incident_events
    WHERE incident_id = ? ORDER BY at, id
"""

ALERT_COLUMNS = (
    "id, source, fingerprint, title, service, severity, labels, status, first_fired_at, "
    "last_fired_at, resolved_at, fire_count, url, updated_at, acknowledged_at, acknowledged_by"
)
SQL_GET_ALERT_BY_KEY = (
    "SELECT " + ALERT_COLUMNS + " FROM alerts WHERE source = ? AND fingerprint = ?"
)
SQL_INSERT_ALERT = (
    """
    INSERT INTO alerts (source, fingerprint, title, service, severity, labels, status,
                        first_fired_at, last_fired_at, resolved_at, url, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    RETURNING """
    + ALERT_COLUMNS
)
SQL_UPDATE_ALERT = (
    """
    UPDATE alerts SET title = ?, service = ?, severity = ?, labels = ?, status = ?,
        last_fired_at = ?, resolved_at = ?, fire_count = ?, url = ?, updated_at = ?
    WHERE id = ?
    RETURNING """
    + ALERT_COLUMNS
)
SQL_GET_ALERT = "SELECT " + ALERT_COLUMNS + " FROM alerts WHERE id = ?"
SQL_ALERTS = (
    "SELECT " + ALERT_COLUMNS + " FROM alerts WHERE last_fired_at >= ? "
    "ORDER BY last_fired_at DESC, id DESC LIMIT ?"
)

# runbooks ------------------------------------------------------------------------------
RUNBOOK_PAGE_COLUMNS = (
    "p.id, p.source, p.key, p.url, p.title, p.content_hash, p.fetched_at, p.parsed_at, "
    "(SELECT count(*) FROM runbook_sections s WHERE s.page_id = p.id)"
)
SQL_RUNBOOK_PAGE_HASH = "SELECT id, content_hash FROM runbook_pages WHERE source = ? AND key = ?"
SQL_RUNBOOK_INSERT_PAGE = """
    INSERT INTO runbook_pages (source, key, url, title, content_hash, fetched_at, parsed_at)
    VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id
"""
SQL_RUNBOOK_UPDATE_PAGE = """
    UPDATE runbook_pages SET url = ?, title = ?, content_hash = ?, fetched_at = ?, parsed_at = ?
    WHERE id = ?
"""
SQL_RUNBOOK_TOUCH_PAGE = "UPDATE runbook_pages SET fetched_at = ? WHERE id = ?"
SQL_RUNBOOK_DROP_SECTIONS = "DELETE FROM runbook_sections WHERE page_id = ?"
SQL_RUNBOOK_INSERT_SECTION = """
    INSERT INTO runbook_sections (page_id, position, anchor, title, body, url)
    VALUES (?, ?, ?, ?, ?, ?)
"""
SQL_RUNBOOK_PAGES = (
    "SELECT " + RUNBOOK_PAGE_COLUMNS + " FROM runbook_pages p "
    "WHERE (? IS NULL OR p.source = ?) ORDER BY p.source, p.key"
)
SQL_RUNBOOK_DELETE_PAGE = "DELETE FROM runbook_pages WHERE id = ?"
SQL_RUNBOOK_SECTION_COUNT = "SELECT count(*) FROM runbook_sections"
# Candidates for a query: FTS5's bm25 (title weighs 4x the body), best first.
SQL_RUNBOOK_SEARCH = """
    SELECT s.id, p.id, p.source, p.title, s.title, s.body, s.url
    FROM runbook_fts f JOIN runbook_sections s ON s.id = f.rowid
    JOIN runbook_pages p ON p.id = s.page_id
    WHERE runbook_fts MATCH ? ORDER BY bm25(runbook_fts, 4.0, 1.0), s.id LIMIT ?
"""
RUNBOOK_ANSWER_COLUMNS = "id, alert_id, fire_count, section_id, title, url, score, ref, created_at"
SQL_RUNBOOK_INSERT_ANSWER = (
    """
    INSERT INTO runbook_answers (alert_id, fire_count, section_id, title, url, score, ref,
                                 created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (alert_id, fire_count) DO NOTHING
    RETURNING """
    + RUNBOOK_ANSWER_COLUMNS
)
SQL_RUNBOOK_ANSWER = "SELECT " + RUNBOOK_ANSWER_COLUMNS + " FROM runbook_answers WHERE id = ?"
SQL_RUNBOOK_ANSWER_BY_REF = (
    "SELECT " + RUNBOOK_ANSWER_COLUMNS + " FROM runbook_answers WHERE ref = ? ORDER BY id DESC"
)
SQL_RUNBOOK_RATE = """
    INSERT INTO runbook_ratings (answer_id, user, helpful, rated_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (answer_id, user) DO UPDATE SET helpful = excluded.helpful,
        rated_at = excluded.rated_at
"""
SQL_RUNBOOK_RATING_COUNTS = """
    SELECT coalesce(sum(helpful), 0), coalesce(sum(1 - helpful), 0)
    FROM runbook_ratings WHERE answer_id = ?
"""
# Per alert, its latest answer (the highest fire_count) and the answer's rating counts.
SQL_RUNBOOK_ANSWERS_FOR = """
    SELECT a.alert_id, a.id, a.title, a.url, a.score,
        (SELECT coalesce(sum(r.helpful), 0) FROM runbook_ratings r WHERE r.answer_id = a.id),
        (SELECT coalesce(sum(1 - r.helpful), 0) FROM runbook_ratings r WHERE r.answer_id = a.id)
    FROM runbook_answers a
    WHERE a.alert_id IN ({marks}) AND a.fire_count = (
        SELECT max(b.fire_count) FROM runbook_answers b WHERE b.alert_id = a.alert_id)
"""


def runbook_search_params(words: list[str], limit: int) -> tuple[object, ...]:
    """FTS5 MATCH text for any of the words (each quoted: words are [a-z0-9]+ already)."""
    return (" OR ".join(f'"{w}"' for w in words), limit)


SQL_ALERTS_BETWEEN = (
    "SELECT " + ALERT_COLUMNS + " FROM alerts WHERE id IN "
    "(SELECT alert_id FROM alert_firings WHERE fired_at >= ? AND fired_at < ?) "
    "OR (resolved_at >= ? AND resolved_at < ?) OR (acknowledged_at >= ? AND acknowledged_at < ?) "
    "ORDER BY id"
)
SQL_INSERT_ALERT_FIRING = "INSERT INTO alert_firings (alert_id, fired_at) VALUES (?, ?)"
SQL_ALERT_FIRINGS = (
    "SELECT alert_id, fired_at, resolved_at, acknowledged_at FROM alert_firings "
    "WHERE fired_at >= ? AND fired_at < ? "
    "ORDER BY fired_at, id"
)
SQL_ACKNOWLEDGE_ALERT = (
    "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ?, updated_at = ? "
    "WHERE id = ? AND acknowledged_at IS NULL RETURNING " + ALERT_COLUMNS
)
SQL_ACKNOWLEDGE_ALERT_FIRING = (
    "UPDATE alert_firings SET acknowledged_at = ? WHERE acknowledged_at IS NULL AND id = "
    "(SELECT max(id) FROM alert_firings WHERE alert_id = ?)"
)
# A new firing is acknowledged anew: the alert forgets the last firing's acknowledgement.
SQL_CLEAR_ALERT_ACK = (
    "UPDATE alerts SET acknowledged_at = NULL, acknowledged_by = NULL WHERE id = ? "
    "RETURNING " + ALERT_COLUMNS
)
SQL_RESOLVE_ALERT_FIRING = (
    "UPDATE alert_firings SET resolved_at = ? WHERE resolved_at IS NULL AND id = "
    "(SELECT max(id) FROM alert_firings WHERE alert_id = ?)"
)
