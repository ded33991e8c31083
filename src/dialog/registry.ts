/**
 * The entity index: which dialog owns each ARI entity (channel, bridge, playback, recording,
 * Local pair). Routing an event is one map lookup per entity it names, so it stays O(1) however
 * many dialogs are open.
 *
 * Invariant: an entity is owned by at most one dialog. A dialog can take over an entity only from
 * a dialog that is ending (a channel re-entering Stasis after its dialog's end); it releases only
 * entities it still owns.
 */
import type { EntityKey } from "./entities.js"

export interface Owner {
  readonly id: string
  /** True once the owner no longer takes new members (ending or ended). */
  readonly closing: boolean
}

export class Registry<D extends Owner> {
  private readonly owners = new Map<EntityKey, D>()

  ownerOf(key: EntityKey): D | undefined {
    return this.owners.get(key)
  }

  /** Binds `key` to `dialog` unless a live dialog owns it; says whether `dialog` owns it now. */
  claim(key: EntityKey, dialog: D): boolean {
    const owner = this.owners.get(key)
    if (owner === dialog) return true
    if (owner !== undefined && !owner.closing) return false
    this.owners.set(key, dialog)
    return true
  }

  release(key: EntityKey, dialog: D): void {
    if (this.owners.get(key) === dialog) this.owners.delete(key)
  }

  get size(): number {
    return this.owners.size
  }
}
