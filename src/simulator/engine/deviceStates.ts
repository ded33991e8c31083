/**
 * Device states: a PJSIP endpoint is INUSE while one of its channels is up, and subscribers hear
 * each change. (The states ARI sets through `PUT /deviceStates` are the core's `deviceStates`.)
 */
import type { Engine } from "./core.js"

export const endpointInUse = (engine: Engine, endpoint: string): boolean => {
  for (const channel of engine.channels.values()) {
    if (channel.endpoint === endpoint && channel.tech === "PJSIP" && channel.state === "Up") return true
  }
  return false
}

export const emitDeviceState = (engine: Engine, device: string, state: string): void => {
  const apps = [...engine.hub.subscribeAllApps()]
  for (const registration of engine.hub.registrations.values()) {
    if (registration.deviceNames.has(device)) apps.push(registration.name)
  }
  engine.hub.deliver(engine.ev.deviceStateChanged(device, state), apps)
}
