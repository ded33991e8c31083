/**
 * Playbacks: media played on a channel or a bridge, one after the other per target, and how each
 * ends (done, failed, or never for a scheme Asterisk accepts and cannot play).
 */
import { randomUUID } from "node:crypto"
import { ariError } from "../errors.js"
import type { Playback } from "../state.js"
import { playbackJson } from "../state.js"
import type { Engine } from "./core.js"
import { finishRecording } from "./recordings.js"

export const play = (
  engine: Engine,
  targetUri: string,
  media: ReadonlyArray<string>,
  language: string,
  playbackId: string | undefined
): Playback => {
  const first = media[0]
  if (first === undefined || first === "") {
    throw ariError(500, "Internal Server Error", "Failed to queue media for playback")
  }
  const id = playbackId !== undefined && playbackId !== "" ? playbackId : randomUUID()
  if (engine.playbacks.has(id)) throw ariError(500, "Internal Server Error", "Failed to queue media for playback")
  const playback: Playback = { id, mediaUri: first, targetUri, language, state: "queued", timer: undefined }
  engine.playbacks.set(id, playback)
  let queue = engine.playbackQueues.get(targetUri)
  if (queue === undefined) {
    queue = []
    engine.playbackQueues.set(targetUri, queue)
  }
  queue.push(playback)
  // playbacks on one target play one after the other
  if (queue.length === 1) engine.later(0, () => startPlayback(engine, playback))
  return playback
}

const mediaOutcome = (engine: Engine, mediaUri: string): "done" | "failed" | "never" => {
  const colon = mediaUri.indexOf(":")
  const scheme = mediaUri.slice(0, colon)
  const name = mediaUri.slice(colon + 1)
  switch (scheme) {
    case "sound":
      return name.startsWith("no-such") || name === "" ? "failed" : "done"
    case "recording":
      return engine.storedRecordings.has(name) ? "done" : "failed"
    case "tone":
    case "digits":
    case "number":
    case "characters":
      return "done"
    default:
      // Asterisk accepts an unknown scheme and the playback never ends
      return "never"
  }
}

const startPlayback = (engine: Engine, playback: Playback): void => {
  if (engine.playbacks.get(playback.id) !== playback || playback.state !== "queued") return
  playback.state = "playing"
  engine.hub.deliver(engine.ev.playbackStarted(playbackJson(playback)), engine.targetSubscribers(playback.targetUri))
  const outcome = mediaOutcome(engine, playback.mediaUri)
  if (outcome === "failed") finishPlayback(engine, playback, "failed")
  else if (outcome === "done") {
    playback.timer = engine.later(
      engine.options.timings.playbackDurationMs,
      () => finishPlayback(engine, playback, "done")
    )
  }
}

const finishPlayback = (engine: Engine, playback: Playback, state: "done" | "failed" | "canceled"): void => {
  if (engine.playbacks.get(playback.id) !== playback) return
  if (playback.timer !== undefined) engine.cancel(playback.timer)
  const wasQueued = playback.state === "queued"
  playback.state = state
  engine.playbacks.delete(playback.id)
  const queue = engine.playbackQueues.get(playback.targetUri) ?? []
  const index = queue.indexOf(playback)
  if (index >= 0) queue.splice(index, 1)
  if (!wasQueued || state !== "canceled") {
    engine.hub.deliver(engine.ev.playbackFinished(playbackJson(playback)), engine.targetSubscribers(playback.targetUri))
  }
  const next = queue[0]
  if (next !== undefined && next.state === "queued") engine.later(0, () => startPlayback(engine, next))
  if (queue.length === 0) engine.playbackQueues.delete(playback.targetUri)
}

export const getPlayback = (engine: Engine, id: string): Playback => {
  const playback = engine.playbacks.get(id)
  if (playback === undefined) throw ariError(404, "Not Found", "Playback not found")
  return playback
}

export const stopPlayback = (engine: Engine, id: string): void => {
  const playback = getPlayback(engine, id)
  finishPlayback(engine, playback, playback.state === "queued" ? "canceled" : "done")
}

export const controlPlayback = (engine: Engine, id: string, operation: string | undefined): void => {
  const playback = getPlayback(engine, id)
  const operations = ["restart", "pause", "unpause", "reverse", "forward"]
  if (operation === undefined || !operations.includes(operation)) {
    throw ariError(400, "Bad Request", "Invalid operation parameter")
  }
  if (playback.state !== "playing" && playback.state !== "paused") {
    throw ariError(409, "Conflict", "Playback not in a valid state")
  }
  if (operation === "pause") playback.state = "paused"
  if (operation === "unpause") playback.state = "playing"
}

/** Ends what plays or records on a target that goes away. */
export const stopMediaOn = (engine: Engine, targetUri: string): void => {
  for (const playback of [...(engine.playbackQueues.get(targetUri) ?? [])]) {
    finishPlayback(engine, playback, playback.state === "queued" ? "canceled" : "done")
  }
  for (const recording of [...engine.liveRecordings.values()]) {
    if (recording.targetUri === targetUri) finishRecording(engine, recording, "done")
  }
}
