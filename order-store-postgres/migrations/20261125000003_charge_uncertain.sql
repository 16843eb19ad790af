-- Set when a claim takes over a lease that was never settled or released: the worker that
-- held it died mid-payment and may have charged without recording it. Such an order is
-- never failed until the gateway gives a definitive answer.
ALTER TABLE orders ADD COLUMN charge_uncertain BOOLEAN NOT NULL DEFAULT false;
