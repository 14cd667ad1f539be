-- The first schema of the SQLite store.
CREATE TABLE wavelet (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL DEFAULT 0,
    hash BLOB,
    last_modified_ms INTEGER NOT NULL DEFAULT 0,
    hosted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE delta (
    wavelet_id INTEGER NOT NULL REFERENCES wavelet (id),
    applied_at_version INTEGER NOT NULL,
    resulting_version INTEGER NOT NULL,
    resulting_hash BLOB NOT NULL,
    author TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    applied_delta BLOB NOT NULL,
    PRIMARY KEY (wavelet_id, applied_at_version),
    CHECK (resulting_version > applied_at_version)
);
CREATE UNIQUE INDEX delta_by_end ON delta (wavelet_id, resulting_version);
CREATE TABLE snapshot (
    wavelet_id INTEGER PRIMARY KEY REFERENCES wavelet (id),
    version INTEGER NOT NULL,
    blob BLOB NOT NULL
);
CREATE TABLE participant (
    address TEXT NOT NULL,
    wavelet_id INTEGER NOT NULL REFERENCES wavelet (id),
    position INTEGER NOT NULL,
    PRIMARY KEY (address, wavelet_id)
);
CREATE INDEX participant_by_wavelet ON participant (wavelet_id, position);
CREATE TABLE read_mark (
    address TEXT NOT NULL,
    wavelet_name TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (address, wavelet_name)
) WITHOUT ROWID;
CREATE TABLE account (
    address TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL
);
CREATE TABLE signer_info (
    signer_id BLOB PRIMARY KEY,
    domain TEXT NOT NULL,
    blob BLOB NOT NULL
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX outbox_by_destination ON outbox (destination, id);
CREATE TABLE outbox_retry (
    destination TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL
);
