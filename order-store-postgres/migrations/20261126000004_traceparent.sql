-- The W3C `traceparent` of the request that placed an order, when it was traced: the
-- worker's payment and refund of the order join that trace, also when the reconciler
-- queues the order again.
ALTER TABLE orders ADD COLUMN traceparent TEXT
    CHECK (traceparent ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$');
