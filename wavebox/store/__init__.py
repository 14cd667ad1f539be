"""The durable wavelet store: applied-delta bytes per wavelet, snapshots, the inbox."""
