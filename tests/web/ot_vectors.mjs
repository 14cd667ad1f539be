// Runs the browser's OT (wavebox/web/static/ot) on the Java-generated
// differential vectors, as wavebox/model/vectors.py runs the server's:
//
//   node tests/web/ot_vectors.mjs tests/data/ot-*.json
//
// Prints one line per failing case, then, per file and in all,
// "N passed, M failed".  Exit status 1 if any case failed.

import {readFileSync} from "node:fs";
import {
  Document, IllFormedOperation, InvalidOperation, OperationMismatch, canonical,
  checkWellFormed, normalize,
} from "../../wavebox/web/static/ot/docop.js";
import {compose} from "../../wavebox/web/static/ot/compose.js";
import {transform} from "../../wavebox/web/static/ot/transform.js";

const show = (op) => canonical(op);
const same = (a, b) => canonical(normalize(a)) === canonical(normalize(b));

function checkTransform(c) {
  let clientT, serverT;
  try {
    [clientT, serverT] = transform(c.client, c.server);
  } catch (e) {
    return [`transform threw ${e.name}: ${e.message}`];
  }
  const failures = [];
  const doc = Document.fromOp(c.doc);
  let viaClient, viaServer;
  try {
    viaClient = doc.apply(c.client).apply(serverT);
  } catch (e) {
    return [`server' does not apply after client: ${e.message}`];
  }
  try {
    viaServer = doc.apply(c.server).apply(clientT);
  } catch (e) {
    return [`client' does not apply after server: ${e.message}`];
  }
  if (!viaClient.equals(viaServer)) {
    failures.push(`the two paths differ: ${show(viaClient.toOp())} vs ${show(viaServer.toOp())}`);
  }
  if (!viaClient.equals(Document.fromOp(c.result))) {
    failures.push(`result differs from Java: ${show(viaClient.toOp())}`);
  }
  if (!same(clientT, c.client_t)) failures.push(`client_t differs: ours ${show(clientT)}, Java ${show(c.client_t)}`);
  if (!same(serverT, c.server_t)) failures.push(`server_t differs: ours ${show(serverT)}, Java ${show(c.server_t)}`);
  return failures;
}

function checkCompose(c) {
  let composed;
  try {
    composed = compose(c.a, c.b);
  } catch (e) {
    return [`compose threw ${e.name}: ${e.message}`];
  }
  const failures = [];
  const doc = Document.fromOp(c.doc);
  let stepwise, atOnce;
  try {
    stepwise = doc.apply(c.a).apply(c.b);
    atOnce = doc.apply(composed);
  } catch (e) {
    return [`does not apply: ${e.message}`];
  }
  if (!atOnce.equals(stepwise)) failures.push("composed(doc) != b(a(doc))");
  if (!atOnce.equals(Document.fromOp(c.result))) failures.push(`result differs from Java: ${show(atOnce.toOp())}`);
  if (!same(composed, c.composed)) failures.push(`composed differs: ours ${show(composed)}, Java ${show(c.composed)}`);
  return failures;
}

function checkWellformed(c) {
  const failures = [];
  let wellFormed = true;
  try {
    checkWellFormed(c.op);
  } catch (e) {
    if (!(e instanceof IllFormedOperation)) throw e;
    wellFormed = false;
  }
  const doc = Document.fromOp(c.doc);
  let result = "VALID", reason = null;
  try {
    doc.apply(c.op);
  } catch (e) {
    if (e instanceof IllFormedOperation) {
      result = "ILL_FORMED";
      reason = `ill-formed: ${e.message}`;
    } else if (e instanceof OperationMismatch) {
      result = "INVALID_DOCUMENT";
      reason = `invalid operation: ${e.message}`;
    } else {
      throw e;
    }
  }
  if (wellFormed !== c.well_formed) failures.push(`well_formed: ours ${wellFormed}, Java ${c.well_formed}`);
  if ((result === "VALID") !== c.valid) failures.push(`valid: ours ${result === "VALID"}, Java ${c.valid}`);
  if (result !== c.result) failures.push(`result: ours ${result}, Java ${c.result}`);
  if ((c.reason ?? null) !== reason) failures.push(`reason: ours ${JSON.stringify(reason)}, Java ${JSON.stringify(c.reason)}`);
  return failures;
}

function kindOf(c) {
  if ("client" in c && "server" in c) return checkTransform;
  if ("a" in c && "b" in c) return checkCompose;
  if ("op" in c && "well_formed" in c) return checkWellformed;
  throw new Error(`cannot tell the kind of case with keys ${Object.keys(c)}`);
}

let passed = 0, failed = 0;
for (const path of process.argv.slice(2)) {
  const cases = JSON.parse(readFileSync(path, "utf8"));
  let filePassed = 0, fileFailed = 0;
  for (const c of cases) {
    let problems;
    try {
      problems = kindOf(c)(c);
    } catch (e) {
      problems = [`crashed: ${e.stack}`];
    }
    if (problems.length) {
      fileFailed++;
      console.log(`${path}: seed ${c.seed} (${c.params}): ${problems.join("; ")}`);
    } else {
      filePassed++;
    }
  }
  console.log(`${path}: ${filePassed} passed, ${fileFailed} failed`);
  passed += filePassed;
  failed += fileFailed;
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
