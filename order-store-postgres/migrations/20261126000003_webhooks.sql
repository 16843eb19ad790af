-- Webhooks: the outbox of order events, the endpoints that subscribe to them, one delivery
-- per event and endpoint, and every attempt.

-- The outbox. Rows are written by the triggers below, in the statement that changes the
-- order, so an event is committed exactly when its status change is.
CREATE TABLE order_events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          UUID NOT NULL UNIQUE,
    order_id    UUID NOT NULL,
    type        TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    -- Set once the event has a delivery for every endpoint subscribed when it was fanned out.
    fanned_out  BOOLEAN NOT NULL DEFAULT false
);

CREATE INDEX order_events_order_idx ON order_events (order_id, seq);
-- The dispatcher's scan: only events still to fan out.
CREATE INDEX order_events_unfanned_idx ON order_events (seq) WHERE NOT fanned_out;

-- `order.created` for every order a statement inserts (one insert per statement, however
-- many orders a group commit stores).
CREATE FUNCTION record_orders_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_events (id, order_id, type, occurred_at)
    SELECT gen_random_uuid(), n.id, 'order.created', n.created_at
    FROM new_orders n ORDER BY n.created_at, n.id;
    RETURN NULL;
END $$;

CREATE TRIGGER orders_created AFTER INSERT ON orders
    REFERENCING NEW TABLE AS new_orders
    FOR EACH STATEMENT EXECUTE FUNCTION record_orders_created();

-- `order.<new status>` for every order whose status a statement changed, then
-- `order.refunded` for a cancellation whose last refund attempt gave money back. It runs
-- at the end of the statement, so it sees the attempt the same statement appended.
CREATE FUNCTION record_order_status_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_events (id, order_id, type, occurred_at)
    SELECT gen_random_uuid(), n.id, 'order.' || n.status, n.updated_at
    FROM new_orders n JOIN old_orders o ON o.id = n.id
    WHERE n.status <> o.status ORDER BY n.id;
    INSERT INTO order_events (id, order_id, type, occurred_at)
    SELECT gen_random_uuid(), n.id, 'order.refunded', n.updated_at
    FROM new_orders n JOIN old_orders o ON o.id = n.id
    WHERE o.status = 'cancelling' AND n.status = 'cancelled'
      AND (SELECT a.outcome FROM payment_attempts a
           WHERE a.order_id = n.id AND a.kind = 'refund'
           ORDER BY a.number DESC LIMIT 1) = 'refunded'
    ORDER BY n.id;
    RETURN NULL;
END $$;

CREATE TRIGGER orders_status_changed AFTER UPDATE ON orders
    REFERENCING OLD TABLE AS old_orders NEW TABLE AS new_orders
    FOR EACH STATEMENT EXECUTE FUNCTION record_order_status_changes();

CREATE TABLE webhook_endpoints (
    id                         UUID PRIMARY KEY,
    url                        TEXT NOT NULL CHECK (char_length(url) <= 2000),
    events                     TEXT[] NOT NULL CHECK (cardinality(events) >= 1),
    description                TEXT NOT NULL,
    enabled                    BOOLEAN NOT NULL,
    disabled_reason            TEXT,
    -- Signing needs the secret itself (HMAC), so it is kept, unlike API keys' hashes.
    secret                     BYTEA NOT NULL,
    previous_secret            BYTEA,
    previous_secret_expires_at TIMESTAMPTZ,
    failing_since              TIMESTAMPTZ,
    created_at                 TIMESTAMPTZ NOT NULL,
    updated_at                 TIMESTAMPTZ NOT NULL
);

CREATE TABLE webhook_deliveries (
    event_id         UUID NOT NULL REFERENCES order_events (id),
    endpoint_id      UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    state            TEXT NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    due_at           TIMESTAMPTZ NOT NULL,
    lease_token      UUID,
    lease_expires_at TIMESTAMPTZ,
    PRIMARY KEY (event_id, endpoint_id)
);

-- The dispatcher's claim: only deliveries still pending, by due time.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (due_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id);

CREATE TABLE webhook_attempts (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         UUID NOT NULL,
    event_type       TEXT NOT NULL,
    endpoint_id      UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    attempt          INTEGER NOT NULL CHECK (attempt >= 1),
    attempted_at     TIMESTAMPTZ NOT NULL,
    status_code      INTEGER,
    error            TEXT,
    latency_us       BIGINT NOT NULL,
    -- At most a short excerpt of what the receiver answered.
    response_excerpt TEXT NOT NULL CHECK (octet_length(response_excerpt) <= 1024),
    delivered        BOOLEAN NOT NULL
);

CREATE INDEX webhook_attempts_endpoint_idx ON webhook_attempts (endpoint_id, id DESC);
