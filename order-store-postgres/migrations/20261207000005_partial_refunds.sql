-- Refunds asked for on their own: part (or all) of a confirmed order's captured payment
-- given back while the order keeps its status, each under a key of its own.
--   orders.refunds_reserved  what the order's refunds hold back of its capture: pending
--                            ones by what they ask, given ones by what they gave. Only the
--                            statements that write order_refunds change it, each under the
--                            order's row lock, so that lock decides every race;
--   orders.refund_count      how many were asked for (it numbers them).
-- Adding a column with a constant default rewrites no row.
ALTER TABLE orders
    ADD COLUMN refunds_reserved NUMERIC NOT NULL DEFAULT 0 CHECK (refunds_reserved >= 0),
    ADD COLUMN refund_count INTEGER NOT NULL DEFAULT 0;

-- One row per refund: pending while `outcome` is null; `given` is what a refund gave back.
CREATE TABLE order_refunds (
    order_id      UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    number        INTEGER NOT NULL CHECK (number > 0),
    key           TEXT NOT NULL,
    amount        NUMERIC NOT NULL CHECK (amount > 0),
    items         JSONB NOT NULL DEFAULT '[]',
    reason        TEXT,
    requested_at  TIMESTAMPTZ NOT NULL,
    outcome       TEXT CHECK (outcome IN ('refunded', 'refused')),
    refund_id     TEXT,
    given         NUMERIC CHECK (given >= 0),
    error         TEXT,
    answered_at   TIMESTAMPTZ,
    PRIMARY KEY (order_id, number),
    UNIQUE (order_id, key),
    CHECK ((outcome IS NULL) = (answered_at IS NULL)),
    CHECK (outcome <> 'refunded' OR (refund_id IS NOT NULL AND given IS NOT NULL))
);
-- The refunds whose outcome is not known, for the sweep that asks the gateway about them.
CREATE INDEX order_refunds_pending_idx ON order_refunds (requested_at) WHERE outcome IS NULL;
