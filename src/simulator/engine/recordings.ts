/**
 * Recordings: live recordings on a channel or a bridge, and the stored recordings they become.
 */
import { ariError } from "../errors.js"
import type { LiveRecording } from "../state.js"
import { recordingJson } from "../state.js"
import type { Engine } from "./core.js"

const recordingFormats = new Set(["wav", "wav16", "gsm", "ulaw", "alaw", "sln", "sln16", "g722", "g729", "WAV"])

export const record = (
  engine: Engine,
  targetUri: string,
  request: {
    readonly name?: string | undefined
    readonly format?: string | undefined
    readonly maxDurationSeconds?: number | undefined
    readonly ifExists?: string | undefined
  }
): LiveRecording => {
  if (request.maxDurationSeconds !== undefined && request.maxDurationSeconds < 0) {
    throw ariError(400, "Bad Request", "max_duration_seconds cannot be negative")
  }
  const ifExists = request.ifExists ?? "fail"
  if (!["fail", "overwrite", "append"].includes(ifExists)) throw ariError(400, "Bad Request", "ifExists invalid")
  if (request.format === undefined || !recordingFormats.has(request.format)) {
    throw ariError(422, "Unprocessable Entity", "specified format is unknown on this system")
  }
  const name = request.name
  if (name === undefined || name === "") throw ariError(500, "Internal Server Error", "Error parsing request")
  if (engine.liveRecordings.has(name) || (ifExists === "fail" && engine.storedRecordings.has(name))) {
    throw ariError(409, "Conflict", `Recording '${name}' already exists and can not be overwritten`)
  }
  const recording: LiveRecording = {
    name,
    format: request.format,
    targetUri,
    state: "queued",
    startedAt: Date.now(),
    timer: undefined
  }
  engine.liveRecordings.set(name, recording)
  engine.later(0, () => {
    if (engine.liveRecordings.get(name) !== recording) return
    recording.state = "recording"
    engine.hub.deliver(engine.ev.recordingStarted(recordingJson(recording)), engine.targetSubscribers(targetUri))
    const max = request.maxDurationSeconds ?? 0
    if (max > 0) engine.later(max * 1000, () => finishRecording(engine, recording, "done"))
  })
  return recording
}

export const getLiveRecording = (engine: Engine, name: string): LiveRecording => {
  const recording = engine.liveRecordings.get(name)
  if (recording === undefined) throw ariError(404, "Not Found", "Recording not found")
  return recording
}

export const finishRecording = (engine: Engine, recording: LiveRecording, state: "done" | "canceled"): void => {
  if (engine.liveRecordings.get(recording.name) !== recording) return
  engine.liveRecordings.delete(recording.name)
  recording.state = state
  const duration = Math.round((Date.now() - recording.startedAt) / 1000)
  if (state === "done") engine.storedRecordings.set(recording.name, { name: recording.name, format: recording.format })
  engine.hub.deliver(
    engine.ev.recordingFinished(recordingJson(recording, state === "done" ? duration : undefined)),
    engine.targetSubscribers(recording.targetUri)
  )
}
