/**
 * Bridges: create, destroy, and channels entering and leaving them.
 */
import { randomUUID } from "node:crypto"
import { ariError, bridgeNotFound } from "../errors.js"
import type { Bridge, Channel } from "../state.js"
import { asteriskTimestamp, bridgeSnapshot, channelSnapshot } from "../state.js"
import type { Engine } from "./core.js"
import { stopMediaOn } from "./playbacks.js"

export const createBridge = (engine: Engine, request: {
  readonly type?: string | undefined
  readonly bridgeId?: string | undefined
  readonly name?: string | undefined
}): Bridge => {
  if (request.bridgeId !== undefined && request.bridgeId !== "" && engine.bridges.has(request.bridgeId)) {
    throw ariError(409, "Conflict", "Bridge with the same bridgeId already exists")
  }
  const types = (request.type ?? "mixing").split(",").map((t) => t.trim())
  const bridge: Bridge = {
    id: request.bridgeId !== undefined && request.bridgeId !== "" ? request.bridgeId : randomUUID(),
    bridgeType: types.includes("holding") ? "holding" : "mixing",
    name: request.name ?? "",
    channels: [],
    creationtime: asteriskTimestamp(),
    subscribedApps: new Set(),
    everSoftmix: false
  }
  engine.bridges.set(bridge.id, bridge)
  engine.hub.deliver(engine.ev.bridgeCreated(bridgeSnapshot(bridge)), engine.hub.subscribeAllApps())
  return bridge
}

export const getBridge = (engine: Engine, id: string): Bridge => {
  const bridge = engine.bridges.get(id)
  if (bridge === undefined) throw bridgeNotFound()
  return bridge
}

/** The bridge and the channels a request to add or remove names: 404 for the bridge, 400 for a channel. */
const bridgeAndChannels = (engine: Engine, bridgeId: string, channelIds: ReadonlyArray<string>) => {
  const bridge = getBridge(engine, bridgeId)
  if (channelIds.length === 0) throw ariError(400, "Bad Request", "Missing parameter channel")
  const channels = channelIds.map((id) => {
    const channel = engine.channels.get(id)
    if (channel === undefined || channel.hangingUp) throw ariError(400, "Bad Request", "Channel not found")
    return channel
  })
  return { bridge, channels }
}

export const addToBridge = (engine: Engine, bridgeId: string, channelIds: ReadonlyArray<string>): void => {
  const { bridge, channels } = bridgeAndChannels(engine, bridgeId, channelIds)
  for (const channel of channels) {
    if (channel.stasisApp === undefined) {
      throw ariError(422, "Unprocessable Entity", "Channel not in Stasis application")
    }
  }
  for (const channel of channels) {
    if (channel.bridgeId === bridge.id) continue
    if (channel.bridgeId !== undefined) leaveBridge(engine, channel)
    channel.bridgeId = bridge.id
    bridge.channels.push(channel.id)
    if (bridge.channels.length > 2) bridge.everSoftmix = true
    if (channel.stasisApp !== undefined) bridge.subscribedApps.add(channel.stasisApp)
    engine.hub.deliver(
      engine.ev.channelEnteredBridge(bridgeSnapshot(bridge), channelSnapshot(channel)),
      [...engine.channelSubscribers(channel), ...engine.bridgeSubscribers(bridge)]
    )
  }
}

export const removeFromBridge = (engine: Engine, bridgeId: string, channelIds: ReadonlyArray<string>): void => {
  const { bridge, channels } = bridgeAndChannels(engine, bridgeId, channelIds)
  for (const channel of channels) {
    if (channel.bridgeId !== bridge.id) throw ariError(422, "Unprocessable Entity", "Channel not in this bridge")
  }
  for (const channel of channels) leaveBridge(engine, channel)
}

export const leaveBridge = (engine: Engine, channel: Channel): void => {
  const bridge = channel.bridgeId !== undefined ? engine.bridges.get(channel.bridgeId) : undefined
  channel.bridgeId = undefined
  if (bridge === undefined) return
  const index = bridge.channels.indexOf(channel.id)
  if (index >= 0) bridge.channels.splice(index, 1)
  engine.hub.deliver(
    engine.ev.channelLeftBridge(bridgeSnapshot(bridge), channelSnapshot(channel)),
    [...engine.channelSubscribers(channel), ...engine.bridgeSubscribers(bridge)]
  )
}

export const destroyBridge = (engine: Engine, id: string): void => {
  const bridge = getBridge(engine, id)
  for (const channelId of [...bridge.channels]) {
    const channel = engine.channels.get(channelId)
    if (channel !== undefined) leaveBridge(engine, channel)
  }
  stopMediaOn(engine, `bridge:${bridge.id}`)
  engine.hub.deliver(engine.ev.bridgeDestroyed(bridgeSnapshot(bridge)), engine.bridgeSubscribers(bridge))
  engine.bridges.delete(id)
}
