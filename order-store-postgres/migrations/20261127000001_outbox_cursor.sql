-- The outbox is read through a cursor instead of a flag on every event: fanning an event out
-- no longer rewrites its row (an update of the row and of three of its indexes per status
-- change), and the fan-out's scan reads only events past the cursor, never dead entries of
-- a partial index.
--
-- Each event records the transaction that wrote it. Events are fanned out in the order of
-- (transaction, seq), and only those whose transaction is older than every transaction
-- still running (the snapshot's xmin): every such transaction has ended, so no event can
-- appear later behind the cursor, which a cursor over `seq` alone could not promise
-- (sequence values are taken in one order and committed in another).

-- Writers of orders (whose triggers write events) finish before this runs and wait until it
-- commits, so no transaction older than this one writes an event after it.
LOCK TABLE orders IN EXCLUSIVE MODE;

ALTER TABLE order_events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();

-- Where the fan-out has got to: every event at or before (xid, seq) is fanned out.
CREATE TABLE webhook_fan_out (
    one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    xid xid8 NOT NULL,
    seq BIGINT NOT NULL
);

-- Events written before this migration (all now carry this transaction's id) that were not
-- fanned out yet are fanned out here, as the dispatcher would have, so the cursor can start
-- after all of them.
INSERT INTO webhook_deliveries (event_id, endpoint_id, due_at)
SELECT ev.id, e.id, now() FROM order_events ev JOIN webhook_endpoints e
    ON e.enabled AND ev.type = ANY(e.events)
WHERE NOT ev.fanned_out
ON CONFLICT (event_id, endpoint_id) DO NOTHING;

INSERT INTO webhook_fan_out (xid, seq)
SELECT pg_current_xact_id(), COALESCE(max(seq), 0) FROM order_events;

DROP INDEX order_events_unfanned_idx;
ALTER TABLE order_events DROP COLUMN fanned_out;

-- The fan-out's scan: events past the cursor, in cursor order (purging reads the oldest
-- events through it too).
CREATE INDEX order_events_cursor_idx ON order_events (xid, seq);

-- Events are keyed by their id, which deliveries reference; `seq` only orders them, through
-- the two indexes above, and needs no index of its own (one index fewer per status change).
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_event_id_fkey;
ALTER TABLE order_events DROP CONSTRAINT order_events_pkey;
ALTER TABLE order_events DROP CONSTRAINT order_events_id_key;
ALTER TABLE order_events ADD PRIMARY KEY (id);
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES order_events (id);
