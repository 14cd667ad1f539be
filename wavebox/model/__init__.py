"""The pure wave model: ids, document operations, OT, wavelet operations, deltas and hashed versions.

No Twisted and no I/O here: everything above builds on it."""
