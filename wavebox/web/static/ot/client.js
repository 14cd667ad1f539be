// The client side of the Wave/Jupiter protocol for one wavelet, as a pure
// state machine: no DOM, no socket, no timers.  The page tells it what the
// person did (``local``), what the server said (``receiveDelta``,
// ``receiveAck``), and asks it for the delta to send next (``takeDelta``);
// it answers with the operations to apply to the local wavelet.
//
// The rules (docs/web.rst, "Live typing: the client's OT"):
// - One delta is in flight at a time.  What is done meanwhile is gathered
//   into the next delta, edits of one document composed into one mutation.
// - A delta from the server is transformed against the delta in flight and
//   the ones gathered, so the local text never jumps; ours, transformed the
//   same way, stay what the server will make of them.
// - The acknowledgement of our delta (its resulting version and how many
//   operations were applied) moves our version past it.  Messages ahead of
//   our version wait until the ones before them have come, so an
//   acknowledgement and the deltas around it may arrive in either order.
// - A delta of the server at our version, by our author, with exactly the
//   operations of our delta in flight, is that delta (the server's echo, or
//   the earlier identical submission the server counts ours a duplicate of,
//   as wavebox/model/operations.transform_delta does).
// - Anything that cannot be reconciled (the server refused our delta, a
//   history hash differs, a transform fails) puts the machine in ``failed``:
//   the page must load the wavelet afresh.

import {TransformError} from "./docop.js";
import {
  deltaAccepts, gather, normalizeAddress, operationKind, sameOperations, transformOperations,
} from "./wavelet.js";

export class ClientStateError extends Error {
  constructor(message) { super(message); this.name = "ClientStateError"; }
}

export class WaveletClient {
  /**
   * ``author``: our participant address; ``version``: the hashed version
   * ({version, history_hash}) of the wavelet state the page shows.
   */
  constructor({author, version}) {
    this.author = normalizeAddress(author);
    this.version = {version: version.version, history_hash: version.history_hash};
    this.inFlight = null;   // the operations of our delta the server has not acknowledged
    this.gathered = [];     // deltas not yet sent, each a list of operations (oldest first)
    this.waiting = [];      // server messages ahead of our version
    this.failed = null;     // the reason, once the machine cannot go on
  }

  /** Nothing in flight and nothing gathered: the server has everything we did. */
  get idle() {
    return this.inFlight === null && this.gathered.length === 0;
  }

  /** The person did ``op`` (already applied to the page's wavelet). */
  local(op) {
    this.check();
    operationKind(op);
    const last = this.gathered[this.gathered.length - 1];
    if (last !== undefined && deltaAccepts(last, op)) {
      this.gathered[this.gathered.length - 1] = gather(last, op);
    } else {
      this.gathered.push([op]);
    }
  }

  /**
   * The delta to send now ({author, hashed_version, operations}), or null:
   * nothing gathered, or a delta already in flight.  Throws
   * ClientStateError once the machine has failed.
   */
  takeDelta() {
    this.check();
    if (this.inFlight !== null || !this.gathered.length) return null;
    this.inFlight = this.gathered.shift();
    return {author: this.author, hashed_version: {...this.version}, operations: this.inFlight};
  }

  /**
   * A delta the server applied ({author, applied_at, resulting_version,
   * operations, application_timestamp}).  Returns the operations to apply
   * to the page's wavelet, in order (this delta's and any that waited).
   */
  receiveDelta(delta) {
    this.check();
    return this.settle({delta});
  }

  /**
   * The server's answer to our delta ({operations_applied,
   * hashed_version_after, ...}).  Returns the operations to apply to the
   * page's wavelet (those of deltas that were waiting for it).
   */
  receiveAck(result) {
    this.check();
    return this.settle({ack: result});
  }

  /** The server refused our delta: our wavelet has what the server has not. */
  receiveRefusal(reason) {
    this.fail(`the server refused our delta: ${reason}`);
  }

  check() {
    if (this.failed !== null) throw new ClientStateError(this.failed);
  }

  fail(reason) {
    if (this.failed === null) this.failed = reason;
    throw new ClientStateError(this.failed);
  }

  settle(message) {
    const out = [];
    this.waiting.push(message);
    for (let progress = true; progress;) {
      progress = false;
      for (let i = 0; i < this.waiting.length; i++) {
        const m = this.waiting[i];
        const verdict = m.delta ? this.deltaVerdict(m.delta) : this.ackVerdict(m.ack);
        if (verdict === "wait") continue;
        this.waiting.splice(i, 1);
        if (verdict === "now") {
          if (m.delta) out.push(...this.applyDelta(m.delta));
          else this.applyAck(m.ack);
        }
        progress = true;
        break;
      }
    }
    return out;
  }

  /** "now", "wait" (ahead of our version) or "known" (behind it: already had). */
  deltaVerdict(delta) {
    const at = delta.applied_at.version, after = delta.resulting_version.version;
    if (after !== at + delta.operations.length) {
      this.fail(`delta applied at ${at} with ${delta.operations.length} operations cannot `
        + `result in version ${after}`);
    }
    if (at === this.version.version) {
      if (delta.applied_at.history_hash !== this.version.history_hash) {
        this.fail(`the server's history differs from ours at version ${at}`);
      }
      return "now";
    }
    if (at > this.version.version) return "wait";
    if (after <= this.version.version) return "known";
    return this.fail(`delta from ${at} to ${after} straddles our version ${this.version.version}`);
  }

  ackVerdict(result) {
    const after = result.hashed_version_after.version;
    const at = after - result.operations_applied;
    if (after <= this.version.version) return "known";
    if (at > this.version.version) return "wait";
    if (at < this.version.version) {
      this.fail(`acknowledgement from ${at} to ${after} straddles our version ${this.version.version}`);
    }
    return "now";
  }

  applyAck(result) {
    if (this.inFlight === null) {
      this.fail(`acknowledgement at version ${this.version.version} with no delta in flight`);
    }
    if (result.operations_applied !== this.inFlight.length) {
      this.fail(`the server applied ${result.operations_applied} operations of our `
        + `${this.inFlight.length}`);
    }
    this.inFlight = null;
    this.version = {...result.hashed_version_after};
  }

  applyDelta(delta) {
    const author = normalizeAddress(delta.author);
    this.version = {...delta.resulting_version};
    if (this.inFlight !== null && author === this.author
        && sameOperations(delta.operations, this.inFlight)) {
      this.inFlight = null;
      return [];
    }
    let ops = delta.operations;
    try {
      if (this.inFlight !== null) {
        [this.inFlight, ops] = transformOperations(this.inFlight, this.author, ops);
      }
      for (let i = 0; i < this.gathered.length; i++) {
        [this.gathered[i], ops] = transformOperations(this.gathered[i], this.author, ops);
      }
    } catch (e) {
      if (e instanceof TransformError) this.fail(`a delta of ${author} cannot be reconciled: ${e.message}`);
      throw e;
    }
    return ops;
  }
}
