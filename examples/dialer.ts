/**
 * The outbound dialer example (Promise client): app-initiated dialog, originate, play, hang up.
 * Its code is in src/examples/dialer.ts, beside the IVR the demo runs.
 */
export { dial, type DialerOptions, type DialResult } from "../src/examples/dialer.js"
