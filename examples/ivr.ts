/**
 * The IVR example: answer, menu, one key; 1 bridges the caller to an agent, anything else says
 * goodbye. Its code is in src/examples/ivr.ts, so that `node dist/main.js demo` runs it too.
 */
export { ivr, type IvrOptions, type IvrOutcome } from "../src/examples/ivr.js"
