/**
 * `ari-proxy demo`: the whole product in one process, with no Asterisk and no broker. The ARI
 * simulator stands in for Asterisk, the proxy runs on the in-memory bus, and a small application
 * answers each call, plays a prompt, reads one DTMF digit and hangs up. Everything that crosses
 * the bus is printed; then a summary, and exit 0.
 */
import { Context, Deferred, Effect, Layer, Logger, LogLevel, Queue, Ref } from "effect"
import { Bus, type BusShape } from "./bus/Bus.js"
import { makeMemoryBus } from "./bus/memory.js"
import { makeProxyConfig, ProxyConfigService } from "./config/ProxyConfigService.js"
import { encodeCommand } from "./protocol/codec.js"
import { makeTopics } from "./protocol/topics.js"
import { layerWithAri, Proxy } from "./proxy/Proxy.js"
import { makeSimulator } from "./simulator/effect.js"

const application = "demo"
const topics = makeTopics()

const say = (line: string) => Effect.sync(() => process.stdout.write(line + "\n"))
const short = (id: string) => id.slice(0, 8)

interface Tally {
  readonly calls: number
  readonly events: number
  readonly commands: number
  readonly ended: number
}

/** One call, handled the way an application would: over the bus only. */
const handleDialog = (bus: BusShape, dialogId: string, tally: Ref.Ref<Tally>) =>
  Effect.gen(function*() {
    const tag = `[${short(dialogId)}]`
    const events = yield* Queue.unbounded<{ type: string; ari: any }>()
    const unread: Array<{ type: string; ari: any }> = []
    const responses = yield* Queue.unbounded<{ unique_id: string; status_code: number; response_body: string }>()
    const ended = yield* Deferred.make<string>()
    yield* bus.subscribe(topics.events(dialogId), (payload) =>
      Effect.gen(function*() {
        const wire = JSON.parse(payload)
        const ari = JSON.parse(wire.ari_body)
        yield* Ref.update(tally, (t) => ({ ...t, events: t.events + 1 }))
        const detail = wire.type === "ChannelDtmfReceived" ? ` digit=${ari.digit}` :
          wire.type === "ChannelStateChange" ? ` state=${ari.channel.state}` :
          wire.type.startsWith("Playback") ? ` ${ari.playback.media_uri} ${ari.playback.state}` :
          wire.type === "DialogEnded" ? ` reason=${ari.reason}` : ""
        yield* say(`${tag}   event     ${wire.type}${detail}`)
        if (wire.type === "DialogEnded") yield* Deferred.succeed(ended, ari.reason)
        else yield* Queue.offer(events, { type: wire.type, ari })
      }))
    yield* bus.subscribe(topics.responses(dialogId), (payload) => Queue.offer(responses, JSON.parse(payload)))
    let sequence = 0
    const request = (method: string, url: string) =>
      Effect.gen(function*() {
        const uniqueId = `${short(dialogId)}-${++sequence}`
        yield* bus.publish(topics.commands(dialogId), encodeCommand({ unique_id: uniqueId, url, method, body: "" }))
        const response = yield* Queue.take(responses)
        yield* Ref.update(tally, (t) => ({ ...t, commands: t.commands + 1 }))
        yield* say(`${tag}   command   ${[method, url].filter((part) => part !== "").join(" ")} → ${response.status_code}`)
        return response
      })
    // The next event of a type, keeping the others for later (a key may be pressed during the prompt).
    const next = (type: string) =>
      Effect.gen(function*() {
        const index = unread.findIndex((event) => event.type === type)
        if (index >= 0) return unread.splice(index, 1)[0]!
        while (true) {
          const event = yield* Queue.take(events)
          if (event.type === type) return event
          unread.push(event)
        }
      })

    yield* request("ATTACH", "") // we listen: the proxy may publish the events it held
    const start = yield* next("StasisStart")
    const channel = start.ari.channel.id as string
    yield* request("POST", `/channels/${channel}/answer`)
    yield* request("POST", `/channels/${channel}/play?media=sound:hello-world`)
    yield* next("PlaybackFinished")
    const dtmf = yield* next("ChannelDtmfReceived")
    yield* request("POST", `/channels/${channel}/play?media=${encodeURIComponent(`digits:${dtmf.ari.digit}`)}`)
    yield* next("PlaybackFinished")
    yield* request("DELETE", `/channels/${channel}`)
    yield* Deferred.await(ended)
    yield* Ref.update(tally, (t) => ({ ...t, ended: t.ended + 1 }))
  }).pipe(Effect.scoped)

export const runDemo = Effect.gen(function*() {
  const started = Date.now()
  const sim = yield* makeSimulator({ timings: { playbackDurationMs: 150 } })
  const bus = yield* makeMemoryBus
  const config = makeProxyConfig({
    applications: [application],
    stasisUrl: sim.url,
    websocketUrl: sim.wsUrl,
    wsUser: sim.credentials.username,
    wsPassword: sim.credentials.password,
    serverId: "demo-asterisk"
  })
  yield* say(`ARI simulator on ${sim.url}; proxy on the in-memory bus; application "${application}"\n`)
  const context = yield* Layer.build(
    layerWithAri.pipe(Layer.provide(Layer.succeed(Bus, bus)), Layer.provide(ProxyConfigService.layerFrom(config)))
  ).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
  const proxy = Context.get(context, Proxy)
  while (!(yield* proxy.ready)) yield* Effect.sleep(10)

  const tally = yield* Ref.make<Tally>({ calls: 0, events: 0, commands: 0, ended: 0 })
  const done = yield* Queue.unbounded<void>()
  // The application: one instance in queue group "demo-apps" takes each AppStart.
  yield* bus.subscribe(topics.app(application), (payload) =>
    Effect.gen(function*() {
      const start = JSON.parse(payload) as { dialog_id: string; server_id: string }
      yield* Ref.update(tally, (t) => ({ ...t, calls: t.calls + 1 }))
      yield* say(`[${short(start.dialog_id)}] AppStart  dialog ${start.dialog_id} from ${start.server_id}`)
      yield* handleDialog(bus, start.dialog_id, tally).pipe(
        Effect.ensuring(Queue.offer(done, undefined)),
        Effect.forkDaemon
      )
    }), { queue: "demo-apps" })

  const calls = [
    { caller: { name: "Alice", number: "1001" }, digit: "1" },
    { caller: { name: "Bob", number: "1002" }, digit: "2" },
    { caller: { name: "Carol", number: "1003" }, digit: "3" }
  ]
  for (const call of calls) {
    const channelId = sim.placeCall({ app: application, caller: call.caller, exten: "100" })
    yield* say(`         call      ${call.caller.name} <${call.caller.number}> → channel ${channelId}`)
    // the caller presses a key while the prompt plays
    yield* Effect.sleep(100).pipe(Effect.zipRight(Effect.sync(() => sim.sendDtmf(channelId, call.digit, 80))), Effect.fork)
    yield* Effect.sleep(30)
  }
  for (let i = 0; i < calls.length; i++) yield* Queue.take(done)
  const totals = yield* Ref.get(tally)
  const stats = yield* proxy.stats
  yield* say(
    `\nSummary: ${totals.calls} calls, ${totals.ended} dialogs ended, ${totals.events} events and ` +
      `${totals.commands} command responses received by the application; proxy: ` +
      `${stats.router.eventsReceived} ARI events in, ${stats.router.eventsUnrouted} unrouted, ` +
      `${stats.dialogs.commandsAnswered} commands answered; ${Date.now() - started} ms.`
  )
}).pipe(Effect.scoped)
