-- Client idempotency keys: one per request that created (or is creating) an order.
CREATE TABLE request_keys (
    key         TEXT PRIMARY KEY CHECK (char_length(key) BETWEEN 1 AND 255),
    -- SHA-256 of the parsed order, to tell a retry from a different request.
    fingerprint BYTEA NOT NULL,
    -- The reservation's token; only its holder may complete the key.
    token       UUID NOT NULL,
    reserved_at TIMESTAMPTZ NOT NULL,
    -- Set in the same statement that stores the order.
    order_id    UUID
);

-- Purging keys past their retention.
CREATE INDEX request_keys_reserved_idx ON request_keys (reserved_at);
