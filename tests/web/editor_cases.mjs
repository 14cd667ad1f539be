// The page's editor functions (wavebox/web/static/editor.js) on random edits:
// the document a text edit's operations make must hold exactly the edited
// text, and a caret moved through someone else's insertion stays beside
// the same character.  Prints "N passed, M failed" and one line per failure.
import {Document} from "../../wavebox/web/static/ot/docop.js";
import {
  blipText, deleteText, diffText, insertText, newBlipOperations, manifestBlips,
  textPosition, transformPosition,
} from "../../wavebox/web/static/editor.js";

let passed = 0, failed = 0;
const fail = (what) => { failed++; console.log("FAIL " + what); };
const check = (ok, what) => (ok ? passed++ : fail(what));

// mulberry32: 32-bit integer arithmetic, so every seed gives a full-period stream.
let seed = Number(process.argv[2] || 1) >>> 0;
const rand = (n) => {
  seed = (seed + 0x6D2B79F5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return (((t ^ (t >>> 14)) >>> 0) % n);
};
const ALPHABET = "ab\nc d";
const randomText = (n) => Array.from({length: n}, () => ALPHABET[rand(ALPHABET.length)]).join("");

const EMPTY = Document.fromOp([{es: ["body", {}]}, {es: ["line", {}]}, {ee: true}, {ee: true}]);

function edit(doc, text, caretAfter, after) {
  const {start, oldEnd, inserted} = diffText(text, after, caretAfter);
  let d = doc;
  if (oldEnd > start) d = d.apply(deleteText(d, start, oldEnd));
  if (inserted) d = d.apply(insertText(d, start, inserted));
  return d;
}

for (let run = 0; run < 500; run++) {
  let doc = EMPTY;
  let text = "";
  for (let step = 0; step < 12; step++) {
    const at = rand(text.length + 1);
    const cut = rand(Math.min(3, text.length - at) + 1);
    const put = randomText(rand(4));
    const after = text.slice(0, at) + put + text.slice(at + cut);
    try {
      doc = edit(doc, text, at + put.length, after);
    } catch (e) {
      fail(`run ${run} step ${step}: ${JSON.stringify(text)} -> ${JSON.stringify(after)}: ${e.message}`);
      break;
    }
    text = after;
    const shown = blipText(doc).text;
    check(shown === text, `run ${run} step ${step}: the document shows ${JSON.stringify(shown)}, `
      + `not ${JSON.stringify(text)}`);
    // Someone else inserts at a random place: our caret keeps its character.
    const caret = rand(text.length + 1);
    const other = rand(text.length + 1);
    const {at: positions} = blipText(doc);
    const op = insertText(doc, other, "XY");
    const moved = textPosition(blipText(doc.apply(op)).at,
                               transformPosition(op, positions[caret]));
    const expected = other < caret ? caret + 2 : caret;
    check(moved === expected, `run ${run} step ${step}: caret ${caret} with an insertion at `
      + `${other} went to ${moved}, not ${expected}`);
  }
}

// The repeated-character case: the change is where the caret is.
const d = diffText("aa", "aaa", 1);
check(d.start === 0 && d.inserted === "a" && d.oldEnd === 0, "aa -> aaa with the caret at 1");
// A new blip goes at the end of the manifest.
let manifest = Document.fromOp([{es: ["conversation", {}]}, {ee: true}]);
for (const id of ["b+1", "b+2"]) manifest = manifest.apply(newBlipOperations(manifest, id)[1].mutate_document.operation);
check(JSON.stringify(manifestBlips(manifest)) === '["b+1","b+2"]', "blips in manifest order");

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
