-- The W3C `traceparent` of the request that placed an order, when it was traced: the
-- worker's payment and refund of the order join that trace, also when the reconciler
-- queues the order again.
--
-- A domain, not a CHECK on `orders`: a table's CHECK constraints are read and prepared
-- again by every statement that writes the table (each claim and settlement), while a
-- domain's are prepared once per connection and checked only when a value is assigned.
CREATE DOMAIN traceparent AS TEXT
    CHECK (VALUE ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$');
ALTER TABLE orders ADD COLUMN traceparent traceparent;
