// Composition of document operations (wave-protocol.md 6.4; the server's
// wavebox/model/doccompose.py): compose(a, b) is one operation with the
// effect of a then b.
//
// The walk pairs each item a produces with the item b consumes.  What the
// composed operation asserts about annotations follows the Java Composer:
// a's boundaries take effect when a deletes something or an item is paired,
// b's when b inserts something or an item is paired, and an item under both
// updates of a key asserts a's old value and b's new one.

import {
  ComposeError, Normalizer, attributeUpdates, isComponent, kind, newMap, outputLength,
  inputLength, sortedObject,
} from "./docop.js";

class AttributeMismatch extends Error {}

/** ``attrs`` changed by ``updates`` ([key, old, new] triples), each old value checked. */
export function attributesUpdated(attrs, updates) {
  const result = Object.assign(newMap(), attrs);
  for (const [key, old, nw] of updates) {
    const here = Object.prototype.hasOwnProperty.call(result, key) ? result[key] : null;
    if (here !== old) {
      throw new AttributeMismatch(`attribute ${key} is ${here}, update expects ${old}`);
    }
    if (nw === null) delete result[key];
    else result[key] = nw;
  }
  return sortedObject(result);
}

export function inverted(updates) {
  return updates.map(([key, old, nw]) => [key, nw, old]);
}

function updatesObject(triples) {
  const out = newMap();
  for (const [k, o, n] of [...triples].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))) {
    out[k] = [o, n];
  }
  return out;
}

/** One attribute update with the effect of ``first`` then ``second``. */
function updatesComposed(first, second) {
  const merged = new Map(first.map((u) => [u[0], u]));
  for (const [key, old, nw] of second) {
    const earlier = merged.get(key);
    if (earlier === undefined) {
      merged.set(key, [key, old, nw]);
    } else {
      if (earlier[2] !== old) throw new AttributeMismatch(`attribute ${key}: two updates disagree`);
      merged.set(key, [key, earlier[1], nw]);
    }
  }
  return updatesObject([...merged.values()]);
}

const ILLEGAL = "Illegal composition";

class Composition {
  constructor() {
    this.out = new Normalizer();
    this.first = new Map();    // key -> [old, new]: the first operation's update in force
    this.second = new Map();
    this.firstQueue = [];      // boundaries of the first op not yet in force
    this.secondQueue = [];
  }

  takeEffect(queue, update) {
    const touched = new Set();
    for (const b of queue) {
      for (const key of b.ab.end || []) {
        update.delete(key);
        touched.add(key);
      }
      const change = b.ab.change || {};
      for (const key of Object.keys(change)) {
        update.set(key, [change[key][0], change[key][1]]);
        touched.add(key);
      }
    }
    queue.length = 0;
    for (const key of touched) {
      const f = this.first.get(key), s = this.second.get(key);
      if (f !== undefined && s !== undefined) this.out.annotate(key, f[0], s[1]);
      else if (f !== undefined) this.out.annotate(key, f[0], f[1]);
      else if (s !== undefined) this.out.annotate(key, s[0], s[1]);
      else this.out.close(key);
    }
  }

  firstTakesEffect() {
    if (this.firstQueue.length) this.takeEffect(this.firstQueue, this.first);
  }

  secondTakesEffect() {
    if (this.secondQueue.length) this.takeEffect(this.secondQueue, this.second);
  }

  /**
   * ``a`` produces items (not a deletion); ``b`` consumes them (not an
   * insertion).  Either may be what is left of a partly paired component.
   * Returns [rest of a, rest of b] (null: used up).
   */
  pair(a, b) {
    this.firstTakesEffect();
    this.secondTakesEffect();
    const out = this.out;
    const ta = kind(a), tb = kind(b);
    if (ta === "r") {
      const n = a.r;
      if (tb === "r") {
        const m = b.r;
        out.retain(Math.min(n, m));
        return [n > m ? {r: n - m} : null, m > n ? {r: m - n} : null];
      }
      if (tb === "dc") {
        const s = b.dc;
        if (s.length <= n) {
          out.deleteCharacters(s);
          return [n > s.length ? {r: n - s.length} : null, null];
        }
        out.deleteCharacters(s.slice(0, n));
        return [null, {dc: s.slice(n)}];
      }
      out.single(b);
      return [n > 1 ? {r: n - 1} : null, null];
    }
    if (ta === "c") {
      const s = a.c;
      if (tb === "r") {
        const m = b.r;
        if (m <= s.length) {
          out.characters(s.slice(0, m));
          return [m < s.length ? {c: s.slice(m)} : null, null];
        }
        out.characters(s);
        return [null, {r: m - s.length}];
      }
      if (tb === "dc") {
        const t = b.dc;
        if (t.length <= s.length) return [t.length < s.length ? {c: s.slice(t.length)} : null, null];
        return [null, {dc: t.slice(s.length)}];
      }
      throw new ComposeError(ILLEGAL);
    }
    if (tb === "r") {
      out.single(a);
      return [null, b.r > 1 ? {r: b.r - 1} : null];
    }
    if (ta === "es") {
      if (tb === "des") return [null, null];
      if (tb === "ra") {
        out.single({es: [a.es[0], sortedObject(b.ra[1])]});
        return [null, null];
      }
      if (tb === "ua") {
        out.single({es: [a.es[0], attributesUpdated(a.es[1], attributeUpdates(b))]});
        return [null, null];
      }
      throw new ComposeError(ILLEGAL);
    }
    if (ta === "ee") {
      if (tb === "dee") return [null, null];
      throw new ComposeError(ILLEGAL);
    }
    if (ta === "ra") {
      if (tb === "des") out.single({des: [b.des[0], sortedObject(a.ra[0])]});
      else if (tb === "ra") out.single({ra: [sortedObject(a.ra[0]), sortedObject(b.ra[1])]});
      else if (tb === "ua") {
        out.single({ra: [sortedObject(a.ra[0]), attributesUpdated(a.ra[1], attributeUpdates(b))]});
      } else throw new ComposeError(ILLEGAL);
      return [null, null];
    }
    if (ta === "ua") {
      const mine = attributeUpdates(a);
      if (tb === "des") {
        out.single({des: [b.des[0], attributesUpdated(b.des[1], inverted(mine))]});
      } else if (tb === "ra") {
        out.single({ra: [attributesUpdated(b.ra[0], inverted(mine)), sortedObject(b.ra[1])]});
      } else if (tb === "ua") {
        out.single({ua: updatesComposed(mine, attributeUpdates(b))});
      } else throw new ComposeError(ILLEGAL);
      return [null, null];
    }
    throw new ComposeError(ILLEGAL);
  }
}

const DELETIONS = new Set(["dc", "des", "dee"]);
const INSERTIONS = new Set(["c", "es", "ee"]);

/**
 * One operation with the effect of ``a`` then ``b``.  Throws ComposeError if
 * ``b`` does not apply to what ``a`` produces.
 */
export function compose(a, b) {
  for (const op of [a, b]) {
    for (const c of op) {
      if (!isComponent(c)) throw new ComposeError(`not a document operation component: ${JSON.stringify(c)}`);
    }
  }
  if (outputLength(a) !== inputLength(b)) {
    throw new ComposeError(`Document size mismatch: op1 resulting length=${outputLength(a)}, `
      + `op2 initial length=${inputLength(b)}`);
  }
  try {
    return composeWalk(a, b);
  } catch (e) {
    if (e instanceof AttributeMismatch) throw new ComposeError(`${ILLEGAL}: ${e.message}`);
    if (e instanceof ComposeError) throw e;
    throw new ComposeError(`${ILLEGAL} (malformed operation): ${e}`);
  }
}

function composeWalk(first, second) {
  const w = new Composition();
  const out = w.out;
  let j = 0;
  // What is left of a component that is only partly paired: either an item
  // run of the first op waiting for the second, or a retain/deleteCharacters
  // of the second waiting for the first.
  let firstRest = null;
  let secondRest = null;
  for (const c of first) {
    const t = kind(c);
    if (t === "ab") {
      w.firstQueue.push(c);
      continue;
    }
    if (DELETIONS.has(t)) {
      w.firstTakesEffect();
      out.add(c);
      continue;
    }
    if (secondRest !== null) [firstRest, secondRest] = w.pair(c, secondRest);
    else firstRest = c;
    while (firstRest !== null) {
      if (j >= second.length) throw new ComposeError("Document size mismatch");
      const d = second[j++];
      const td = kind(d);
      if (td === "ab") {
        w.secondQueue.push(d);
      } else if (INSERTIONS.has(td)) {
        w.secondTakesEffect();
        out.add(d);
      } else {
        [firstRest, secondRest] = w.pair(firstRest, d);
      }
    }
  }
  if (secondRest !== null) throw new ComposeError("Document size mismatch");
  for (; j < second.length; j++) {
    const d = second[j];
    const td = kind(d);
    if (td === "ab") {
      w.secondQueue.push(d);
    } else if (INSERTIONS.has(td)) {
      w.secondTakesEffect();
      out.add(d);
    } else {
      throw new ComposeError(ILLEGAL);
    }
  }
  w.firstTakesEffect();
  w.secondTakesEffect();
  return out.finish();
}
