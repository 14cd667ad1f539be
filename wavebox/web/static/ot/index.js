// The browser's OT in one import: document operations, compose, transform,
// wavelet operations and the client state machine (docs/web.rst).
export * from "./docop.js";
export {compose} from "./compose.js";
export {transform, decompose} from "./transform.js";
export * from "./wavelet.js";
export * from "./client.js";
