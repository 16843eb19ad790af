-- Payments captured later: an order placed with manual capture is only authorized by the
-- worker's charge; a capture (at most the authorized total, once) takes the money.
--   capture_method        automatic (captured with the charge) or manual;
--   capture_amount        what a capture is asked to take, once one is;
--   capture_requested_at  when it was asked for;
--   captured_at           when the gateway took it (null while that is not known).
-- Adding a column with a constant default rewrites no row.
ALTER TABLE orders
    ADD COLUMN capture_method TEXT NOT NULL DEFAULT 'automatic'
        CHECK (capture_method IN ('automatic', 'manual')),
    ADD COLUMN capture_amount NUMERIC,
    ADD COLUMN capture_requested_at TIMESTAMPTZ,
    ADD COLUMN captured_at TIMESTAMPTZ;
