-- Orders, their items and payment attempts. Money is NUMERIC (exact), times are timestamptz.
CREATE TABLE orders (
    id               UUID PRIMARY KEY,
    customer_id      TEXT NOT NULL CHECK (char_length(customer_id) BETWEEN 1 AND 100),
    total_amount     NUMERIC(16, 2) NOT NULL CHECK (total_amount >= 0),
    status           TEXT NOT NULL CHECK (status IN
                         ('pending', 'payment_processing', 'confirmed', 'payment_failed', 'cancelled')),
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    -- When the next payment attempt may start (created_at at first, then retry times).
    due_at           TIMESTAMPTZ NOT NULL,
    -- The worker lease: a fencing token, who holds it, until when.
    lease_token      UUID,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ
);

CREATE TABLE order_items (
    order_id  UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position  SMALLINT NOT NULL,
    item_id   TEXT NOT NULL CHECK (char_length(item_id) BETWEEN 1 AND 100),
    item_name TEXT NOT NULL CHECK (char_length(item_name) BETWEEN 1 AND 255),
    quantity  INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 10000),
    price     NUMERIC(9, 2) NOT NULL CHECK (price > 0 AND price <= 1000000),
    PRIMARY KEY (order_id, position)
);

CREATE TABLE payment_attempts (
    order_id       UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    number         INTEGER NOT NULL CHECK (number >= 1),
    outcome        TEXT NOT NULL CHECK (outcome IN ('succeeded', 'declined', 'failed', 'timed_out')),
    transaction_id TEXT,
    decline_reason TEXT,
    error          TEXT,
    started_at     TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, number)
);

-- Listing a customer's orders newest first, with or without a status.
CREATE INDEX orders_customer_created_idx ON orders (customer_id, created_at DESC, id DESC);
-- Listing by status alone, newest first.
CREATE INDEX orders_status_created_idx ON orders (status, created_at DESC, id DESC);
-- Listing everything newest first.
CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC);
-- The reconciler's scan: only live orders, by due time; small however large the table grows.
CREATE INDEX orders_due_idx ON orders (due_at) WHERE status IN ('pending', 'payment_processing');
