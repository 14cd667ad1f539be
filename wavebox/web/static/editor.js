// A blip's document as the text a person edits, and back: the part of the
// page that turns typing into document operations and keeps the caret where
// it was when someone else's operation arrives.  Pure functions over the
// OT's Document (static/ot/docop.js), with no DOM, so they run under Node.
//
// A blip is <body><line></line>text<line></line>text</body> (the
// conversation model of wavebox/model/conversation.py): each <line> after
// the first starts a new line of the text.  Other elements carry no text.

import {END} from "./ot/docop.js";

const isLine = (item) => typeof item === "object" && item !== END && item.type === "line";

/**
 * The text of a blip document and where each text position is among the
 * document's items: ``{text, at}``, ``at[t]`` the item position before
 * which text inserted at ``t`` goes (``at.length === text.length + 1``),
 * and ``items[t]`` what text position ``t`` is made of (a character's
 * item, or a line element's start).
 */
export function blipText(doc) {
  const items = doc.items;
  const chars = [];
  const at = [];
  const made = [];
  let firstLine = true;
  for (let k = 0; k < items.length; k++) {
    const v = items[k];
    if (typeof v === "string") {
      chars.push(v);
      at.push(k);
      made.push(k);
    } else if (isLine(v)) {
      if (firstLine) {
        firstLine = false;
      } else {
        chars.push("\n");
        at.push(k);
        made.push(k);
      }
    }
  }
  // The end of the text: before the document's closing </body> (or its end).
  let end = items.length;
  if (end > 0 && items[end - 1] === END) end -= 1;
  if (made.length) end = Math.max(end, lastTextEnd(items, made[made.length - 1]));
  at.push(end);
  return {text: chars.join(""), at, items: made};
}

function lastTextEnd(items, k) {
  // After a character: right after it; after a line start: after its </line>.
  return typeof items[k] === "string" ? k + 1 : k + 2;
}

/** The document operation that inserts ``text`` at text position ``t``. */
export function insertText(doc, t, text) {
  const {at} = blipText(doc);
  const pos = at[Math.min(t, at.length - 1)];
  const op = [];
  if (pos > 0) op.push({r: pos});
  const parts = text.split("\n");
  parts.forEach((part, i) => {
    if (i > 0) op.push({es: ["line", {}]}, {ee: true});
    if (part) op.push({c: part});
  });
  if (doc.size - pos > 0) op.push({r: doc.size - pos});
  return op;
}

/** The document operation that deletes text positions ``from`` to ``to`` (exclusive). */
export function deleteText(doc, from, to) {
  const {items: made} = blipText(doc);
  const gone = new Map();     // item position -> component
  for (let t = from; t < to; t++) {
    const k = made[t];
    const v = doc.items[k];
    if (typeof v === "string") {
      gone.set(k, {dc: v});
    } else {
      gone.set(k, {des: [v.type, v.attrs]});
      gone.set(k + 1, {dee: true});
    }
  }
  const op = [];
  let retained = 0;
  const flush = () => { if (retained) { op.push({r: retained}); retained = 0; } };
  for (let k = 0; k < doc.size; k++) {
    const c = gone.get(k);
    if (c === undefined) {
      retained += 1;
      continue;
    }
    flush();
    const last = op[op.length - 1];
    if (c.dc !== undefined && last && last.dc !== undefined) last.dc += c.dc;
    else op.push(c);
  }
  flush();
  return op;
}

/**
 * What an edit of the text did, as the smallest change: the text from
 * ``start`` to ``oldEnd`` of ``before`` became ``inserted``.  ``caret``
 * (where the caret is after the edit) settles where the change is when
 * the same text is repeated ("aa" -> "aaa").
 */
export function diffText(before, after, caret = after.length) {
  let start = 0;
  const max = Math.min(before.length, after.length);
  // The caret is after what was typed: the change starts at the latest there.
  const limit = Math.max(0, Math.min(max, caret - Math.max(0, after.length - before.length)));
  while (start < limit && before[start] === after[start]) start++;
  let endBefore = before.length, endAfter = after.length;
  while (endBefore > start && endAfter > start && before[endBefore - 1] === after[endAfter - 1]) {
    endBefore--;
    endAfter--;
  }
  return {start, oldEnd: endBefore, inserted: after.slice(start, endAfter)};
}

/**
 * Where item position ``pos`` is after ``op`` (in the op's notation).
 * An insertion at ``pos`` itself leaves the position before it, so a caret
 * stays at the end of what its owner typed.
 */
export function transformPosition(op, pos) {
  let i = 0, o = 0;
  for (const c of op) {
    if (c.r !== undefined || c.ra !== undefined || c.ua !== undefined) {
      const n = c.r !== undefined ? c.r : 1;
      if (pos < i + n) return o + (pos - i);
      i += n;
      o += n;
    } else if (c.c !== undefined || c.es !== undefined || c.ee !== undefined) {
      const n = c.c !== undefined ? c.c.length : 1;
      if (i < pos) o += n;
      else return o;
    } else if (c.dc !== undefined || c.des !== undefined || c.dee !== undefined) {
      const n = c.dc !== undefined ? c.dc.length : 1;
      if (pos < i + n) return o;
      i += n;
    }
  }
  return o + (pos - i);
}

/** The text position of item position ``pos`` (``at`` from blipText). */
export function textPosition(at, pos) {
  for (let t = 0; t < at.length; t++) if (at[t] >= pos) return t;
  return at.length - 1;
}

/** The operations of a new blip: its document, and its place at the end of the manifest. */
export function newBlipOperations(manifest, blipId) {
  const size = manifest.size;
  const blip = {mutate_document: {document_id: blipId, operation: [
    {es: ["body", {}]}, {es: ["line", {}]}, {ee: true}, {ee: true}]}};
  const place = {mutate_document: {document_id: "conversation", operation: [
    {r: size - 1}, {es: ["blip", {id: blipId}]}, {ee: true}, {r: 1}]}};
  return [blip, place];
}

/** The blip ids of the manifest, in reading order. */
export function manifestBlips(manifest) {
  const ids = [];
  for (const v of manifest.items) {
    if (typeof v === "object" && v !== END && v.type === "blip" && v.attrs.id) ids.push(v.attrs.id);
  }
  return ids;
}

const WEB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** A new blip id, ``b+`` and 12 random web64 characters (as the server's IdGenerator). */
export function newBlipId(random = (n) => crypto.getRandomValues(new Uint8Array(n))) {
  return "b+" + Array.from(random(12), (b) => WEB64[b & 63]).join("");
}
