"""
Rough speed of the model, wire and crypto layers on this machine.

    python benchmarks/model_bench.py [blips]

Prints figures; asserts nothing.
"""

import sys
import time

sys.path.insert(0, ".")

from wavebox import crypto  # noqa: E402
from wavebox.model.conversation import append_blip_ops, create_wave  # noqa: E402
from wavebox.model.delta import SignedDelta, TransformedDelta, WaveletDelta  # noqa: E402
from wavebox.model.ids import IdGenerator, ParticipantId, WaveletName  # noqa: E402
from wavebox.model.wavelet import WaveletState  # noqa: E402
from wavebox.wire import convert  # noqa: E402


def rate(label, n, seconds, unit="op"):
    print(f"{label:<44} {n / seconds:>12,.0f} {unit}/s  ({seconds * 1e6 / n:,.1f} us each)")


def timed(fn, n):
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - start


def main(blips=2000):
    name = WaveletName.of("a.test", "w+abc~!x", "b.test", "conv+root")
    uri = name.uri
    rate("wavelet name -> URI", 50000, timed(lambda: name.uri, 50000))
    rate("URI -> wavelet name", 50000, timed(lambda: WaveletName.from_uri(uri), 50000))

    alice = ParticipantId("alice@a.test")
    ids = IdGenerator("a.test", seed="B")
    name, ops = create_wave(ids, alice)
    state = WaveletState(name)
    key, cert = crypto.generate_key_and_certificate("a.test")
    signer = crypto.Signer(key, [cert], "a.test")
    infos = {signer.signer_id: signer.signer_info}

    applied_bytes = []
    start = time.perf_counter()
    t = 0
    for i in range(blips):
        if i:
            ops = append_blip_ops(state, ids.new_blip_id(), f"line number {i}")
        delta = WaveletDelta(alice, state.hashed_version, ops)
        data = convert.serialize_wavelet_delta(delta)
        signed = SignedDelta(data, (signer.sign(data),), delta)
        t += 1
        applied = convert.build_applied_delta(signed, state.hashed_version, len(ops), t)
        state.apply_delta(TransformedDelta.from_applied(applied, ops))
        applied_bytes.append(applied.applied_delta_bytes)
    rate("local blip: build, sign, serialise, apply", blips, time.perf_counter() - start, "delta")

    start = time.perf_counter()
    parsed = [convert.parse_applied_delta(b) for b in applied_bytes]
    rate("parse applied delta", blips, time.perf_counter() - start, "delta")

    start = time.perf_counter()
    for p in parsed:
        crypto.verify_signed_delta(p.delta_bytes, p.signed_delta.signatures, infos, [cert],
                                   delta=p.delta, check_chain=False)
    rate("verify signature (RSA-2048, chain skipped)", blips, time.perf_counter() - start, "delta")

    start = time.perf_counter()
    replica = WaveletState(name)
    for p in parsed:
        replica.apply_delta(TransformedDelta.from_applied(p, p.delta.operations))
    rate("remote apply (hash + ops)", blips, time.perf_counter() - start, "delta")

    start = time.perf_counter()
    snap = state.to_snapshot()
    write = time.perf_counter() - start
    start = time.perf_counter()
    WaveletState.from_snapshot(snap)
    read = time.perf_counter() - start
    print(f"snapshot of {blips} blips: {len(snap):,} bytes, write {write * 1e3:.1f} ms, "
          f"read {read * 1e3:.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
