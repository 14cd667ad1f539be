// Wavelet operations for the browser (wave-protocol.md 6.6; the server's
// wavebox/model/operations.py), in the JSON shape of the WebSocket
// (docs/web.rst):
//
//   {add_participant: "user@domain"}
//   {remove_participant: "user@domain"}
//   {no_op: true}
//   {mutate_document: {document_id: "b+abc", operation: [components]}}
//
// and a small wavelet (participants and documents) to apply them to.

import {Document, InvalidOperation, RemovedAuthorError, TransformError, canonical} from "./docop.js";
import {compose} from "./compose.js";
import {transform as transformDocOp} from "./transform.js";

export const addParticipant = (p) => ({add_participant: normalizeAddress(p)});
export const removeParticipant = (p) => ({remove_participant: normalizeAddress(p)});
export const NO_OP = Object.freeze({no_op: true});
export const mutateDocument = (documentId, operation) =>
  ({mutate_document: {document_id: documentId, operation}});

/** Participant addresses are compared lower-cased, as the server does (ParticipantId). */
export function normalizeAddress(address) {
  return String(address).toLowerCase();
}

export function operationKind(op) {
  for (const k of ["mutate_document", "add_participant", "remove_participant", "no_op"]) {
    if (Object.prototype.hasOwnProperty.call(op, k)) return k;
  }
  throw new InvalidOperation(`not a wavelet operation: ${JSON.stringify(op)}`);
}

/**
 * ``client`` transformed against a concurrent ``server`` operation, as the
 * server transforms a submitted operation against its history: returns
 * [client', server'] with server then client' == client then server'.
 */
export function transformOperation(client, clientAuthor, server) {
  const kc = operationKind(client), ks = operationKind(server);
  if (kc === "mutate_document" && ks === "mutate_document") {
    const c = client.mutate_document, s = server.mutate_document;
    if (c.document_id !== s.document_id) return [client, server];
    let ct, st;
    try {
      [ct, st] = transformDocOp(c.operation, s.operation);
    } catch (e) {
      if (e instanceof TransformError) throw new TransformError(`document ${c.document_id}: ${e.message}`);
      throw e;
    }
    return [mutateDocument(c.document_id, ct), mutateDocument(s.document_id, st)];
  }
  if (ks === "remove_participant") {
    if (server.remove_participant === normalizeAddress(clientAuthor)) {
      throw new RemovedAuthorError(`${clientAuthor} was removed by a concurrent operation`);
    }
    if (kc === "remove_participant" && client.remove_participant === server.remove_participant) {
      return [NO_OP, NO_OP];
    }
    if (kc === "add_participant" && client.add_participant === server.remove_participant) {
      throw new TransformError(`participant ${client.add_participant} is added and removed concurrently`);
    }
  } else if (ks === "add_participant") {
    if (kc === "add_participant" && client.add_participant === server.add_participant) {
      return [NO_OP, NO_OP];
    }
    if (kc === "remove_participant" && client.remove_participant === server.add_participant) {
      throw new TransformError(`participant ${server.add_participant} is added and removed concurrently`);
    }
  }
  return [client, server];
}

/**
 * The operations of a client delta and of a concurrent server delta, each
 * transformed past the other: [client', server'].  Every server operation
 * meets every client operation in turn.  The server itself transforms each
 * submitted operation against the server operations as recorded
 * (wavebox/model/operations.transform_ops); the two agree because a delta
 * from this client holds at most one mutation per document, and a
 * participant operation only on its own (see ``deltaAccepts``).
 */
export function transformOperations(clientOps, clientAuthor, serverOps) {
  let client = clientOps;
  const serverOut = [];
  for (let s of serverOps) {
    const next = [];
    for (const c of client) {
      const [ct, st] = transformOperation(c, clientAuthor, s);
      next.push(ct);
      s = st;
    }
    client = next;
    serverOut.push(s);
  }
  return [client, serverOut];
}

/**
 * Can ``op`` join the delta ``ops`` still being gathered?  Mutations of
 * documents travel together, one per document (a later edit of the same
 * document is composed into it); a participant change travels alone.
 */
export function deltaAccepts(ops, op) {
  if (operationKind(op) !== "mutate_document") return false;
  return ops.every((o) => operationKind(o) === "mutate_document");
}

/** ``ops`` (a delta being gathered, which ``deltaAccepts`` op) with ``op`` added. */
export function gather(ops, op) {
  const id = op.mutate_document.document_id;
  const i = ops.findIndex((o) => o.mutate_document.document_id === id);
  if (i < 0) return [...ops, op];
  const merged = compose(ops[i].mutate_document.operation, op.mutate_document.operation);
  return [...ops.slice(0, i), mutateDocument(id, merged), ...ops.slice(i + 1)];
}

export function sameOperations(a, b) {
  return a.length === b.length && a.every((op, i) => canonical(op) === canonical(b[i]));
}

/** Participants and documents: what a client shows, changed by wavelet operations. */
export class Wavelet {
  constructor(participants = [], documents = {}) {
    this.participants = participants.map(normalizeAddress);
    this.documents = new Map(Object.entries(documents));
  }

  /** From the JSON of a wavelet snapshot: {participants, documents: {id: operation}}. */
  static fromJSON({participants, documents}) {
    const docs = {};
    for (const id of Object.keys(documents)) docs[id] = Document.fromOp(documents[id]);
    return new Wavelet(participants, docs);
  }

  document(id) {
    return this.documents.get(id) || new Document();
  }

  /** Apply ``op``; throws InvalidOperation (leaving this wavelet as it was) if it does not fit. */
  apply(op) {
    switch (operationKind(op)) {
      case "mutate_document": {
        const {document_id: id, operation} = op.mutate_document;
        let doc;
        try {
          doc = this.document(id).apply(operation);
        } catch (e) {
          if (e instanceof InvalidOperation) e.message = `document ${id}: ${e.message}`;
          throw e;
        }
        this.documents.set(id, doc);
        break;
      }
      case "add_participant":
        if (this.participants.includes(op.add_participant)) {
          throw new InvalidOperation(`add participant: ${op.add_participant} is already a participant`);
        }
        this.participants.push(op.add_participant);
        break;
      case "remove_participant": {
        const i = this.participants.indexOf(op.remove_participant);
        if (i < 0) {
          throw new InvalidOperation(`remove participant: ${op.remove_participant} is not a participant`);
        }
        this.participants.splice(i, 1);
        break;
      }
      default:
        break;
    }
  }

  applyAll(ops) {
    for (const op of ops) this.apply(op);
  }

  toJSON() {
    const documents = {};
    for (const id of [...this.documents.keys()].sort()) documents[id] = this.documents.get(id).toOp();
    return {participants: [...this.participants], documents};
  }
}
