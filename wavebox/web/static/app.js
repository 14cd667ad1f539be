// The web client's page: the inbox, one open wave, live typing.  It speaks
// the WebSocket messages of wavebox/web/live.py (docs/web.rst) and keeps
// each open wavelet with the OT's Wavelet and WaveletClient (static/ot/):
// what the person types is applied at once and sent as it is typed, one
// delta in flight per wavelet; what others type is transformed against ours
// before it is shown, so the text under the caret never jumps.

import {ClientStateError, Document, Wavelet, WaveletClient} from "./ot/index.js";
import {
  blipText, deleteText, diffText, insertText, manifestBlips, newBlipId, newBlipOperations,
  textPosition, transformPosition,
} from "./editor.js";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
};

const page = {
  socket: null,
  user: null,
  inbox: new Map(),      // wave uri -> entry
  wave: null,            // the OpenWave shown
  nextId: 1,
  waiting: new Map(),    // message id -> callback(reply)
  loggedOut: false,
  createdByUs: new Set(),
};
window.wavebox = page;   // for the tests and the benchmark: what the page holds

// -- the socket ----------------------------------------------------------------------

function setStatus(text) {
  $("#status").textContent = text;
  document.body.dataset.socket = text;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/ws`);
  page.socket = socket;
  setStatus("connecting");
  socket.onopen = () => setStatus("connected");
  socket.onmessage = (event) => receive(JSON.parse(event.data));
  socket.onclose = (event) => {
    if (page.socket !== socket) return;
    page.socket = null;
    if (page.loggedOut || event.code === 4001) {
      page.loggedOut = true;
      setStatus("logged out");
      return;
    }
    setStatus("disconnected");
    setTimeout(() => { if (!page.loggedOut) checkSessionThenConnect(); }, 1000);
  };
}

// A socket refused for a session that ended has no close code to say so:
// ask the page itself whether we are still logged in.
async function checkSessionThenConnect() {
  try {
    const response = await fetch("/", {credentials: "same-origin", cache: "no-store"});
    const text = await response.text();
    if (text.includes('id="login-form"')) {
      page.loggedOut = true;
      setStatus("logged out");
      return;
    }
  } catch (e) { /* the server is down: try again */ }
  connect();
}

function send(message, reply) {
  if (reply) {
    message.id = page.nextId++;
    page.waiting.set(message.id, reply);
  }
  if (page.socket && page.socket.readyState === WebSocket.OPEN) page.socket.send(JSON.stringify(message));
}

function receive(m) {
  if (m.id !== undefined && m.id !== null && page.waiting.has(m.id) && m.type !== "ack"
      && m.type !== "refused") {
    const reply = page.waiting.get(m.id);
    page.waiting.delete(m.id);
    reply(m);
  }
  switch (m.type) {
    case "hello":
      page.user = m.user;
      $("#user").textContent = m.user;
      openFromLocation();
      break;
    case "inbox":
      page.inbox = new Map(m.waves.map((w) => [w.wave, w]));
      renderInbox();
      break;
    case "wave_entries":
      for (const entry of m.entries) page.inbox.set(entry.wave, entry);
      renderInboxSoon();
      break;
    case "wave_gone":
      page.inbox.delete(m.wave);
      renderInboxSoon();
      break;
    case "snapshot":
      showWave(m);
      break;
    case "delta":
      if (page.wave && page.wave.uri === m.wave) page.wave.receiveDelta(m.delta);
      break;
    case "ack":
      if (page.wave && page.wave.uri === m.wave) page.wave.receiveAck(m.result);
      break;
    case "refused":
      if (page.wave && page.wave.uri === m.wave) page.wave.refused(m.message);
      else notice(`refused: ${m.message}`, true);
      break;
    case "removed":
      if (page.wave && page.wave.uri === m.wave) {
        notice(`${m.by} removed you from this wave`, true);
        closeWave();
      }
      break;
    case "pending":
      if (page.wave && page.wave.uri === m.wave) {
        page.wave.pending = m.pending;
        page.wave.renderParticipants();
      }
      break;
    case "notice":
      notice(m.text);
      break;
    case "error":
      notice(m.message, true);
      break;
    case "logged_out":
      page.loggedOut = true;
      setStatus("logged out");
      notice("logged out: " + m.reason, true);
      break;
    default:
      break;
  }
}

function notice(text, isError = false) {
  const n = $("#notice");
  n.textContent = text;
  n.className = isError ? "notice error" : "notice";
}

// -- the inbox -----------------------------------------------------------------------

// At most once a frame, however many entries changed.
let inboxFrame = null;
function renderInboxSoon() {
  if (inboxFrame === null) inboxFrame = requestAnimationFrame(() => { inboxFrame = null; renderInbox(); });
}

function renderInbox() {
  const list = $("#inbox-list");
  const entries = [...page.inbox.values()].sort((a, b) => b.last_modified_ms - a.last_modified_ms);
  list.replaceChildren(...entries.map((w) => {
    const open = page.wave && page.wave.uri === w.wave;
    const unread = open ? 0 : w.unread;
    const people = w.participants.map((p) => (w.pending[p] ? `${p} (pending)` : p)).join(", ");
    const item = el("li", {class: "wave-entry" + (open ? " open" : "") + (unread ? " has-unread" : ""),
                           "data-wave": w.wave},
      el("div", {class: "entry-head"},
        el("span", {class: "entry-people"}, people),
        el("span", {class: "unread", title: "changes since you last read it"},
           unread ? String(unread) : "")),
      el("div", {class: "snippet"}, w.snippet || "(no text yet)"));
    item.addEventListener("click", () => { location.hash = "#wave=" + encodeURIComponent(w.wave); });
    return item;
  }));
  $("#inbox-empty").hidden = entries.length > 0;
}

// -- the open wave ---------------------------------------------------------------------

class OpenWave {
  constructor(m) {
    this.uri = m.wave;
    this.label = m.label;
    this.wavelet = Wavelet.fromJSON(m.wavelet);
    this.client = new WaveletClient({author: page.user, version: m.wavelet.hashed_version});
    this.authors = {...m.authors};
    this.pending = m.pending || {};
    this.blips = new Map();    // blip id -> {box, textarea, shown}
  }

  get version() { return this.client.version; }

  // The person did ``ops`` (already meant for the wavelet as it is shown).
  local(ops) {
    try {
      for (const op of ops) {
        this.wavelet.apply(op);
        this.client.local(op);
      }
      this.flush();
    } catch (e) {
      this.broken(e);
    }
  }

  flush() {
    const delta = this.client.takeDelta();
    if (delta) {
      page.sent = (page.sent || 0) + 1;
      send({type: "submit", wave: this.uri, delta});
    }
  }

  receiveDelta(delta) {
    try {
      for (const op of delta.operations) {
        const m = op.mutate_document;
        if (m && !this.wavelet.documents.has(m.document_id) && !this.authors[m.document_id]) {
          this.authors[m.document_id] = delta.author;
        }
      }
      this.show(this.client.receiveDelta(delta));
      this.flush();
    } catch (e) {
      this.broken(e);
    }
  }

  receiveAck(result) {
    try {
      this.show(this.client.receiveAck(result));
      this.flush();
    } catch (e) {
      this.broken(e);
    }
  }

  refused(message) {
    try {
      this.client.receiveRefusal(message);
    } catch (e) {
      this.broken(e);
    }
  }

  // The state machine cannot go on: load the wave afresh from the server.
  broken(e) {
    if (!(e instanceof ClientStateError)) console.error(e);
    notice(`the wave was loaded again: ${e.message}`, true);
    send({type: "open", wave: this.uri});
  }

  // Others' operations, transformed against ours: apply and show them.
  show(ops) {
    let structure = false;
    for (const op of ops) {
      const m = op.mutate_document;
      if (!m) {
        this.wavelet.apply(op);
        structure = true;
        continue;
      }
      const blip = this.blips.get(m.document_id);
      let caret = null;
      if (blip) caret = this.caretItems(blip);
      this.wavelet.apply(op);
      if (m.document_id === "conversation") structure = true;
      if (blip) {
        if (caret) caret = caret.map((p) => transformPosition(m.operation, p));
        this.refreshBlip(m.document_id, caret);
      } else if (m.document_id !== "conversation") {
        structure = true;
      }
    }
    if (structure) this.render();
  }

  caretItems(blip) {
    if (document.activeElement !== blip.textarea) return null;
    const {at} = blipText(this.wavelet.document(blip.id));
    const ta = blip.textarea;
    return [at[Math.min(ta.selectionStart, at.length - 1)], at[Math.min(ta.selectionEnd, at.length - 1)]];
  }

  refreshBlip(id, caret) {
    const blip = this.blips.get(id);
    const doc = this.wavelet.document(id);
    const {text, at} = blipText(doc);
    if (blip.shown === text) return;
    const ta = blip.textarea;
    ta.value = text;
    blip.shown = text;
    if (caret) ta.setSelectionRange(textPosition(at, caret[0]), textPosition(at, caret[1]));
    fit(ta);
  }

  // The person typed into a blip: the change since what was shown, as operations.
  typed(id) {
    const blip = this.blips.get(id);
    const ta = blip.textarea;
    const before = blip.shown, after = ta.value;
    if (before === after) return;
    const {start, oldEnd, inserted} = diffText(before, after, ta.selectionEnd);
    const ops = [];
    let doc = this.wavelet.document(id);
    if (oldEnd > start) {
      const op = deleteText(doc, start, oldEnd);
      ops.push({mutate_document: {document_id: id, operation: op}});
      doc = doc.apply(op);
    }
    if (inserted) {
      ops.push({mutate_document: {document_id: id, operation: insertText(doc, start, inserted)}});
    }
    blip.shown = after;
    page.typed = (page.typed || 0) + 1;
    this.local(ops);
    fit(ta);
  }

  reply() {
    const id = newBlipId();
    this.authors[id] = page.user;
    this.local(newBlipOperations(this.wavelet.document("conversation"), id));
    this.render();
    const blip = this.blips.get(id);
    if (blip) blip.textarea.focus();
  }

  render() {
    $("#wave-label").textContent = this.label;
    this.renderParticipants();
    const list = $("#blips");
    const ids = manifestBlips(this.wavelet.document("conversation"))
      .filter((id) => this.wavelet.documents.has(id));
    const focused = document.activeElement;
    const keep = new Map();
    const boxes = ids.map((id) => {
      let blip = this.blips.get(id);
      if (!blip) {
        const textarea = el("textarea", {class: "blip-text", rows: 1, spellcheck: false,
                                         "data-blip": id});
        textarea.setAttribute("aria-label", "blip text");
        const box = el("div", {class: "blip", "data-blip": id},
          el("div", {class: "author"}, this.authors[id] || "?"), textarea);
        blip = {id, box, textarea, shown: null};
        textarea.addEventListener("input", () => this.typed(id));
      }
      keep.set(id, blip);
      return blip.box;
    });
    this.blips = keep;
    list.replaceChildren(...boxes);
    for (const id of ids) this.refreshBlip(id, null);
    for (const blip of keep.values()) {
      $(".author", blip.box).textContent = this.authors[blip.id] || "?";
      fit(blip.textarea);
    }
    if (focused && document.body.contains(focused)) focused.focus();
    $("#wave").dataset.version = String(this.version.version);
  }

  renderParticipants() {
    const list = $("#participants");
    list.replaceChildren(...this.wavelet.participants.map((p) => {
      const problem = this.pending[p];
      const chip = el("li", {class: "participant" + (problem ? " is-pending" : ""), "data-address": p},
        el("span", {class: "address"}, p));
      if (problem) {
        const when = new Date(problem.since_ms).toISOString().slice(0, 16).replace("T", " ");
        const state = problem.given_up ? "not delivered, given up" : `pending since ${when} UTC`;
        chip.append(el("span", {class: "pending"}, `${state}: ${problem.reason}`));
      }
      if (p !== page.user) {
        const remove = el("button", {class: "remove", type: "button", title: `remove ${p}`}, "×");
        remove.addEventListener("click", () => participantChange("remove", p));
        chip.append(remove);
      }
      return chip;
    }));
  }
}

function fit(textarea) {
  textarea.style.height = "auto";
  textarea.style.height = textarea.scrollHeight + "px";
}

function showWave(m) {
  const fresh = !page.wave || page.wave.uri !== m.wave;
  if (page.wave && page.wave.uri === m.wave) notice("");
  page.wave = new OpenWave(m);
  $("#wave").hidden = false;
  $("#no-wave").hidden = true;
  $("#blips").replaceChildren();
  page.wave.render();
  renderInbox();
  send({type: "read", wave: m.wave});
  if (fresh && page.createdByUs.has(m.wave)) {
    page.createdByUs.delete(m.wave);
    page.wave.reply();
  }
}

function leave(uri) {
  send({type: "read", wave: uri});
  send({type: "close", wave: uri});
}

function closeWave() {
  if (page.wave) leave(page.wave.uri);
  page.wave = null;
  $("#wave").hidden = true;
  $("#no-wave").hidden = false;
  renderInbox();
}

function openFromLocation() {
  const match = /^#wave=(.+)$/.exec(location.hash);
  const uri = match ? decodeURIComponent(match[1]) : null;
  if (!uri) {
    if (page.wave) closeWave();
    return;
  }
  if (page.wave && page.wave.uri !== uri) leave(page.wave.uri);
  send({type: "open", wave: uri}, (reply) => {
    if (reply.type === "error") {
      page.wave = null;
      $("#wave").hidden = true;
      $("#no-wave").hidden = false;
    }
  });
}

function participantChange(verb, address) {
  if (!page.wave) return;
  send({type: verb, wave: page.wave.uri, participant: address}, (reply) => {
    if (reply.type === "error") return;
    if (reply.warning) notice("warning: " + reply.warning, true);
    else notice(verb === "add" ? `added ${address}` : `removed ${address}`);
  });
}

// -- wiring ---------------------------------------------------------------------------

window.addEventListener("hashchange", openFromLocation);
$("#new-wave").addEventListener("click", () => {
  send({type: "new"}, (reply) => {
    if (reply.type !== "created") return;
    page.createdByUs.add(reply.wave);
    location.hash = "#wave=" + encodeURIComponent(reply.wave);
  });
});
$("#reply").addEventListener("click", () => page.wave && page.wave.reply());
$("#mark-read").addEventListener("click", () => {
  if (page.wave) send({type: "read", wave: page.wave.uri});
});
$("#add-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("#add-address");
  const address = input.value.trim();
  if (!address) return;
  input.value = "";
  participantChange("add", address);
});

connect();
