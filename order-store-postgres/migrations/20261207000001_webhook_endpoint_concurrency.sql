-- A claim hands out an endpoint's deliveries only while fewer than its share are leased:
-- per endpoint, its pending deliveries by due time, and the ones under a lease (a lease is
-- cleared when its attempt is recorded, so this index holds only the posts under way).
CREATE INDEX webhook_deliveries_endpoint_due_idx
    ON webhook_deliveries (endpoint_id, due_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_leased_idx
    ON webhook_deliveries (endpoint_id, lease_expires_at)
    WHERE state = 'pending' AND lease_expires_at IS NOT NULL;
