-- API keys: the SHA-256 of each secret, never the secret itself.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scopes TEXT[] NOT NULL,
    customer_id TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    secret_sha256 BYTEA NOT NULL CHECK (octet_length(secret_sha256) = 32)
);

CREATE INDEX api_keys_newest ON api_keys (created_at DESC, id DESC);
