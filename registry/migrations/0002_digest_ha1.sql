-- The RTSP Digest HA1 of each stream's key, MD5(id:streamhub:key), kept
-- beside its SHA-256 (the bbolt records' digestHA1): NULL for a stream
-- whose key was made before streamhub kept it, until the key is rotated.
ALTER TABLE streamhub_streams
    ADD COLUMN digest_ha1 bytea CHECK (digest_ha1 IS NULL OR length(digest_ha1) = 16);
