// Operational transformation of document operations (wave-protocol.md 6.5;
// the server's wavebox/model/doctransform.py, built as Java's Transformer).
//
// transform(client, server) returns [client', server'] such that applying
// client then server' gives the same document as server then client'.  The
// client is the operation being submitted (in the browser: our own delta,
// which the server will also transform as the submitted side), the server
// the one already in the history.  Tie-breaks: at the same position the
// client's insertion goes first; on the same attribute or annotation key the
// client's value wins; an attribute change to an element the other side
// deletes vanishes, and the deletion deletes the changed element.
//
// Each operation is split into its insertions and the rest; the parts are
// transformed pairwise in the grid below and the results composed again, so
// the transformed operations assert exactly the annotation values Java's
// (and the server's) do:
//
//         ci0     cn0
//     si0     si1     si2
//         ci1     cn1
//     sn0     sn1     sn2
//         ci2     cn2

import {
  ComposeError, DELETE_ELEMENT_END, Normalizer, TransformError, attributeUpdates,
  boundaryChanges, boundaryEnds, inputLength, inputSize, isComponent, kind, newMap,
  sortedObject,
} from "./docop.js";
import {attributesUpdated, compose} from "./compose.js";

// --------------------------------------------------------------------------
// Decomposition

/** [insertions, rest] with compose(insertions, rest) == op (up to normal form). */
export function decompose(op) {
  const ins = new Normalizer();
  const rest = new Normalizer();
  for (const c of op) {
    switch (kind(c)) {
      case "r": ins.retain(c.r); rest.retain(c.r); break;
      case "c": ins.characters(c.c); rest.retain(c.c.length); break;
      case "es": case "ee": ins.single(c); rest.retain(1); break;
      case "ab": rest.boundary(c); break;
      case "dc": ins.retain(c.dc.length); rest.deleteCharacters(c.dc); break;
      default: ins.retain(1); rest.single(c);
    }
  }
  return [ins.finish(), rest.finish()];
}

function insertionSize(c) {
  return kind(c) === "c" ? c.c.length : 1;
}

function emitInsertion(out, c) {
  if (kind(c) === "c") out.characters(c.c);
  else out.single(c);
}

class Cursor {
  constructor(op) { this.op = op; this.i = 0; }
  next() { return this.i < this.op.length ? this.op[this.i++] : null; }
}

function retainCount(c) {
  return c !== null && kind(c) === "r" ? c.r : 0;
}

// --------------------------------------------------------------------------
// Insertions against insertions

function transformInsertions(client, server) {
  const cOut = new Normalizer();
  const sOut = new Normalizer();
  const cs = new Cursor(client), ss = new Cursor(server);
  let c = cs.next(), s = ss.next();
  let cLeft = retainCount(c), sLeft = retainCount(s);
  while (c !== null || s !== null) {
    if (c !== null && kind(c) !== "r") {
      emitInsertion(cOut, c);
      sOut.retain(insertionSize(c));
      c = cs.next();
      cLeft = retainCount(c);
    } else if (s !== null && kind(s) !== "r") {
      emitInsertion(sOut, s);
      cOut.retain(insertionSize(s));
      s = ss.next();
      sLeft = retainCount(s);
    } else if (c === null || s === null) {
      throw new TransformError("operations of different lengths");
    } else {
      const k = Math.min(cLeft, sLeft);
      cOut.retain(k);
      sOut.retain(k);
      cLeft -= k;
      sLeft -= k;
      if (!cLeft) {
        c = cs.next();
        cLeft = retainCount(c);
      }
      if (!sLeft) {
        s = ss.next();
        sLeft = retainCount(s);
      }
    }
  }
  return [cOut.finish(), sOut.finish()];
}

// --------------------------------------------------------------------------
// Insertions against everything else

/**
 * Transforms an insertion-only operation against an insertion-free one.
 * ``gap`` is the insertion cursor minus the other cursor (in the original
 * document); ``pending`` is the part of the other side's current component
 * beyond the insertion cursor, and ``depth`` counts the element deletions the
 * other side is inside: an insertion there is deleted too.
 */
class InsertionAgainstRest {
  constructor() {
    this.insOut = new Normalizer();
    this.restOut = new Normalizer();
    this.gap = 0;
    this.depth = 0;
    this.pending = {r: 0};
  }

  /** Write the first ``k`` items of the other side's component ``c``; return what is left. */
  resolve(c, k) {
    const t = kind(c);
    if (t === "r") {
      this.restOut.retain(k);
      this.insOut.retain(k);
      return c;
    }
    if (t === "dc") {
      this.restOut.deleteCharacters(c.dc.slice(0, k));
      return {dc: c.dc.slice(k)};
    }
    this.restOut.single(c);
    if (t === "des") this.depth += 1;
    else if (t === "dee") this.depth -= 1;
    else this.insOut.retain(1);  // an attribute change
    return c;
  }

  insertionComponent(c) {
    const t = kind(c);
    if (t === "r") {
      const old = this.gap;
      this.gap += c.r;
      if (this.gap < 0) this.pending = this.resolve(this.pending, c.r);
      else if (old < 0) this.pending = this.resolve(this.pending, -old);
    } else if (this.depth > 0) {
      if (t === "c") this.restOut.deleteCharacters(c.c);
      else if (t === "es") this.restOut.single({des: [c.es[0], c.es[1]]});
      else this.restOut.single(DELETE_ELEMENT_END);
    } else {
      emitInsertion(this.insOut, c);
      this.restOut.retain(insertionSize(c));
    }
  }

  restComponent(c) {
    const t = kind(c);
    if (t === "ab") {
      this.restOut.boundary(c);
      return;
    }
    const size = inputSize(c);
    const old = -this.gap;
    this.gap -= size;
    if (-this.gap > 0) {
      // Ends beyond the insertion cursor: write the part before it, keep the rest.
      if (old < 0) c = this.resolve(c, -old);
      if (t === "r" || old === 0 || t === "dc") this.pending = c;
    } else {
      this.resolve(c, size);
      if (t === "r") this.pending = c;
    }
  }
}

function transformInsertionAgainstRest(insertions, rest) {
  const w = new InsertionAgainstRest();
  const others = new Cursor(rest);
  for (const c of insertions) {
    w.insertionComponent(c);
    while (w.gap > 0) {
      const d = others.next();
      if (d === null) throw new TransformError("operations of different lengths");
      w.restComponent(d);
    }
  }
  for (let d = others.next(); d !== null; d = others.next()) w.restComponent(d);
  return [w.insOut.finish(), w.restOut.finish()];
}

// --------------------------------------------------------------------------
// Everything but insertions, against each other

const INCOMPATIBLE = "Incompatible operations in transformation";

function pairOf(map, key) {
  const v = map.get(key);
  return v === undefined ? null : v;
}

function samePair(a, b) {
  return a !== null && b !== null && a[0] === b[0] && a[1] === b[1];
}

/**
 * One side of the insertion-free transform: its output, the part of its
 * current component beyond the other cursor (``pending``), the element
 * deletions it is inside, and its annotation bookkeeping:
 * - own: the update its own boundaries set (what it asks for);
 * - active: the update in force in its output;
 * - changed: keys whose active value changed since both sides last wrote a
 *   common item, with the value before (null: absent);
 * - saved: values to restore after a deletion.
 */
class Side {
  constructor() {
    this.out = new Normalizer();
    this.pending = {r: 0};
    this.depth = 0;
    this.own = new Map();
    this.active = new Map();
    this.changed = new Map();
    this.saved = new Map();
    this.other = null;
  }

  /** Put ends and changes ([key, old, new]) into force in this side's output. */
  commit(ends, changes) {
    for (const key of ends) {
      if (!this.changed.has(key)) this.changed.set(key, pairOf(this.active, key));
      this.active.delete(key);
      this.out.close(key);
    }
    for (const [key, old, nw] of changes) {
      const value = [old, nw];
      if (!samePair(pairOf(this.active, key), value)) {
        if (!this.changed.has(key)) this.changed.set(key, pairOf(this.active, key));
        this.active.set(key, value);
      }
      this.out.annotate(key, old, nw);
    }
  }

  /**
   * Before this side deletes an item the other side kept: assert, for each
   * key the other side changed since the last common item, the values the
   * deleted item carries and must be left with.
   */
  beginDeletion() {
    const other = this.other;
    const changes = [];
    for (const [key, before] of other.changed) {
      const mine = pairOf(this.active, key);
      this.saved.set(key, mine);
      if (before !== null) {
        let old;
        if (mine !== null) old = mine[0];
        else if (other.active.has(key)) old = other.active.get(key)[1];
        else old = before[0];
        changes.push([key, old, before[1]]);
      } else if (other.active.has(key)) {
        const current = other.active.get(key);
        changes.push([key, current[1], mine !== null ? mine[1] : current[0]]);
      }
    }
    this.commit([], changes);
  }

  endDeletion() {
    const ends = [];
    const changes = [];
    for (const [key, value] of this.saved) {
      if (value !== null) changes.push([key, value[0], value[1]]);
      else ends.push(key);
    }
    this.changed.clear();
    this.commit(ends, changes);
    this.saved.clear();
  }

  delete(c) {
    this.beginDeletion();
    this.out.add(c);
    this.endDeletion();
  }

  bothWrite() {
    this.changed.clear();
    this.other.changed.clear();
  }
}

/** The client's boundary: on a key both change, the client's new value wins. */
function clientBoundary(client, server, b) {
  const cChanges = [];
  const sEnds = [];
  const sChanges = [];
  for (const key of boundaryEnds(b)) {
    const theirs = pairOf(server.own, key);
    if (theirs !== null) sChanges.push([key, theirs[0], theirs[1]]);
  }
  for (const [key, old, nw] of boundaryChanges(b)) {
    const theirs = pairOf(server.own, key);
    if (theirs !== null) {
      cChanges.push([key, theirs[1], nw]);
      sEnds.push(key);
    } else {
      cChanges.push([key, old, nw]);
    }
  }
  client.commit(boundaryEnds(b), cChanges);
  server.commit(sEnds, sChanges);
}

/** The server's boundary: where the client changes the key too, only its old value moves. */
function serverBoundary(client, server, b) {
  const sEnds = [];
  const sChanges = [];
  const cChanges = [];
  for (const key of boundaryEnds(b)) {
    const mine = pairOf(client.own, key);
    if (mine !== null) cChanges.push([key, mine[0], mine[1]]);
    else sEnds.push(key);
  }
  for (const [key, old, nw] of boundaryChanges(b)) {
    const mine = pairOf(client.own, key);
    if (mine !== null) cChanges.push([key, nw, mine[1]]);
    else sChanges.push([key, old, nw]);
  }
  server.commit(sEnds, sChanges);
  client.commit([], cChanges);
}

function updatesObject(triples) {
  const out = newMap();
  for (const [k, o, n] of triples) out[k] = [o, n];
  return out;
}

/**
 * ``owner``'s component ``c`` reached the cursor first; ``other``'s
 * component ``d`` covers its first ``k`` items.  Write both sides' outputs
 * for them and return what is left of ``c``.
 */
function meet(owner, c, other, d, k) {
  const tc = kind(c), td = kind(d);
  if (tc === "r") {
    if (td === "r") {
      owner.bothWrite();
      owner.out.retain(k);
      other.out.retain(k);
    } else if (td === "dc") {
      other.delete({dc: d.dc.slice(0, k)});
    } else if (td === "des") {
      other.delete(d);
      other.depth += 1;
    } else if (td === "dee") {
      other.delete(d);
      other.depth -= 1;
    } else {  // an attribute change on an element the owner keeps
      owner.bothWrite();
      owner.out.retain(1);
      other.out.single(d);
    }
    return c;
  }
  if (tc === "dc") {
    if (td === "r") owner.delete({dc: c.dc.slice(0, k)});
    else if (td !== "dc") throw new TransformError(INCOMPATIBLE);
    return {dc: c.dc.slice(k)};
  }
  if (tc === "des") {
    if (td === "r") owner.delete(c);
    else if (td === "des") other.depth += 1;
    else if (td === "ra") owner.delete({des: [c.des[0], sortedObject(d.ra[1])]});
    else if (td === "ua") owner.delete({des: [c.des[0], attributesUpdated(c.des[1], attributeUpdates(d))]});
    else throw new TransformError(INCOMPATIBLE);
    owner.depth += 1;
    return c;
  }
  if (tc === "dee") {
    if (td === "r") owner.delete(c);
    else if (td === "dee") other.depth -= 1;
    else throw new TransformError(INCOMPATIBLE);
    owner.depth -= 1;
    return c;
  }
  if (tc === "ra") {
    if (td === "des") {
      other.delete({des: [d.des[0], sortedObject(c.ra[1])]});
      other.depth += 1;
      return c;
    }
    owner.bothWrite();
    if (td === "r") owner.out.single(c);
    else if (td === "ra") owner.out.single({ra: [sortedObject(d.ra[1]), sortedObject(c.ra[1])]});
    else if (td === "ua") {
      owner.out.single({ra: [attributesUpdated(c.ra[0], attributeUpdates(d)), sortedObject(c.ra[1])]});
    } else throw new TransformError(INCOMPATIBLE);
    other.out.retain(1);
    return c;
  }
  // updateAttributes
  const mineUpdates = attributeUpdates(c);
  if (td === "des") {
    other.delete({des: [d.des[0], attributesUpdated(d.des[1], mineUpdates)]});
    other.depth += 1;
    return c;
  }
  owner.bothWrite();
  if (td === "r") {
    owner.out.single(c);
    other.out.retain(1);
  } else if (td === "ra") {
    owner.out.retain(1);
    other.out.single({ra: [attributesUpdated(d.ra[0], mineUpdates), sortedObject(d.ra[1])]});
  } else if (td === "ua") {
    const theirUpdates = attributeUpdates(d);
    const theirs = new Map(theirUpdates.map(([key, , nw]) => [key, nw]));
    owner.out.single({ua: updatesObject(mineUpdates.map(([key, old, nw]) =>
      [key, theirs.has(key) ? theirs.get(key) : old, nw]))});
    const mine = new Set(mineUpdates.map((u) => u[0]));
    other.out.single({ua: updatesObject(theirUpdates.filter((u) => !mine.has(u[0])))});
  } else {
    throw new TransformError(INCOMPATIBLE);
  }
  return c;
}

function head(c, k) {
  return kind(c) === "dc" ? {dc: c.dc.slice(0, k)} : c;
}

/** The walk of two insertion-free operations; ``gap`` = client cursor - server cursor. */
class RestTransform {
  constructor() {
    this.client = new Side();
    this.server = new Side();
    this.client.other = this.server;
    this.server.other = this.client;
    this.gap = 0;
  }

  component(side, c, sign) {
    const t = kind(c);
    if (t === "ab") {
      for (const key of boundaryEnds(c)) side.own.delete(key);
      for (const [key, old, nw] of boundaryChanges(c)) side.own.set(key, [old, nw]);
      if (side === this.client) clientBoundary(this.client, this.server, c);
      else serverBoundary(this.client, this.server, c);
      return;
    }
    const other = side.other;
    const size = inputSize(c);
    const old = sign * this.gap;
    this.gap += sign * size;
    const now = sign * this.gap;
    if (now > 0) {
      // This component ends beyond the other cursor: settle the part before
      // it against the other side's pending component, and wait with the rest.
      if (old < 0) {
        other.pending = meet(other, other.pending, side, head(c, -old), -old);
        if (t === "dc") c = {dc: c.dc.slice(-old)};
      }
      if (t === "r" || t === "dc" || old === 0) side.pending = c;
    } else {
      other.pending = meet(other, other.pending, side, c, size);
      if (t === "r") side.pending = c;
    }
  }
}

function transformRest(client, server) {
  const w = new RestTransform();
  const servers = new Cursor(server);
  for (const c of client) {
    w.component(w.client, c, 1);
    while (w.gap > 0) {
      const d = servers.next();
      if (d === null) throw new TransformError("operations of different lengths");
      w.component(w.server, d, -1);
    }
  }
  for (let d = servers.next(); d !== null; d = servers.next()) w.component(w.server, d, -1);
  return [w.client.out.finish(), w.server.out.finish()];
}

// --------------------------------------------------------------------------
// The whole

/**
 * [client', server'] with client then server' == server then client'.
 * Throws TransformError if the operations do not fit one document.
 */
export function transform(client, server) {
  for (const op of [client, server]) {
    for (const c of op) {
      if (!isComponent(c)) {
        throw new TransformError(`not a document operation component: ${JSON.stringify(c)}`);
      }
    }
  }
  if (inputLength(client) !== inputLength(server)) {
    throw new TransformError(`operations of different lengths: client applies to `
      + `${inputLength(client)} items, server to ${inputLength(server)}`);
  }
  try {
    const [ci0, cn0] = decompose(client);
    const [si0, sn0] = decompose(server);
    const [ci1, si1] = transformInsertions(ci0, si0);
    const [ci2, sn1] = transformInsertionAgainstRest(ci1, sn0);
    const [si2, cn1] = transformInsertionAgainstRest(si1, cn0);
    const [cn2, sn2] = transformRest(cn1, sn1);
    return [compose(ci2, cn2), compose(si2, sn2)];
  } catch (e) {
    if (e instanceof TransformError) throw e;
    if (e instanceof ComposeError) throw new TransformError(e.message);
    throw new TransformError(`malformed operation: ${e}`);
  }
}
