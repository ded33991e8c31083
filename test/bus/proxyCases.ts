/**
 * Proxy-level conformance cases: the ARI simulator, the proxy and applications on one bus driver.
 * The driver test files pass them to `runBusConformance` as extra cases, so the same calls run on
 * the in-memory bus, NATS and RabbitMQ. Every case uses its own application name, so parallel runs
 * and other test files cannot collide; on RabbitMQ the queues the cases leave are deleted by the
 * test file (`createdTopics`).
 */
import { spawn } from "node:child_process"
import path from "node:path"
import { Chunk, Deferred, Duration, Effect, Exit, Option, Queue, Scope, Stream } from "effect"
import type { BusShape } from "../../src/bus/Bus.js"
import { type AriDialog, makeAriClient, type ProxyChange } from "../../src/client/index.js"
import type { ProxyShape } from "../../src/proxy/Proxy.js"
import type { SimulatorHandle } from "../../src/simulator/index.js"
import { startApp, type TestDialog } from "../support/apps.js"
import { startProxy, startSim } from "../support/harness.js"
import { startSeedApp } from "../support/seedClient.js"
import {
  type BusConformanceTarget,
  type BusCase,
  type BusWorld,
  createdTopics,
  describeStats,
  uniqueTopic,
  untilConnected,
  waitUntil
} from "./conformance.js"

/** Short enough that teardown is observable within a case (the drivers' test options keep grace short too). */
const ENDED_LINGER_MS = 150

/** An application name nobody else uses; its queue (RabbitMQ) is deleted after the file. */
const newApplication = () => uniqueTopic("app")

const dialogTopics = (dialogId: string) => [`events_${dialogId}`, `commands_${dialogId}`, `responses_${dialogId}`]

const rememberDialog = (dialogId: string) => {
  for (const topic of dialogTopics(dialogId)) createdTopics.add(topic)
}

const fail = (message: string) => Effect.fail(new Error(message))

const expectEqual = <A>(actual: A, expected: A, what: string) =>
  JSON.stringify(actual) === JSON.stringify(expected) ?
    Effect.void :
    fail(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`)

const expectTrue = (condition: boolean, what: string) => condition ? Effect.void : fail(what)

/** Bounds a wait so that a case fails with a message instead of hitting the test timeout. */
const within = <A, E, R>(ms: number, what: string) => (effect: Effect.Effect<A, E, R>) =>
  effect.pipe(Effect.timeoutFail({ duration: Duration.millis(ms), onTimeout: () => new Error(`timed out: ${what}`) }))

/** A proxy on its own connection of the world, serving `application` for `sim`. */
const proxyOn = (
  target: BusConformanceTarget,
  world: BusWorld,
  sim: SimulatorHandle,
  application: string,
  serverId: string
) =>
  Effect.gen(function*() {
    const bus = yield* world.connect
    yield* untilConnected(bus)
    const { proxy } = yield* startProxy(sim, bus, {
      applications: [application],
      serverId,
      endedLingerMs: ENDED_LINGER_MS
    }, target.ariMode)
    // The proxy's own topics of the application (RabbitMQ keeps them as durable queues).
    const { topics } = proxy
    for (const topic of [topics.unrouted(application), topics.dialogRequests(application)]) createdTopics.add(topic)
    createdTopics.add(topics.dialogRequests(application, serverId))
    return { bus, proxy }
  })

/** What an application instance did with one dialog. */
interface Handled {
  readonly dialogId: string
  readonly serverId: string
  readonly channelId: string
  readonly answerStatus: number
  readonly hangupStatus: number
}

/** The usual handling of a call by an application: answer it, hang it up, see it end. */
const handleCall = (dialog: TestDialog): Effect.Effect<Handled, Error> =>
  Effect.gen(function*() {
    rememberDialog(dialog.dialogId)
    const start = yield* dialog.waitFor("StasisStart").pipe(within(5_000, `StasisStart of ${dialog.dialogId}`))
    const channelId = start.ari.channel.id as string
    const answer = yield* dialog.request("POST", `/channels/${channelId}/answer`).pipe(within(5_000, "answer"))
    const hangup = yield* dialog.request("DELETE", `/channels/${channelId}`).pipe(within(5_000, "hangup"))
    yield* Deferred.await(dialog.ended).pipe(within(5_000, `DialogEnded of ${dialog.dialogId}`))
    return {
      dialogId: dialog.dialogId,
      serverId: dialog.serverId,
      channelId,
      answerStatus: answer.status_code,
      hangupStatus: hangup.status_code
    }
  })

/**
 * An application instance that handles every dialog it is given, concurrently; what it did goes
 * into `handled`, what went wrong into `failures`.
 */
const serveCalls = (
  bus: BusShape,
  application: string,
  queue: string | undefined
): Effect.Effect<{ handled: Array<Handled>; failures: Array<string> }, never, Scope.Scope> =>
  Effect.gen(function*() {
    const handled: Array<Handled> = []
    const failures: Array<string> = []
    const dialogs = yield* startApp(bus, application, queue === undefined ? {} : { queue })
    yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
      const dialog = yield* Queue.take(dialogs)
      yield* Effect.forkScoped(handleCall(dialog).pipe(
        Effect.match({
          onSuccess: (result) => void handled.push(result),
          onFailure: (error) => void failures.push(error.message)
        })
      ))
    })))
    return { handled, failures }
  })

/** `count` application instances in one queue group, each on its own connection. */
const startInstances = (world: BusWorld, application: string, count: number) =>
  Effect.forEach(Array.from({ length: count }), () =>
    Effect.gen(function*() {
      const bus = yield* world.connect
      yield* untilConnected(bus)
      return yield* serveCalls(bus, application, "apps")
    }))

/** ARI requests that answered `channelId`, as the simulator recorded them. */
const answersOf = (sim: SimulatorHandle, channelId: string) =>
  sim.requests().filter((r) => r.method === "POST" && r.path === `/ari/channels/${channelId}/answer`).length

/** Waits for the proxy to forget every dialog (ended, linger over, subscription closed). */
const untilNoDialogs = (proxy: ProxyShape) =>
  waitUntil(() => `the proxy releases its dialogs (${proxy.dialogs().length} left)`, () =>
    proxy.dialogs().length === 0, 10_000)

const wholeCall: BusCase = {
  name: "proxy: a whole call through simulator, proxy, bus and application (events in order, commands, end)",
  timeoutMs: 20_000,
  run: (target) =>
    Effect.gen(function*() {
      const world = yield* target.world
      const application = newApplication()
      const sim = yield* startSim()
      yield* proxyOn(target, world, sim, application, "ast-whole")
      const appBus = yield* world.connect
      const dialogs = yield* startApp(appBus, application)
      const channelId = sim.placeCall({ app: application, caller: { name: "Alice", number: "1001" } })
      const dialog = yield* Queue.take(dialogs).pipe(within(5_000, "AppStart"))
      rememberDialog(dialog.dialogId)
      yield* expectEqual(dialog.serverId, "ast-whole", "AppStart server_id")
      yield* dialog.waitFor("StasisStart").pipe(within(5_000, "StasisStart"))

      const answered = yield* dialog.request("POST", `/channels/${channelId}/answer`).pipe(within(5_000, "answer"))
      yield* expectEqual(answered.status_code, 204, "answer status")
      const played = yield* dialog.request("POST", `/channels/${channelId}/play?media=sound:hello-world`).pipe(
        within(5_000, "play")
      )
      yield* expectEqual(played.status_code, 201, "play status")
      const playbackId = JSON.parse(played.response_body).id as string
      yield* dialog.waitFor("PlaybackFinished", (e) => e.ari.playback.id === playbackId).pipe(
        within(5_000, "PlaybackFinished")
      )
      const hungUp = yield* dialog.request("DELETE", `/channels/${channelId}`).pipe(within(5_000, "hangup"))
      yield* expectEqual(hungUp.status_code, 204, "hangup status")
      const ended = yield* Deferred.await(dialog.ended).pipe(within(5_000, "DialogEnded"))

      // Every event ARI sent the application (this one call), exactly as sent and in ARI's order.
      const sent = sim.events(application).map((e) => JSON.stringify(e))
      const published = dialog.events.slice(0, -1).map((e) => e.ari_body)
      const firstDifference = published.findIndex((body, i) => body !== sent[i])
      yield* expectEqual(
        [published.length, firstDifference],
        [sent.length, -1],
        `events on events_<dialog> (count, first difference): published ${dialog.events.map((e) => e.type)}`
      )
      const types = dialog.events.map((e) => e.type)
      yield* expectEqual(types[0], "StasisStart", "first event")
      yield* expectEqual(types.slice(-2), ["StasisEnd", "DialogEnded"], "last events")
      yield* expectTrue(
        types.indexOf("PlaybackStarted") >= 0 && types.indexOf("PlaybackStarted") < types.indexOf("PlaybackFinished"),
        `playback events in order: ${types.join(",")}`
      )
      yield* expectTrue(dialog.events.every((e) => e.server_id === "ast-whole"), "server_id on every event")
      yield* expectEqual(
        dialog.events.map((e) => e.seq),
        dialog.events.map((_, i) => i + 1),
        "seq numbers the dialog's events from 1, DialogEnded included"
      )
      yield* expectEqual(ended.ari.reason, "channels_left", "DialogEnded reason")
      yield* expectEqual(dialog.responses.map((r) => r.status_code), [200, 204, 201, 204], "responses (attach first)")
    })
}

const queueGroupDistribution: BusCase = {
  name: "proxy: N application instances share the AppStarts, each delivered to exactly one, every call handled",
  timeoutMs: 30_000,
  run: (target) =>
    Effect.gen(function*() {
      const world = yield* target.world
      const application = newApplication()
      const sim = yield* startSim()
      yield* proxyOn(target, world, sim, application, "ast-group")
      const instances = yield* startInstances(world, application, 3)
      // 30 calls: with 3 members picked at random (NATS), one left without any is a 1-in-60,000 event.
      const calls = 30
      const channels = Array.from({ length: calls }, () => sim.placeCall({ app: application }))
      const total = () => instances.reduce((sum, instance) => sum + instance.handled.length, 0)
      const failures = () => instances.flatMap((instance) => instance.failures)
      yield* waitUntil(
        () => `every call handled (${total()} of ${calls}; failures: ${failures().join("; ")})`,
        () => total() + failures().length >= calls,
        15_000
      )
      yield* Effect.sleep("300 millis") // a duplicate AppStart would arrive now
      yield* expectEqual(failures(), [], "failures")
      const handled = instances.flatMap((instance) => instance.handled)
      yield* expectEqual(new Set(handled.map((h) => h.dialogId)).size, calls, "distinct dialogs")
      yield* expectEqual(handled.map((h) => h.channelId).sort(), [...channels].sort(), "each call handled once")
      for (const [i, instance] of instances.entries()) {
        yield* expectTrue(instance.handled.length > 0, `instance ${i} took no AppStart`)
      }
      yield* expectTrue(handled.every((h) => h.answerStatus === 204 && h.hangupStatus === 204), "commands answered")
      for (const channelId of channels) yield* expectEqual(answersOf(sim, channelId), 1, `answers of ${channelId}`)
    })
}

const twoProxies: BusCase = {
  name: "proxy: two proxies (two Asterisks) and three instances: each call handled once, commands to its own proxy",
  timeoutMs: 30_000,
  run: (target) =>
    Effect.gen(function*() {
      const world = yield* target.world
      const application = newApplication()
      const asterisks = [
        { serverId: "ast-a", prefix: "a", sim: yield* startSim() },
        { serverId: "ast-b", prefix: "b", sim: yield* startSim() }
      ] as const
      for (const asterisk of asterisks) yield* proxyOn(target, world, asterisk.sim, application, asterisk.serverId)
      const instances = yield* startInstances(world, application, 3)
      const perAsterisk = 10
      // Channel ids tell the Asterisks apart (two simulators would otherwise number alike).
      for (let i = 0; i < perAsterisk; i++) {
        for (const { sim, prefix } of asterisks) sim.placeCall({ app: application, channelId: `${prefix}-${i}` })
      }
      const calls = perAsterisk * asterisks.length
      const total = () => instances.reduce((sum, instance) => sum + instance.handled.length, 0)
      const failures = () => instances.flatMap((instance) => instance.failures)
      yield* waitUntil(
        () => `every call handled (${total()} of ${calls}; failures: ${failures().join("; ")})`,
        () => total() + failures().length >= calls,
        15_000
      )
      yield* Effect.sleep("300 millis") // a duplicate AppStart would arrive now
      yield* expectEqual(failures(), [], "failures")
      const handled = instances.flatMap((instance) => instance.handled)
      yield* expectEqual(handled.length, calls, "calls handled")
      yield* expectEqual(new Set(handled.map((h) => h.dialogId)).size, calls, "distinct dialogs")
      for (const { sim, serverId, prefix } of asterisks) {
        const mine = handled.filter((h) => h.channelId.startsWith(`${prefix}-`))
        yield* expectEqual(mine.length, perAsterisk, `calls of ${serverId} handled`)
        yield* expectTrue(mine.every((h) => h.serverId === serverId), `AppStart server_id of ${serverId}'s calls`)
        yield* expectTrue(mine.every((h) => h.answerStatus === 204 && h.hangupStatus === 204), "commands answered")
        // Each command reached the simulator that owns the channel, once, and never the other one.
        const channelRequests = sim.requests().filter((r) => r.path.startsWith("/ari/channels/"))
        const strangers = channelRequests.filter((r) => !r.path.startsWith(`/ari/channels/${prefix}-`))
        yield* expectEqual(strangers.map((r) => `${r.method} ${r.path}`), [], `requests ${serverId} should not get`)
        for (let i = 0; i < perAsterisk; i++) {
          yield* expectEqual(answersOf(sim, `${prefix}-${i}`), 1, `answers of ${prefix}-${i} at ${serverId}`)
        }
      }
    })
}

const responseCorrelation: BusCase = {
  name: "proxy: concurrent commands on two dialogs each get their own response (unique_id, dialog)",
  timeoutMs: 20_000,
  run: (target) =>
    Effect.gen(function*() {
      const world = yield* target.world
      const application = newApplication()
      const sim = yield* startSim()
      yield* proxyOn(target, world, sim, application, "ast-corr")
      const appBus = yield* world.connect
      const dialogs = yield* startApp(appBus, application)
      const channels = [sim.placeCall({ app: application }), sim.placeCall({ app: application })]
      const joined = [
        yield* Queue.take(dialogs).pipe(within(5_000, "first AppStart")),
        yield* Queue.take(dialogs).pipe(within(5_000, "second AppStart"))
      ]
      const perDialog = 25
      const exercise = (dialog: TestDialog) =>
        Effect.gen(function*() {
          rememberDialog(dialog.dialogId)
          const start = yield* dialog.waitFor("StasisStart").pipe(within(5_000, "StasisStart"))
          const channelId = start.ari.channel.id as string
          const value = (i: number) => `${dialog.dialogId.slice(0, 8)}-${i}`
          // All at once: the responses must still find their requests.
          const sets = yield* Effect.forEach(
            Array.from({ length: perDialog }, (_, i) => i),
            (i) => dialog.request("POST", `/channels/${channelId}/variable`, { variable: `V${i}`, value: value(i) }),
            { concurrency: "unbounded" }
          )
          yield* expectTrue(sets.every((r) => r.status_code === 204), "every variable set")
          const gets = yield* Effect.forEach(
            Array.from({ length: perDialog }, (_, i) => i),
            (i) => dialog.request("GET", `/channels/${channelId}/variable?variable=V${i}`),
            { concurrency: "unbounded" }
          )
          const values = gets.map((r) => r.status_code === 200 ? JSON.parse(r.response_body).value : r.status_code)
          yield* expectEqual(values, gets.map((_, i) => value(i)), `values read back on ${channelId}`)
          const ids = dialog.responses.map((r) => r.unique_id)
          yield* expectEqual(new Set(ids).size, ids.length, "one response per unique_id")
          yield* expectEqual(ids.length, 1 + 2 * perDialog, "responses on the dialog's topic")
          return channelId
        })
      const used = yield* Effect.all(joined.map(exercise), { concurrency: "unbounded" }).pipe(
        within(10_000, "concurrent commands")
      )
      yield* expectEqual([...used].sort(), [...channels].sort(), "each dialog commanded its own channel")
    })
}

const teardown: BusCase = {
  name: "proxy: nothing left behind once dialogs have ended, lingered and been retired",
  timeoutMs: 20_000,
  run: (target) =>
    Effect.gen(function*() {
      const world = yield* target.world
      const application = newApplication()
      const sim = yield* startSim()
      const { bus: proxyBus, proxy } = yield* proxyOn(target, world, sim, application, "ast-teardown")
      // What the proxy itself keeps for its whole life (dialogs_<app> subscriptions): not a leak.
      const baseline = yield* target.leftBehind(proxyBus, [])
      const calls = 5
      const dialogIds = yield* Effect.scoped(Effect.gen(function*() {
        const appBus = yield* world.connect
        const instance = yield* serveCalls(appBus, application, undefined)
        for (let i = 0; i < calls; i++) sim.placeCall({ app: application })
        yield* waitUntil(
          () => `every call handled (${instance.handled.length}; failures: ${instance.failures.join("; ")})`,
          () => instance.handled.length + instance.failures.length >= calls
        )
        yield* expectEqual(instance.failures, [], "failures")
        return instance.handled.map((h) => h.dialogId)
      })) // the application is gone too: on the in-memory bus its subscriptions would count
      yield* untilNoDialogs(proxy)
      const stats = yield* proxy.stats
      yield* expectEqual([stats.activeDialogs, stats.boundEntities], [0, 0], "dialogs and bound entities")
      const left = yield* target.leftBehind(proxyBus, dialogIds.flatMap(dialogTopics))
      yield* expectEqual(left, baseline, `left behind (proxy bus ${describeStats(proxyBus)})`)
    })
}

const seedClient: BusCase = {
  name: "proxy: a seed-style client (DUMMY first, no unique_id, next response) gets the right answers",
  timeoutMs: 20_000,
  run: (target) =>
    Effect.gen(function*() {
      const world = yield* target.world
      const application = newApplication()
      const sim = yield* startSim()
      const { proxy } = yield* proxyOn(target, world, sim, application, "ast-seed")
      const transport = target.seedTransport === undefined ? yield* world.connect : yield* target.seedTransport
      const dialogs = yield* startSeedApp(transport, application)
      sim.clearRequests()
      const channelId = sim.placeCall({ app: application })
      const dialog = yield* Queue.take(dialogs).pipe(within(5_000, "AppStart"))
      rememberDialog(dialog.dialogId)
      const first = yield* Queue.take(dialog.events).pipe(within(5_000, "first event"))
      yield* expectEqual(first.type, "StasisStart", "first event")
      const answer = (response: Option.Option<{ status_code: number; response_body: string }>, what: string) =>
        Option.match(response, {
          onNone: () => fail(`${what}: no response within 5 s`),
          onSome: Effect.succeed
        })
      // Parameters in the JSON body, as the Go helpers send them.
      const setVar = yield* answer(
        yield* dialog.command("POST", `/channels/${channelId}/variable`, { variable: "FOO", value: "bar" }),
        "set variable"
      )
      yield* expectEqual(setVar.status_code, 204, "set variable status (not the answer to DUMMY)")
      const getVar = yield* answer(
        yield* dialog.command("GET", `/channels/${channelId}/variable`, { variable: "FOO" }),
        "get variable"
      )
      yield* expectEqual(JSON.parse(getVar.response_body), { value: "bar" }, "variable read back")
      const played = yield* answer(
        yield* dialog.command("POST", `/channels/${channelId}/play`, { media: "sound:hello-world" }),
        "play"
      )
      // The answer to this command, not the previous one: no off-by-one.
      yield* expectEqual(JSON.parse(played.response_body).media_uri, "sound:hello-world", "play answer")
      const hangup = yield* answer(yield* dialog.command("DELETE", `/channels/${channelId}`), "hangup")
      yield* expectEqual(hangup.status_code, 204, "hangup status")
      // DUMMY reached the proxy (the seed answered it, shifting every answer) and became nothing.
      yield* waitUntil("DUMMY counted", () => Effect.runSync(proxy.stats).dialogs.nonJsonCommands >= 1, 5_000)
      const toAri = sim.requests().filter((r) => r.path === "/ari" || r.path === "/ari/")
      yield* expectEqual(toAri.length, 0, "ARI requests made of DUMMY")
      // Besides the commands' requests, the proxy asks only which Asterisk it is (presence).
      const commandRequests = sim.requests().filter((r) => r.path !== "/ari/asterisk/info")
      yield* expectEqual(commandRequests.length, 4, "ARI requests (one per command)")
    })
}


/** The lease of the failover case: short, so that the case is quick. */
const LEASE_MS = 1500

/**
 * An application instance that takes one call and then dies without a word: in a process of its
 * own, killed with SIGKILL (NATS, RabbitMQ), or here with its scope closed (the memory bus).
 */
const doomedInstance = (target: BusConformanceTarget, world: BusWorld, application: string) =>
  Effect.gen(function*() {
    const taken = yield* Deferred.make<{ readonly dialog_id: string; readonly channel_id: string }>()
    const listening = yield* Deferred.make<void>()
    const spec = target.instanceProcess
    if (spec === undefined) {
      const scope = yield* Scope.make()
      const bus = yield* Scope.extend(world.connect, scope)
      yield* untilConnected(bus)
      yield* (yield* makeAriClient(bus, { application })).serve((dialog) =>
        Effect.gen(function*() {
          const caller = yield* dialog.firstChannel
          yield* caller.answer()
          yield* Deferred.succeed(taken, { dialog_id: dialog.id, channel_id: caller.id })
          return yield* Effect.never
        }), { onListening: Deferred.succeed(listening, undefined) }).pipe(Effect.forkIn(scope))
      return { taken, listening, kill: Scope.close(scope, Exit.void) }
    }
    const root = path.resolve(import.meta.dirname, "../..")
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(
          process.execPath,
          [path.join(root, "node_modules/vite-node/vite-node.mjs"), "test/support/appInstance.ts", "--",
            JSON.stringify({ ...spec, application })],
          { cwd: root, stdio: ["ignore", "pipe", "inherit"] }
        )
      ),
      (child) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
    )
    let output = ""
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk
      const lines = output.split("\n")
      if (lines.includes("{\"listening\":true}")) Deferred.unsafeDone(listening, Exit.void)
      const line = lines.find((candidate) => candidate.startsWith("{\"dialog_id\""))
      if (line !== undefined) Deferred.unsafeDone(taken, Exit.succeed(JSON.parse(line)))
    })
    return { taken, listening, kill: Effect.sync(() => child.kill("SIGKILL")) }
  })

const instanceFailover: BusCase = {
  name: "proxy: an application instance killed mid-call is replaced within the lease; the next one misses nothing",
  timeoutMs: 60_000,
  run: (target) =>
    Effect.gen(function*() {
      const world = yield* target.world
      const application = newApplication()
      const sim = yield* startSim()
      const proxyBus = yield* world.connect
      yield* untilConnected(proxyBus)
      yield* startProxy(sim, proxyBus, {
        applications: [application],
        serverId: "ast-failover",
        endedLingerMs: ENDED_LINGER_MS,
        dialogLeaseMs: LEASE_MS
      }, target.ariMode)

      const first = yield* doomedInstance(target, world, application)
      yield* Deferred.await(first.listening).pipe(within(20_000, "the first instance listening"))
      const channelId = sim.placeCall({ app: application })
      const taken = yield* Deferred.await(first.taken).pipe(within(20_000, "the first instance took the call"))
      rememberDialog(taken.dialog_id)
      yield* expectEqual(taken.channel_id, channelId, "the first instance's call")
      yield* first.kill
      const killedAt = Date.now()
      // Pressed while nobody drives the call: the next instance must still see them.
      sim.sendDtmf(channelId, "123", 5)

      const appBus = yield* world.connect
      yield* untilConnected(appBus)
      const resumed = yield* Deferred.make<{ readonly dialog: AriDialog; readonly after: number }>()
      const handled = yield* Deferred.make<string>()
      const secondListening = yield* Deferred.make<void>()
      yield* (yield* makeAriClient(appBus, { application })).serve((dialog) =>
        Effect.gen(function*() {
          yield* Deferred.succeed(resumed, { dialog, after: Date.now() - killedAt })
          const caller = dialog.channel(channelId)
          const digits = yield* caller.dtmf.pipe(Stream.take(3), Stream.runCollect)
          const prompt = yield* caller.play({ media: "sound:hello-world" })
          yield* prompt.finished
          yield* caller.hangup()
          yield* Deferred.succeed(handled, Chunk.join(digits, ""))
          yield* dialog.ended
        }), { onListening: Deferred.succeed(secondListening, undefined) }).pipe(Effect.forkScoped)
      yield* Deferred.await(secondListening).pipe(within(5_000, "the second instance listening"))

      const { dialog, after } = yield* Deferred.await(resumed).pipe(within(LEASE_MS + 5_000, "the dialog offered anew"))
      yield* expectEqual(dialog.id, taken.dialog_id, "the dialog taken over")
      yield* expectTrue(after < LEASE_MS + 1_000, `taken over ${after} ms after the kill (lease ${LEASE_MS} ms)`)
      yield* expectTrue(dialog.resumed !== undefined, "marked as resumed")
      yield* expectEqual(
        dialog.resumed?.state.channels.map((channel) => channel.id),
        [channelId],
        "the call's channels in the resumed AppStart"
      )
      yield* expectEqual(yield* Deferred.await(handled).pipe(within(15_000, "the prompt and hang-up")), "123", "digits")
      const end = yield* dialog.ended.pipe(within(5_000, "DialogEnded"))
      yield* expectEqual(end.reason, "channels_left", "DialogEnded reason")
      const delivery = yield* dialog.delivery
      yield* expectEqual(delivery.gaps, [], "no event lost on the way")
    })
}

/** The presence interval of the presence case: 3 of them is how long a killed proxy stays in the set. */
const PRESENCE_INTERVAL_MS = 1000

/** A proxy that can be stopped (drain, goodbye) or killed (silence from then on). */
interface StoppableProxy {
  readonly stop: Effect.Effect<void, unknown>
  readonly kill: Effect.Effect<void>
}

/**
 * A proxy for `sim`, with presence every PRESENCE_INTERVAL_MS, under `prefix`: in a process of its
 * own on NATS and RabbitMQ (SIGTERM, SIGKILL); here on the memory bus (its scope closed, or its
 * bus cut off: it goes on running but nothing it sends arrives).
 */
const stoppableProxy = (
  target: BusConformanceTarget,
  world: BusWorld,
  sim: SimulatorHandle,
  application: string,
  serverId: string,
  prefix: string
) =>
  Effect.gen(function*() {
    for (const topic of ["unrouted_", "dialogs_"].map((kind) => `${prefix}${kind}${application}`)) {
      createdTopics.add(topic)
    }
    createdTopics.add(`${prefix}dialogs_${application}@${serverId}`)
    const spec = target.instanceProcess
    if (spec === undefined) {
      const bus = yield* world.connect
      let severed = false
      const severable: BusShape = {
        ...bus,
        publish: (topic, payload) => severed ? Effect.void : bus.publish(topic, payload),
        tryPublish: (topic, payload) => severed || bus.tryPublish(topic, payload),
        broadcast: (topic, payload) => severed ? Effect.void : bus.broadcast(topic, payload)
      }
      const scope = yield* Scope.make()
      yield* startProxy(sim, severable, {
        applications: [application],
        serverId,
        bus: { subjectPrefix: prefix },
        presenceIntervalMs: PRESENCE_INTERVAL_MS
      }).pipe(Scope.extend(scope))
      yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
      return {
        stop: Scope.close(scope, Exit.void),
        kill: Effect.sync(() => {
          severed = true
        })
      } satisfies StoppableProxy
    }
    const root = path.resolve(import.meta.dirname, "../..")
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(
          process.execPath,
          [path.join(root, "node_modules/vite-node/vite-node.mjs"), "test/support/proxyInstance.ts", "--",
            JSON.stringify({
              ...spec,
              prefix,
              serverId,
              application,
              presenceIntervalMs: PRESENCE_INTERVAL_MS,
              ari: {
                url: sim.url,
                wsUrl: sim.wsUrl,
                user: sim.credentials.username,
                password: sim.credentials.password
              }
            })],
          { cwd: root, stdio: ["ignore", "inherit", "inherit"] }
        )
      ),
      (child) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
    )
    const exited = yield* Deferred.make<number | null>()
    child.on("exit", (code) => Deferred.unsafeDone(exited, Exit.succeed(code)))
    return {
      stop: Effect.gen(function*() {
        child.kill("SIGTERM")
        const code = yield* Deferred.await(exited).pipe(within(20_000, `${serverId} exiting after SIGTERM`))
        yield* expectEqual(code, 0, `exit code of ${serverId} after SIGTERM`)
      }),
      kill: Effect.sync(() => {
        child.kill("SIGKILL")
      })
    } satisfies StoppableProxy
  })

const presence: BusCase = {
  name: "proxy: presence: two proxies appear; one stopped says goodbye and leaves at once, one killed after 3 intervals",
  timeoutMs: 90_000,
  run: (target) =>
    Effect.gen(function*() {
      const world = yield* target.world
      const application = newApplication()
      // A prefix of the case's own: no other test's proxies come into view.
      const prefix = `${application}.`
      const stopped = { serverId: `${application}-stopped`, sim: yield* startSim({ asteriskId: "02:fc:00:00:00:0a" }) }
      const killed = { serverId: `${application}-killed`, sim: yield* startSim({ asteriskId: "02:fc:00:00:00:0b" }) }

      const clientBus = yield* world.connect
      const client = yield* makeAriClient(clientBus, { application, prefix })
      const changes: Array<ProxyChange> = []
      const seenAt: Array<number> = []
      yield* client.proxies.changes.pipe(
        Stream.runForEach((change) =>
          Effect.sync(() => {
            changes.push(change)
            seenAt.push(Date.now())
          })
        ),
        Effect.forkScoped
      )
      const proxyA = yield* stoppableProxy(target, world, stopped.sim, application, stopped.serverId, prefix)
      const proxyB = yield* stoppableProxy(target, world, killed.sim, application, killed.serverId, prefix)
      const known = () => Effect.runSync(client.proxies.current)
      yield* waitUntil(
        () => `both proxies ready in the set (have ${JSON.stringify(known())})`,
        () => known().filter((proxy) => proxy.ready && proxy.asterisk !== undefined).length === 2,
        60_000
      )
      const byId = new Map(known().map((proxy) => [proxy.serverId, proxy]))
      for (const [{ serverId }, entityId] of [[stopped, "02:fc:00:00:00:0a"], [killed, "02:fc:00:00:00:0b"]] as const) {
        const proxy = byId.get(serverId)
        yield* expectEqual(
          proxy && { applications: proxy.applications, draining: proxy.draining, asterisk: proxy.asterisk },
          { applications: [application], draining: false, asterisk: { version: "23.4.1", entityId } },
          `what ${serverId} announces`
        )
        yield* expectEqual(proxy?.intervalMs, PRESENCE_INTERVAL_MS, `interval of ${serverId}`)
      }
      const lefts = () =>
        changes.flatMap((change) => change._tag === "Left" ? [`${change.proxy.serverId} ${change.reason}`] : [])

      yield* proxyA.stop
      yield* waitUntil(() => `${stopped.serverId} gone (changes: ${lefts()})`, () => lefts().length >= 1, 15_000)
      yield* expectEqual(lefts(), [`${stopped.serverId} goodbye`], "the stopped proxy left with its goodbye")
      yield* expectEqual(known().map((proxy) => proxy.serverId), [killed.serverId], "the set after the stop")

      yield* proxyB.kill
      yield* waitUntil(() => `${killed.serverId} gone (changes: ${lefts()})`, () => lefts().length >= 2, 30_000)
      yield* expectEqual(lefts(), [`${stopped.serverId} goodbye`, `${killed.serverId} silent`], "who left, and why")
      yield* expectEqual(known(), [], "the set at the end")
      // Silent: gone once 3 intervals had passed since it was last heard of, not sooner.
      const silent = changes.findIndex((change) => change._tag === "Left" && change.reason === "silent")
      const lastHeard = changes[silent]!.proxy.lastSeenAt
      yield* expectTrue(
        seenAt[silent]! >= lastHeard + 3 * PRESENCE_INTERVAL_MS,
        `left ${seenAt[silent]! - lastHeard} ms after last heard of (3 intervals: ${3 * PRESENCE_INTERVAL_MS} ms)`
      )
    })
}

export const proxyCases: ReadonlyArray<BusCase> = [
  wholeCall,
  queueGroupDistribution,
  twoProxies,
  responseCorrelation,
  teardown,
  seedClient,
  instanceFailover,
  presence
]

/**
 * The same cases with the simulator dialling the proxy (a persistent outbound websocket), commands
 * going back over that socket as RESTRequest frames.
 */
export const outboundProxyCases: ReadonlyArray<BusCase> = proxyCases.map((busCase) => ({
  ...busCase,
  name: `${busCase.name} [Asterisk dials the proxy, REST over its websocket]`,
  run: (target) => busCase.run({ ...target, ariMode: "outbound" })
}))
