-- An endpoint may belong to one customer: it then receives only the events of that
-- customer's orders, and only keys acting for that customer (or for every customer) see it.
-- Endpoints from before belong to no one, and keep receiving every customer's events.
ALTER TABLE webhook_endpoints
    ADD COLUMN owner TEXT CHECK (char_length(owner) BETWEEN 1 AND 100);

-- A customer's endpoints, oldest first (ids are time-ordered), and the count of its quota.
CREATE INDEX webhook_endpoints_owner_idx ON webhook_endpoints (owner, id);
