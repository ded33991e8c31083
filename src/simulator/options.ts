/**
 * Options of the ARI simulator and their defaults. Timings default to a few milliseconds so tests
 * run fast; a real Asterisk takes hundreds of milliseconds for the same steps.
 */

export interface Credentials {
  readonly username: string
  readonly password: string
}

export interface Timings {
  /** Time between `POST /channels/{id}/answer` and the channel being Up (the 204 waits for it). */
  readonly answerDelayMs: number
  /** Time between an originate's 200 and the callee ringing (Dial RINGING). */
  readonly originateRingDelayMs: number
  /** Time between ringing and the callee answering (when `autoAnswer`). */
  readonly originateAnswerDelayMs: number
  /** Time a known sound plays before PlaybackFinished `done`. */
  readonly playbackDurationMs: number
  /** Delay applied to every REST request before it is handled. */
  readonly restResponseDelayMs: number
}

/** One dialplan step: an application and its data, as in `exten => x,n,App(data)`. */
export interface DialplanStep {
  readonly app: string
  readonly data?: string
}

/** context → extension → priorities (priority 1 is the first step). */
export type Dialplan = Readonly<Record<string, Readonly<Record<string, ReadonlyArray<DialplanStep>>>>>

export interface SimulatorOptions {
  /** Port to listen on; 0 picks an ephemeral port (default 0). */
  readonly port?: number
  /** Host to bind (default 127.0.0.1). */
  readonly host?: string
  /** ARI user (default asterisk / asterisk). */
  readonly credentials?: Credentials
  /** Entity id carried as `asterisk_id` (default 02:fc:00:00:00:01). */
  readonly asteriskId?: string
  readonly timings?: Partial<Timings>
  /** Callees answer originates by themselves (default true); otherwise use `answerRemote`. */
  readonly autoAnswer?: boolean
  /** Endpoints that can be dialled, as `Tech/resource` (default PJSIP/sipp, PJSIP/alice, PJSIP/bob). */
  readonly endpoints?: ReadonlyArray<string>
  /** Context of the simulated SIP endpoints (default from-sipp, as in the captured samples). */
  readonly context?: string
  /** Dialplan used by `continue`, extension originates and Local channels. */
  readonly dialplan?: Dialplan
  /** Sound names (for `sound:`) that exist; others named `no-such…` fail. */
  readonly sounds?: ReadonlyArray<string>
  /** Keep a log of delivered events and REST requests (default true). */
  readonly recordLogs?: boolean
  /**
   * Asterisk's `ari.conf` `websocket_write_timeout` in ms (default 100). An event websocket whose kernel
   * buffers are full and that takes no byte for this long (time the simulator itself is busy does not
   * count) is dropped as Asterisk drops a reader that stops reading: no close frame, the frames still
   * waiting are lost, and its apps are deactivated. See `slowReaderDrops`.
   */
  readonly websocketWriteTimeoutMs?: number
}

export interface ResolvedOptions {
  readonly port: number
  readonly host: string
  readonly credentials: Credentials
  readonly asteriskId: string
  timings: Timings
  autoAnswer: boolean
  readonly endpoints: ReadonlyArray<string>
  readonly context: string
  readonly dialplan: Dialplan
  readonly sounds: ReadonlyArray<string>
  readonly recordLogs: boolean
  readonly websocketWriteTimeoutMs: number
}

export const defaultTimings: Timings = {
  answerDelayMs: 2,
  originateRingDelayMs: 1,
  originateAnswerDelayMs: 3,
  playbackDurationMs: 20,
  restResponseDelayMs: 0
}

// The dialplan of the captured samples: `continue` into hold-test,wait answers and waits.
export const defaultDialplan: Dialplan = {
  "hold-test": { wait: [{ app: "Answer" }, { app: "Wait", data: "30" }] }
}

export const defaultSounds: ReadonlyArray<string> = [
  "hello-world",
  "beep",
  "demo-congrats",
  "tt-monkeys",
  "tt-weasels",
  "vm-intro",
  "conf-onlyperson",
  "silence/1"
]

export const resolveOptions = (options: SimulatorOptions = {}): ResolvedOptions => ({
  port: options.port ?? 0,
  host: options.host ?? "127.0.0.1",
  credentials: options.credentials ?? { username: "asterisk", password: "asterisk" },
  asteriskId: options.asteriskId ?? "02:fc:00:00:00:01",
  timings: { ...defaultTimings, ...options.timings },
  autoAnswer: options.autoAnswer ?? true,
  endpoints: options.endpoints ?? ["PJSIP/sipp", "PJSIP/alice", "PJSIP/bob"],
  context: options.context ?? "from-sipp",
  dialplan: options.dialplan ?? defaultDialplan,
  sounds: options.sounds ?? defaultSounds,
  recordLogs: options.recordLogs ?? true,
  websocketWriteTimeoutMs: options.websocketWriteTimeoutMs ?? 100
})
