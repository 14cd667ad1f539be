// Document operations of the wave protocol, for the browser (wave-protocol.md
// section 6; the server's wavebox/model/docop.py).  Plain ES module: no DOM,
// no dependencies, the same file under Node.
//
// An operation is an array of components written in the JSON shape that
// travels on the WebSocket (docs/web.rst), so nothing is converted between
// the wire and the algorithms:
//
//   {r: n}                       retain n items
//   {c: "text"}                  characters
//   {dc: "text"}                 deleteCharacters
//   {es: [type, {attrs}]}        elementStart
//   {ee: true}                   elementEnd
//   {des: [type, {attrs}]}       deleteElementStart
//   {dee: true}                  deleteElementEnd
//   {ra: [{old}, {new}]}         replaceAttributes
//   {ua: {key: [old, new]}}      updateAttributes (null = absent)
//   {ab: {end: [keys], change: {key: [old, new]}}}   annotationBoundary
//
// JavaScript strings are UTF-16, as the protocol counts text, so one code
// unit is one item.  Key order is Java's String.compareTo, which is what
// Array.prototype.sort does to strings.  Maps built here have no prototype,
// so "__proto__" is an ordinary key.

export class ModelError extends Error {
  constructor(message) { super(message); this.name = this.constructor.name; }
}
export class InvalidOperation extends ModelError {}
export class IllFormedOperation extends InvalidOperation {
  constructor(message, index, rule) { super(message); this.index = index; this.rule = rule; }
}
export class OperationMismatch extends InvalidOperation {
  constructor(message, index) { super(message); this.index = index; }
}
export class ComposeError extends ModelError {}
export class TransformError extends ModelError {}
export class RemovedAuthorError extends TransformError {}

// --------------------------------------------------------------------------
// Components

export function kind(c) {
  for (const k in c) return k;
  return undefined;
}

export function newMap() { return Object.create(null); }

/** A copy of ``obj`` with its keys in Java order. */
export function sortedObject(obj) {
  const out = newMap();
  for (const k of Object.keys(obj).sort()) out[k] = obj[k];
  return out;
}

export const retain = (n) => ({r: n});
export const characters = (s) => ({c: s});
export const deleteCharacters = (s) => ({dc: s});
export const elementStart = (type, attrs) => ({es: [type, sortedObject(attrs || {})]});
export const ELEMENT_END = Object.freeze({ee: true});
export const elementEnd = () => ELEMENT_END;
export const deleteElementStart = (type, attrs) => ({des: [type, sortedObject(attrs || {})]});
export const DELETE_ELEMENT_END = Object.freeze({dee: true});
export const deleteElementEnd = () => DELETE_ELEMENT_END;
export const replaceAttributes = (oldAttrs, newAttrs) =>
  ({ra: [sortedObject(oldAttrs || {}), sortedObject(newAttrs || {})]});
/** ``updates``: an object {key: [old, new]} or an array of [key, old, new]. */
export function updateAttributes(updates) {
  return {ua: updatesObject(updates)};
}
export function annotationBoundary(ends, changes) {
  return {ab: {end: [...(ends || [])].sort(), change: updatesObject(changes)}};
}

function updatesObject(updates) {
  const out = newMap();
  if (Array.isArray(updates)) {
    for (const [k, o, n] of [...updates].sort((x, y) => cmp(x[0], y[0]))) out[k] = [o, n];
  } else if (updates) {
    for (const k of Object.keys(updates).sort()) out[k] = [updates[k][0], updates[k][1]];
  }
  return out;
}

function cmp(a, b) { return a < b ? -1 : a > b ? 1 : 0; }

/** A boundary's ends, as given. */
export function boundaryEnds(b) { return b.ab.end || []; }
/** A boundary's changes as [key, old, new] triples, in the order given. */
export function boundaryChanges(b) {
  const change = b.ab.change || {};
  return Object.keys(change).map((k) => [k, change[k][0], change[k][1]]);
}
/** An attribute update's [key, old, new] triples, in the order given. */
export function attributeUpdates(c) {
  return Object.keys(c.ua).map((k) => [k, c.ua[k][0], c.ua[k][1]]);
}

export function inputSize(c) {
  switch (kind(c)) {
    case "r": return c.r;
    case "dc": return c.dc.length;
    case "c": case "es": case "ee": case "ab": return 0;
    default: return 1;
  }
}

export function outputSize(c) {
  switch (kind(c)) {
    case "r": return c.r;
    case "c": return c.c.length;
    case "dc": case "des": case "dee": case "ab": return 0;
    default: return 1;
  }
}

export function inputLength(op) {
  let n = 0;
  for (const c of op) n += inputSize(c);
  return n;
}

export function outputLength(op) {
  let n = 0;
  for (const c of op) n += outputSize(c);
  return n;
}

const COMPONENT_KINDS = new Set(["r", "c", "dc", "es", "ee", "des", "dee", "ra", "ua", "ab"]);

export function isComponent(c) {
  return c !== null && typeof c === "object" && !Array.isArray(c)
    && Object.keys(c).length === 1 && COMPONENT_KINDS.has(kind(c));
}

// --------------------------------------------------------------------------
// Canonical text and equality

/** JSON with every object's keys sorted: equal values give equal strings. */
export function canonical(value) {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  return "{" + Object.keys(value).sort()
    .map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
}

function sameValue(a, b) {
  return a === b;
}

function samePair(a, b) {
  return a !== undefined && a !== null && b !== undefined && b !== null
    && a[0] === b[0] && a[1] === b[1];
}

function sameAttributes(a, b) {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k) || a[k] !== b[k]) return false;
  }
  return true;
}

function sameMap(a, b) {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    if (!b.has(k) || !sameMapValue(v, b.get(k))) return false;
  }
  return true;
}

function sameMapValue(v, w) {
  return Array.isArray(v) ? samePair(v, w) : sameValue(v, w);
}

// --------------------------------------------------------------------------
// The normal form

/**
 * Collects components into the normal form the Java reference emits: runs
 * of retain, characters and deleteCharacters merged, empty ones dropped, and
 * one annotation boundary before each item whose effective update differs
 * from the one in force.  ``annotate``/``close`` set the update wanted from
 * the next item on; the boundary is written only when an item follows (or at
 * ``finish``).
 */
export class Normalizer {
  constructor() {
    this.out = [];
    this.current = new Map();   // key -> [old, new] as last written
    this.wanted = new Map();    // key -> [old, new] wanted for the next item
    this.dirty = false;
    this.runKind = null;        // "r", "c" or "dc"
    this.run = null;
  }

  annotate(key, old, nw) {
    this.wanted.set(key, [old, nw]);
    this.dirty = true;
  }

  close(key) {
    if (this.wanted.has(key)) {
      this.wanted.delete(key);
      this.dirty = true;
    }
  }

  boundary(b) {
    for (const [k, o, n] of boundaryChanges(b)) this.wanted.set(k, [o, n]);
    for (const k of boundaryEnds(b)) this.wanted.delete(k);
    this.dirty = true;
  }

  flushRun() {
    const k = this.runKind;
    if (k !== null) {
      if (k === "r") this.out.push({r: this.run});
      else this.out.push({[k]: this.run.join("")});
      this.runKind = null;
    }
  }

  flushAnnotations() {
    this.dirty = false;
    const current = this.current, wanted = this.wanted;
    if (sameMap(current, wanted)) return;
    const ends = [];
    for (const k of current.keys()) if (!wanted.has(k)) ends.push(k);
    const changes = [];
    for (const [k, v] of wanted) if (!samePair(current.get(k), v)) changes.push(k);
    if (!ends.length && !changes.length) return;
    this.flushRun();
    ends.sort();
    changes.sort();
    const change = newMap();
    for (const k of changes) change[k] = [wanted.get(k)[0], wanted.get(k)[1]];
    this.out.push({ab: {end: ends, change}});
    this.current = new Map(wanted);
  }

  retain(n) {
    if (n > 0) {
      if (this.dirty) this.flushAnnotations();
      if (this.runKind === "r") {
        this.run += n;
      } else {
        this.flushRun();
        this.runKind = "r";
        this.run = n;
      }
    }
  }

  text(k, s) {
    if (s) {
      if (this.dirty) this.flushAnnotations();
      if (this.runKind === k) {
        this.run.push(s);
      } else {
        this.flushRun();
        this.runKind = k;
        this.run = [s];
      }
    }
  }

  characters(s) { this.text("c", s); }

  deleteCharacters(s) { this.text("dc", s); }

  /** Any one-item component (element, attribute change, element deletion). */
  single(c) {
    if (this.dirty) this.flushAnnotations();
    this.flushRun();
    this.out.push(c);
  }

  add(c) {
    switch (kind(c)) {
      case "r": this.retain(c.r); break;
      case "c": this.text("c", c.c); break;
      case "dc": this.text("dc", c.dc); break;
      case "ab": this.boundary(c); break;
      default: this.single(c);
    }
  }

  finish(closeAll = false) {
    if (closeAll) {
      this.wanted = new Map();
      this.dirty = true;
    }
    if (this.dirty) this.flushAnnotations();
    this.flushRun();
    return this.out;
  }
}

/**
 * The normal form of ``op``: two operations with the same normal form have
 * the same effect and validity on every document.  Entries asserting an
 * unchanged value (old == new) are kept: they are checked.
 */
export function normalize(op) {
  const n = new Normalizer();
  for (const c of op) n.add(c);
  return n.finish(true);
}

/** Do ``a`` and ``b`` have the same normal form? */
export function sameOperation(a, b) {
  return canonical(normalize(a)) === canonical(normalize(b));
}

// --------------------------------------------------------------------------
// Strings as the protocol sees them (Java Utf16Util)

const SURROGATE = /[\uD800-\uDFFF]/;

function isNoncharacter(cp) {
  return (cp & 0xFFFF) >= 0xFFFE || (cp >= 0xFDD0 && cp <= 0xFDEF);
}

/** Code points of ``s``; -1 for an unpaired surrogate. */
function* codePoints(s) {
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    yield (cp >= 0xD800 && cp <= 0xDFFF) ? -1 : cp;
  }
}

export function isValidUtf16(s) {
  for (const cp of codePoints(s)) {
    if (cp < 0 || isNoncharacter(cp)) return false;
  }
  return true;
}

function isNameStart(cp) {
  return cp === 0x3A || (cp >= 0x41 && cp <= 0x5A) || cp === 0x5F || (cp >= 0x61 && cp <= 0x7A)
    || (cp >= 0xC0 && cp <= 0xD6) || (cp >= 0xD8 && cp <= 0xF6) || (cp >= 0xF8 && cp <= 0x2FF)
    || (cp >= 0x370 && cp <= 0x37D) || (cp >= 0x37F && cp <= 0x1FFF)
    || (cp >= 0x200C && cp <= 0x200D) || (cp >= 0x2070 && cp <= 0x218F)
    || (cp >= 0x2C00 && cp <= 0x2FEF) || (cp >= 0x3001 && cp <= 0xD7FF)
    || (cp >= 0xF900 && cp <= 0xFDCF) || (cp >= 0xFDF0 && cp <= 0xFFFD)
    || (cp >= 0x10000 && cp <= 0xEFFFF && !isNoncharacter(cp));
}

function isNameChar(cp) {
  if (isNoncharacter(cp)) return false;
  return isNameStart(cp) || cp === 0x2D || cp === 0x2E || (cp >= 0x30 && cp <= 0x39)
    || cp === 0xB7 || (cp >= 0x300 && cp <= 0x36F) || (cp >= 0x203F && cp <= 0x2040);
}

/** An XML 1.0 Name made of valid Unicode (Java Utf16Util.isXmlName). */
export function isXmlName(s) {
  if (typeof s !== "string" || !s) return false;
  let first = true;
  for (const cp of codePoints(s)) {
    if (cp < 0) return false;
    if (first) {
      if (!isNameStart(cp)) return false;
      first = false;
    } else if (!isNameChar(cp)) {
      return false;
    }
  }
  return true;
}

function javaString(v) { return v === null || v === undefined ? "null" : v; }

// --------------------------------------------------------------------------
// Well-formedness (wave-protocol.md 6.3; Java DocOpAutomaton's ill-formed checks)

class Walk {
  constructor() {
    this.pos = 0;
    this.rpos = 0;
    this.insDepth = 0;
    this.delDepth = 0;
    this.update = new Map();
    this.afterBoundary = false;
  }

  where() {
    return ` at original document position ${this.pos} / resulting document position ${this.rpos}`;
  }
}

function ill(walk, index, rule, description) {
  throw new IllFormedOperation(description + walk.where(), index, rule);
}

function checkText(walk, index, text, what) {
  if (typeof text !== "string") ill(walk, index, "characters_null", "characters is null");
  if (!text) ill(walk, index, "characters_empty", "characters is empty");
  if (SURROGATE.test(text)) ill(walk, index, "surrogate", what + " component contains surrogate");
  if (!isValidUtf16(text)) {
    ill(walk, index, "invalid_unicode", what + " component contains invalid unicode");
  }
}

function checkKeyOrder(walk, index, previous, key, what) {
  if (previous !== null && previous >= key) {
    ill(walk, index, what + "_keys_not_sorted",
      `${what} keys not strictly monotonic: ${previous} >= ${key}`);
  }
}

function checkOptionalValues(walk, index, values, what) {
  for (const v of values) {
    if (v !== null && (typeof v !== "string" || !isValidUtf16(v))) {
      ill(walk, index, what + "_value_not_utf16", `${what} value is not valid UTF-16`);
    }
  }
}

function checkAttributeName(walk, index, key) {
  if (!isXmlName(key)) {
    ill(walk, index, "attribute_name_not_xml_name", `attribute name is not an XML Name: "${key}"`);
  }
}

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function checkAttributes(walk, index, attrs) {
  if (!isObject(attrs)) ill(walk, index, "attributes_null", "attributes is null");
  let previous = null;
  for (const key of Object.keys(attrs)) {
    const value = attrs[key];
    checkAttributeName(walk, index, key);
    if (value === null) ill(walk, index, "attribute_value_null", "attribute value is null");
    if (typeof value !== "string" || !isValidUtf16(value)) {
      ill(walk, index, "attribute_value_not_utf16", "attribute value is not valid UTF-16");
    }
    checkKeyOrder(walk, index, previous, key, "attribute");
    previous = key;
  }
}

function checkUpdatePair(walk, index, pair, nullRule, nullText) {
  if (!Array.isArray(pair) || pair.length !== 2) ill(walk, index, nullRule, nullText);
}

function checkAttributeUpdates(walk, index, updates) {
  if (!isObject(updates)) {
    ill(walk, index, "attributes_update_null", "attributes update is null");
  }
  let previous = null;
  for (const key of Object.keys(updates)) {
    const pair = updates[key];
    checkUpdatePair(walk, index, pair, "attributes_update_null", "attributes update is null");
    checkAttributeName(walk, index, key);
    checkKeyOrder(walk, index, previous, key, "attribute");
    checkOptionalValues(walk, index, pair, "attribute");
    previous = key;
  }
}

function checkElement(walk, index, value) {
  if (!Array.isArray(value) || value.length !== 2) {
    ill(walk, index, "element_type_null", "element type is null");
  }
  const [type, attrs] = value;
  if (type === null) ill(walk, index, "element_type_null", "element type is null");
  if (!isXmlName(type)) {
    ill(walk, index, "element_type_not_xml_name", `element type is not an XML Name: "${type}"`);
  }
  checkAttributes(walk, index, attrs);
}

function checkAnnotationKey(walk, index, key) {
  if (typeof key !== "string") ill(walk, index, "annotation_key_null", "annotation key is null");
  if (key.includes("?") || key.includes("@")) {
    ill(walk, index, "annotation_key_invalid_character",
      "invalid character in annotation key: " + key);
  }
  if (!isValidUtf16(key)) {
    ill(walk, index, "annotation_key_not_utf16", "annotation key is not valid UTF-16");
  }
}

// JavaScript lists an object's integer-like keys ("9", "10") first, in
// numeric order, whatever order the JSON had them in.  Such keys can only be
// annotation keys (an attribute name is an XML Name); for them the written
// order is lost, and the keys are taken in Java order.
const ARRAY_INDEX = /^(0|[1-9][0-9]*)$/;

function writtenOrder(obj) {
  const keys = Object.keys(obj);
  return keys.some((k) => ARRAY_INDEX.test(k) && Number(k) < 4294967295) ? keys.sort() : keys;
}

function checkBoundary(walk, index, b) {
  if (walk.afterBoundary) {
    ill(walk, index, "adjacent_annotation_boundaries", "adjacent annotation boundaries");
  }
  const ends = b.ab.end === undefined ? [] : b.ab.end;
  const change = b.ab.change === undefined ? {} : b.ab.change;
  if (!Array.isArray(ends) || !isObject(change)) {
    ill(walk, index, "annotation_key_null", "annotation key is null");
  }
  let previous = null;
  for (const key of ends) {
    checkAnnotationKey(walk, index, key);
    checkKeyOrder(walk, index, previous, key, "annotation");
    previous = key;
    if (!walk.update.has(key)) {
      ill(walk, index, "annotation_end_not_open",
        `annotation of key ${key} ends without having started`);
    }
  }
  previous = null;
  for (const key of writtenOrder(change)) {
    const pair = change[key];
    checkUpdatePair(walk, index, pair, "annotation_key_null", "annotation key is null");
    checkAnnotationKey(walk, index, key);
    checkOptionalValues(walk, index, pair, "annotation");
    checkKeyOrder(walk, index, previous, key, "annotation");
    previous = key;
    if (ends.includes(key)) {
      ill(walk, index, "annotation_duplicate_key",
        "annotation boundary contains duplicate key " + key);
    }
  }
}

function checkComponent(walk, index, c) {
  if (!isComponent(c)) ill(walk, index, "unknown_component", `unknown component ${canonical(c)}`);
  switch (kind(c)) {
    case "r": {
      const n = c.r;
      if (!Number.isInteger(n) || n <= 0) {
        ill(walk, index, "retain_not_positive", "retain item count not positive");
      }
      if (walk.insDepth || walk.delDepth) {
        ill(walk, index, "retain_inside_insert_or_delete", "retain inside insert or delete");
      }
      walk.pos += n;
      walk.rpos += n;
      break;
    }
    case "c":
      checkText(walk, index, c.c, "characters");
      if (walk.delDepth) ill(walk, index, "insertion_inside_deletion", "insertion inside deletion");
      walk.rpos += c.c.length;
      break;
    case "es":
      checkElement(walk, index, c.es);
      if (walk.delDepth) ill(walk, index, "insertion_inside_deletion", "insertion inside deletion");
      walk.insDepth += 1;
      walk.rpos += 1;
      break;
    case "ee":
      if (walk.delDepth) ill(walk, index, "insertion_inside_deletion", "insertion inside deletion");
      if (!walk.insDepth) {
        ill(walk, index, "unmatched_element_end", "elementEnd with no matching elementStart");
      }
      walk.insDepth -= 1;
      walk.rpos += 1;
      break;
    case "dc":
      checkText(walk, index, c.dc, "delete characters");
      if (walk.insDepth) ill(walk, index, "deletion_inside_insertion", "deletion inside insertion");
      walk.pos += c.dc.length;
      break;
    case "des":
      checkElement(walk, index, c.des);
      if (walk.insDepth) ill(walk, index, "deletion_inside_insertion", "deletion inside insertion");
      walk.delDepth += 1;
      walk.pos += 1;
      break;
    case "dee":
      if (walk.insDepth) ill(walk, index, "deletion_inside_insertion", "deletion inside insertion");
      if (!walk.delDepth) {
        ill(walk, index, "unmatched_delete_element_end",
          "deleteElementEnd with no matching deleteElementStart");
      }
      walk.delDepth -= 1;
      walk.pos += 1;
      break;
    case "ua":
      checkAttributeUpdates(walk, index, c.ua);
      if (walk.delDepth || walk.insDepth) {
        ill(walk, index, "attribute_change_inside_insert_or_delete",
          "attribute change inside insert or delete");
      }
      walk.pos += 1;
      walk.rpos += 1;
      break;
    case "ra":
      if (!Array.isArray(c.ra) || c.ra.length !== 2) {
        ill(walk, index, "attributes_null", "attributes is null");
      }
      checkAttributes(walk, index, c.ra[0]);
      checkAttributes(walk, index, c.ra[1]);
      if (walk.delDepth || walk.insDepth) {
        ill(walk, index, "attribute_change_inside_insert_or_delete",
          "attribute change inside insert or delete");
      }
      walk.pos += 1;
      walk.rpos += 1;
      break;
    case "ab": {
      if (!isObject(c.ab)) ill(walk, index, "annotation_key_null", "annotation key is null");
      checkBoundary(walk, index, c);
      for (const key of boundaryEnds(c)) walk.update.delete(key);
      for (const [key, o, n] of boundaryChanges(c)) walk.update.set(key, [o, n]);
      walk.afterBoundary = true;
      return;
    }
  }
  walk.afterBoundary = false;
}

function checkFinish(walk, index) {
  if (walk.insDepth) {
    ill(walk, index, "unclosed_element", "elementStart with no matching elementEnd");
  }
  if (walk.delDepth) {
    ill(walk, index, "unclosed_delete_element",
      "deleteElementStart with no matching deleteElementEnd");
  }
  if (walk.update.size) {
    const key = [...walk.update.keys()].sort()[0];
    ill(walk, index, "annotation_not_closed", `annotation of key ${key} starts but never ends`);
  }
}

/**
 * Throw IllFormedOperation (with the component index and the rule) unless
 * ``op`` is well-formed whatever the document; messages in Java's wording.
 */
export function checkWellFormed(op) {
  if (!Array.isArray(op)) throw new IllFormedOperation("operation is not a list", 0, "not_a_list");
  const walk = new Walk();
  op.forEach((c, index) => checkComponent(walk, index, c));
  checkFinish(walk, op.length);
}

export function isWellFormed(op) {
  try {
    checkWellFormed(op);
    return true;
  } catch (e) {
    if (e instanceof IllFormedOperation) return false;
    throw e;
  }
}

// --------------------------------------------------------------------------
// Documents (wave-protocol.md 6.1)
//
// Items: a one-code-unit string, an element start {type, attrs}, or END.
// Each item has an annotation Map (key -> value; absent = null), shared
// between items and never changed once made.

export const END = Object.freeze({end: true});
const NO_ANNOTATIONS = new Map();

function updatedAnnotations(base, update, memo) {
  const got = memo.get(base);
  if (got !== undefined) return got;
  let result = new Map(base);
  for (const [k, [, n]] of update) {
    if (n === null) result.delete(k);
    else result.set(k, n);
  }
  if (sameMap(result, base)) result = base;
  memo.set(base, result);
  return result;
}

function mismatch(walk, index, description) {
  throw new OperationMismatch(description + walk.where(), index);
}

function annotation(anns, j, key) {
  const v = anns[j].get(key);
  return v === undefined ? null : v;
}

function oldAnnotationDiffers(walk, index, key, old, actual) {
  mismatch(walk, index, "old annotations differ from document: purported old value for key "
    + `${key} is ${javaString(old)}, actual value in document is ${javaString(actual)}`);
}

function checkOldAnnotation(walk, index, anns, start, end, key, old) {
  for (let j = start; j < end; j++) {
    if (annotation(anns, j, key) !== old) {
      oldAnnotationDiffers(walk, index, key, old, annotation(anns, j, key));
    }
  }
}

function sortedKeys(map) { return [...map.keys()].sort(); }

function checkRetainedAnnotations(walk, index, anns, start, end, update) {
  for (const k of sortedKeys(update)) {
    checkOldAnnotation(walk, index, anns, start, end, k, update.get(k)[0]);
  }
}

function checkDeletedAnnotations(walk, index, anns, start, end, update, target) {
  for (const k of sortedKeys(update)) {
    const [old, nw] = update.get(k);
    checkOldAnnotation(walk, index, anns, start, end, k, old);
    const t = target.get(k);
    if (nw !== (t === undefined ? null : t)) {
      mismatch(walk, index, "new annotation value incorrect for deletion");
    }
  }
  for (let j = start; j < end; j++) {
    const here = anns[j];
    if (here === target) continue;
    const keys = new Set([...here.keys(), ...target.keys()]);
    for (const k of [...keys].sort()) {
      const h = here.has(k) ? here.get(k) : null;
      const t = target.has(k) ? target.get(k) : null;
      if (h !== t && !update.has(k)) {
        mismatch(walk, index, `deletion does not reset value for key ${k} from `
          + `${javaString(h)} to ${javaString(t)}`);
      }
    }
  }
}

function attributesUpdatedUnchecked(attrs, updates) {
  const result = Object.assign(newMap(), attrs);
  for (const [k, , n] of updates) {
    if (n === null) delete result[k];
    else result[k] = n;
  }
  return sortedObject(result);
}

function own(obj, k) {
  return Object.prototype.hasOwnProperty.call(obj, k) ? obj[k] : null;
}

export class Document {
  constructor(items = [], anns = []) {
    this.items = items;
    this.anns = anns;
  }

  /** The document an insertion-only operation builds from the empty one. */
  static fromOp(op) {
    return new Document().apply(op);
  }

  get size() { return this.items.length; }

  /** The characters of the document, without markup. */
  text() {
    return this.items.filter((v) => typeof v === "string").join("");
  }

  annotationsAt(pos) {
    return Object.fromEntries(this.anns[pos]);
  }

  equals(other) {
    if (this.items.length !== other.items.length) return false;
    for (let i = 0; i < this.items.length; i++) {
      const a = this.items[i], b = other.items[i];
      if (typeof a === "string" || a === END) {
        if (a !== b) return false;
      } else if (typeof b !== "object" || b === END || a.type !== b.type
                 || !sameAttributes(a.attrs, b.attrs)) {
        return false;
      }
      if (!sameMap(this.anns[i], other.anns[i])) return false;
    }
    return true;
  }

  /** Elements and text as XML (annotations are not shown). */
  toXml() {
    const esc = (s, attr) => {
      s = s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
      return attr ? s.replace(/"/g, "&quot;") : s;
    };
    const out = [];
    const stack = [];
    for (const v of this.items) {
      if (typeof v === "string") {
        out.push(esc(v));
      } else if (v === END) {
        out.push(`</${stack.pop()}>`);
      } else {
        stack.push(v.type);
        const attrs = Object.keys(v.attrs).map((k) => ` ${k}="${esc(v.attrs[k], true)}"`).join("");
        out.push(`<${v.type}${attrs}>`);
      }
    }
    return out.join("");
  }

  /**
   * The canonical insertion-only operation that builds this document: text
   * merged, a boundary only where the annotations change, old values null,
   * every key ended at the end.
   */
  toOp() {
    const n = new Normalizer();
    let previous = NO_ANNOTATIONS;
    for (let i = 0; i < this.items.length; i++) {
      const v = this.items[i], ann = this.anns[i];
      if (ann !== previous && !sameMap(ann, previous)) {
        for (const k of previous.keys()) if (!ann.has(k)) n.close(k);
        for (const [k, val] of ann) if (previous.get(k) !== val) n.annotate(k, null, val);
        previous = ann;
      }
      if (typeof v === "string") n.characters(v);
      else if (v === END) n.single(ELEMENT_END);
      else n.single({es: [v.type, v.attrs]});
    }
    return n.finish(true);
  }

  isValid(op) {
    try {
      this.apply(op);
      return true;
    } catch (e) {
      if (e instanceof InvalidOperation) return false;
      throw e;
    }
  }

  /**
   * The document ``op`` produces from this one (this one is not changed).
   * Throws IllFormedOperation if ``op`` is ill-formed and OperationMismatch
   * if it does not fit this document (the Java DocOpValidator's checks).
   */
  apply(op) {
    checkWellFormed(op);
    const items = this.items, anns = this.anns;
    const length = items.length;
    const walk = new Walk();
    const update = walk.update;
    let target = NO_ANNOTATIONS;   // the annotations of the last item produced
    const outItems = [];
    const outAnns = [];
    let memo = new Map();
    op.forEach((c, index) => {
      const pos = walk.pos;
      const k = kind(c);
      if (k === "r") {
        const n = c.r;
        if (n > length - pos) {
          mismatch(walk, index, `retain past end of document, document length ${length}, `
            + `retain item count ${n}`);
        }
        const end = pos + n;
        if (update.size) checkRetainedAnnotations(walk, index, anns, pos, end, update);
        for (let j = pos; j < end; j++) {
          outItems.push(items[j]);
          outAnns.push(update.size ? updatedAnnotations(anns[j], update, memo) : anns[j]);
        }
        walk.pos = end;
        walk.rpos += n;
        target = outAnns[outAnns.length - 1];
      } else if (k === "c" || k === "es" || k === "ee") {
        const left = pos ? anns[pos - 1] : NO_ANNOTATIONS;
        if (update.size) {
          for (const key of sortedKeys(update)) {
            const old = update.get(key)[0];
            const actual = left.has(key) ? left.get(key) : null;
            if (old !== actual) oldAnnotationDiffers(walk, index, key, old, actual);
          }
          target = updatedAnnotations(left, update, memo);
        } else {
          target = left;
        }
        if (k === "c") {
          for (const ch of c.c.split("")) {
            outItems.push(ch);
            outAnns.push(target);
          }
          walk.rpos += c.c.length;
        } else {
          outItems.push(k === "es" ? {type: c.es[0], attrs: sortedObject(c.es[1])} : END);
          outAnns.push(target);
          walk.rpos += 1;
        }
      } else if (k === "dc") {
        const text = c.dc;
        for (let offset = 0; offset < text.length; offset++) {
          const here = items[pos + offset];
          if (pos + offset >= length || typeof here !== "string") {
            mismatch(walk, index, `cannot delete ${text.length} characters, only ${offset} available`);
          }
          if (here !== text[offset]) {
            mismatch(walk, index, `attempt to delete character ${text[offset]} when the actual `
              + `character is ${here}`);
          }
        }
        checkDeletedAnnotations(walk, index, anns, pos, pos + text.length, update, target);
        walk.pos += text.length;
      } else if (k === "des") {
        const here = pos < length ? items[pos] : null;
        if (here === null || typeof here === "string" || here === END) {
          mismatch(walk, index, "no element start to delete here");
        }
        if (here.type !== c.des[0]) mismatch(walk, index, "old element type differs from document");
        if (!sameAttributes(c.des[1], here.attrs)) {
          mismatch(walk, index, "old attributes differ from document");
        }
        checkDeletedAnnotations(walk, index, anns, pos, pos + 1, update, target);
        walk.pos += 1;
      } else if (k === "dee") {
        if (pos >= length || items[pos] !== END) mismatch(walk, index, "no element end to delete here");
        checkDeletedAnnotations(walk, index, anns, pos, pos + 1, update, target);
        walk.pos += 1;
      } else if (k === "ra" || k === "ua") {
        const here = pos < length ? items[pos] : null;
        if (here === null || typeof here === "string" || here === END) {
          mismatch(walk, index, "no element start to change attributes here");
        }
        let attrs;
        if (k === "ra") {
          if (!sameAttributes(here.attrs, c.ra[0])) {
            mismatch(walk, index, "old attributes differ from document");
          }
          attrs = sortedObject(c.ra[1]);
        } else {
          const updates = attributeUpdates(c);
          for (const [key, old] of updates) {
            if (own(here.attrs, key) !== old) {
              mismatch(walk, index, "old attributes differ from document");
            }
          }
          attrs = attributesUpdatedUnchecked(here.attrs, updates);
        }
        let ann = anns[pos];
        if (update.size) {
          checkRetainedAnnotations(walk, index, anns, pos, pos + 1, update);
          ann = updatedAnnotations(anns[pos], update, memo);
        }
        outItems.push({type: here.type, attrs});
        outAnns.push(ann);
        walk.pos += 1;
        walk.rpos += 1;
        target = ann;
      } else {  // annotation boundary
        for (const key of boundaryEnds(c)) update.delete(key);
        for (const [key, o, n] of boundaryChanges(c)) update.set(key, [o, n]);
        memo = new Map();
      }
    });
    if (walk.pos !== length) {
      mismatch(walk, op.length, `operation shorter than document, document length ${length}, `
        + `length of input of operation ${walk.pos}`);
    }
    return new Document(outItems, outAnns);
  }
}

// --------------------------------------------------------------------------
// Building operations from positions in the text (what an editor produces)

/** Insert ``text`` at ``pos`` of a document of ``size`` items. */
export function insertAt(size, pos, text) {
  const op = [];
  if (pos > 0) op.push({r: pos});
  op.push({c: text});
  if (size - pos > 0) op.push({r: size - pos});
  return op;
}

/** Delete the characters ``text`` found at ``pos`` of a document of ``size`` items. */
export function deleteAt(size, pos, text) {
  const op = [];
  if (pos > 0) op.push({r: pos});
  op.push({dc: text});
  if (size - pos - text.length > 0) op.push({r: size - pos - text.length});
  return op;
}
