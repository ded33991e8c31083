/**
 * A system under test in its own process (started by bench/run.ts with `--expose-gc`): the
 * benchmark asks it over IPC for its CPU time, its memory after a full GC, its open dialogs and
 * the queues it has yet to delete.
 */
import { type Driver, startSut, type SutKind, type SutTarget } from "./suts.js"

export interface WorkerSpec {
  readonly kind: SutKind
  readonly driver: Driver
  readonly target: SutTarget
}

export type WorkerRequest = {
  readonly id: number
  readonly op: "cpu" | "memory" | "dialogs" | "queuesToDelete" | "close"
}

/** Bytes, after a full GC. */
export interface MemoryFigure {
  readonly heap: number
  readonly rss: number
}

const collectGarbage = () => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error("run with --expose-gc")
  gc()
  gc()
}

const spec = JSON.parse(process.argv[2] ?? "{}") as WorkerSpec
const sut = await startSut(spec.kind, spec.driver, spec.target)
process.on("message", async (request: WorkerRequest) => {
  switch (request.op) {
    case "cpu": {
      const usage = process.cpuUsage()
      process.send!({ id: request.id, value: usage.user + usage.system })
      return
    }
    case "memory": {
      collectGarbage()
      const usage = process.memoryUsage()
      process.send!({ id: request.id, value: { heap: usage.heapUsed, rss: usage.rss } satisfies MemoryFigure })
      return
    }
    case "dialogs":
      process.send!({ id: request.id, value: sut.dialogs() })
      return
    case "queuesToDelete":
      process.send!({ id: request.id, value: sut.queuesToDelete() })
      return
    case "close":
      await sut.close()
      process.send!({ id: request.id, value: 0 })
      process.exit(0)
  }
})
process.send!({ ready: true })
