// Simulated web clients for tests/test_web_ot.py: each is the browser's
// state machine (WaveletClient) and the wavelet its page would show.  The
// test drives them over a pipe, one JSON command per line on stdin and one
// JSON answer per line on stdout, while the test plays the server with the
// real Python model.
//
// Commands ({"cmd": ..., "client": i, ...}):
//   init     {clients: [author...], wavelet: {hashed_version, participants, documents}}
//   edit     {client, seed}: a random edit (text, a <line>, an annotation, or
//            the client's guest participant), applied and handed to local()
//   local    {client, op}: the wavelet operation op, applied and handed to local()
//   take     {client}: the delta to send, or null
//   delta    {client, delta}: a server delta; answers the operations applied
//   ack      {client, result}: the answer to our submit
//   refuse   {client, reason}: the server refused our delta
//   state    {client}: the wavelet, version, idle and in-flight flags
// Every answer is {"ok": true, ...} or {"ok": false, "error": "..."}.

import {createInterface} from "node:readline";
import {
  Normalizer, Wavelet, WaveletClient, addParticipant, mutateDocument, removeParticipant,
  END,
} from "../../wavebox/web/static/ot/index.js";

// mulberry32: a small seeded generator, so the test's seed decides every edit.
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const isLineStart = (v) => typeof v === "object" && v !== END && v.type === "line";

/** A random edit of one blip's body: <body><line></line>text...</body>. */
function randomDocumentEdit(doc, rnd) {
  const items = doc.items;
  const size = items.length;
  const pick = (n) => Math.floor(rnd() * n);
  // Positions inside the body, not inside a <line></line>.
  const positions = [];
  for (let p = 3; p <= size - 1; p++) if (!isLineStart(items[p - 1])) positions.push(p);
  const choice = rnd();
  const op = new Normalizer();
  if (choice < 0.45 || positions.length === 0) {
    const p = positions.length ? positions[pick(positions.length)] : size - 1;
    const text = "xyzqw".slice(0, 1 + pick(3));
    op.retain(p);
    op.characters(text);
    op.retain(size - p);
    return op.finish();
  }
  if (choice < 0.75) {
    const starts = [];
    for (let p = 3; p < size - 1; p++) if (typeof items[p] === "string") starts.push(p);
    if (starts.length) {
      const p = starts[pick(starts.length)];
      let n = 1 + pick(3);
      while (n > 1 && (p + n > size - 1 || typeof items[p + n - 1] !== "string")) n--;
      op.retain(p);
      for (let j = p; j < p + n; j++) {
        resetFor(op, doc.anns[j], doc.anns[p - 1]);
        op.deleteCharacters(items[j]);
      }
      closeAll(op);
      op.retain(size - p - n);
      return op.finish();
    }
  }
  if (choice < 0.85) {
    const lines = [];
    for (let p = 3; p < size - 1; p++) if (isLineStart(items[p])) lines.push(p);
    if (lines.length && rnd() < 0.5) {
      const p = lines[pick(lines.length)];
      op.retain(p);
      resetFor(op, doc.anns[p], doc.anns[p - 1]);
      op.single({des: ["line", {}]});
      resetFor(op, doc.anns[p + 1], doc.anns[p - 1]);
      op.single({dee: true});
      closeAll(op);
      op.retain(size - p - 2);
      return op.finish();
    }
    const p = positions[pick(positions.length)];
    op.retain(p);
    op.single({es: ["line", {}]});
    op.single({ee: true});
    op.retain(size - p);
    return op.finish();
  }
  // Bold (or not) a few items: each retained item asserts its current value.
  const key = "style/fontWeight";
  const p = 3 + pick(Math.max(1, size - 4));
  const n = Math.min(1 + pick(4), size - 1 - p);
  const value = rnd() < 0.6 ? "bold" : null;
  op.retain(p);
  for (let j = p; j < p + n; j++) {
    const old = doc.anns[j].has(key) ? doc.anns[j].get(key) : null;
    op.annotate(key, old, value);
    op.retain(1);
  }
  op.close(key);
  op.retain(size - p - n);
  return op.finish();
}

// A deletion must leave the annotations of the last item produced in force:
// each key where the deleted item (``here``) differs from it (``target``) is
// reset in the update, asserting the deleted item's value.
function resetFor(op, here, target) {
  const keys = new Set([...here.keys(), ...target.keys(), ...op.wanted.keys()]);
  for (const k of keys) {
    const h = here.has(k) ? here.get(k) : null;
    const t = target.has(k) ? target.get(k) : null;
    if (h !== t) op.annotate(k, h, t);
    else op.close(k);
  }
}

function closeAll(op) {
  for (const k of [...op.wanted.keys()]) op.close(k);
}

const sessions = [];

function handle(command) {
  const s = sessions[command.client];
  switch (command.cmd) {
    case "init": {
      sessions.length = 0;
      for (const author of command.clients) {
        sessions.push({
          author,
          wavelet: Wavelet.fromJSON(command.wavelet),
          client: new WaveletClient({author, version: command.wavelet.hashed_version}),
        });
      }
      return {};
    }
    case "edit": {
      const rnd = random(command.seed);
      let op;
      if (rnd() < 0.06) {
        const guest = `guest-${command.client}@example.com`;
        op = s.wavelet.participants.includes(guest) ? removeParticipant(guest) : addParticipant(guest);
      } else {
        const ids = [...s.wavelet.documents.keys()].filter((id) => id.startsWith("b+")).sort();
        const id = ids[Math.floor(rnd() * ids.length)];
        op = mutateDocument(id, randomDocumentEdit(s.wavelet.document(id), rnd));
      }
      s.wavelet.apply(op);
      s.client.local(op);
      return {op};
    }
    case "local":
      s.wavelet.apply(command.op);
      s.client.local(command.op);
      return {};
    case "take":
      return {delta: s.client.takeDelta()};
    case "delta": {
      const ops = s.client.receiveDelta(command.delta);
      s.wavelet.applyAll(ops);
      return {applied: ops};
    }
    case "ack": {
      const ops = s.client.receiveAck(command.result);
      s.wavelet.applyAll(ops);
      return {applied: ops};
    }
    case "refuse":
      s.client.receiveRefusal(command.reason);
      return {};
    case "state":
      return {
        wavelet: s.wavelet.toJSON(),
        text: Object.fromEntries([...s.wavelet.documents].map(([id, d]) => [id, d.toXml()])),
        version: s.client.version,
        idle: s.client.idle,
        in_flight: s.client.inFlight !== null,
        gathered: s.client.gathered.length,
        waiting: s.client.waiting.length,
      };
    default:
      throw new Error(`unknown command ${command.cmd}`);
  }
}

const lines = createInterface({input: process.stdin});
lines.on("line", (line) => {
  let answer;
  try {
    answer = {ok: true, ...handle(JSON.parse(line))};
  } catch (e) {
    answer = {ok: false, error: `${e.name}: ${e.message}`};
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
});

