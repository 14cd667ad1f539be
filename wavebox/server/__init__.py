"""The wave server core: one container per wavelet, submit, transform, sign, store, notify."""
