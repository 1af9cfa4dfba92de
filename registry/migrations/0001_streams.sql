-- The registered streams: the same records as the bbolt file's "streams"
-- bucket (the key is kept as its SHA-256 only).
CREATE TABLE streamhub_streams (
    id       text PRIMARY KEY,
    name     text NOT NULL,
    created  timestamptz NOT NULL,
    key_hash bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32)
);

-- The ids of deleted streams: their paths stay closed (the "deleted"
-- bucket), so nobody takes over a deleted stream's viewers or links.
CREATE TABLE streamhub_deleted_streams (
    id      text PRIMARY KEY,
    deleted timestamptz NOT NULL
);
