-- The processor's token for how the customer pays (Stripe's `pm_card_visa`, say), when
-- the order named one: the worker sends it with every charge of the order. Nullable with
-- no default, so adding it rewrites no row.
ALTER TABLE orders ADD COLUMN payment_method TEXT;
