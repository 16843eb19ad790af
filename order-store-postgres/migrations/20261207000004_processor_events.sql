-- The processor's events received (Stripe's `evt_...` ids), so that an event sent again is
-- not acted on again. Purged with the request keys.
CREATE TABLE processor_events (
    id TEXT PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX processor_events_received_at ON processor_events (received_at);
