-- Cancellation and refunds.

-- `cancelling`: a cancellation was asked for after payment started; a worker refunds the
-- capture (or voids the charge) before the order is `cancelled`.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN
    ('pending', 'payment_processing', 'confirmed', 'payment_failed', 'cancelling', 'cancelled'));

-- The cancellation: when it was recorded and why.
ALTER TABLE orders ADD COLUMN cancel_requested_at TIMESTAMPTZ;
ALTER TABLE orders ADD COLUMN cancel_reason TEXT CHECK (cancel_reason IN
    ('requested_by_customer', 'duplicate', 'fraudulent', 'restaurant_unavailable', 'other'));

-- `due_at` is null once no worker has anything left to do (a settled order), so the
-- reconciler's index holds only orders with work pending, whatever their status is called,
-- and a cancellation of a confirmed order makes it due again.
ALTER TABLE orders ALTER COLUMN due_at DROP NOT NULL;
UPDATE orders SET due_at = NULL WHERE status IN ('confirmed', 'payment_failed', 'cancelled');
DROP INDEX orders_due_idx;
CREATE INDEX orders_due_idx ON orders (due_at) WHERE due_at IS NOT NULL;

-- Attempts are charges or refunds, each numbered from 1; a refund records its amount, and
-- its gateway refund id goes in `transaction_id`.
ALTER TABLE payment_attempts ADD COLUMN kind TEXT NOT NULL DEFAULT 'charge'
    CHECK (kind IN ('charge', 'refund'));
ALTER TABLE payment_attempts ADD COLUMN amount NUMERIC(16, 2) CHECK (amount >= 0);
ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_pkey;
ALTER TABLE payment_attempts ADD PRIMARY KEY (order_id, kind, number);
ALTER TABLE payment_attempts DROP CONSTRAINT payment_attempts_outcome_check;
ALTER TABLE payment_attempts ADD CONSTRAINT payment_attempts_outcome_check CHECK (outcome IN
    ('succeeded', 'declined', 'failed', 'timed_out', 'refunded', 'nothing_captured', 'refused'));
