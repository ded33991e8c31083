/**
 * An array-backed FIFO with O(1) amortised shift (Array.prototype.shift is O(n) on large arrays):
 * every actor's mailbox, and the buffers of the bus drivers.
 */
export class Fifo<A> {
  private items: Array<A | undefined> = []
  private head = 0

  get length(): number {
    return this.items.length - this.head
  }

  push(item: A): void {
    this.items.push(item)
  }

  peek(): A | undefined {
    return this.items[this.head]
  }

  /** The item `index` places after the oldest. */
  at(index: number): A | undefined {
    return index < 0 ? undefined : this.items[this.head + index]
  }

  shift(): A | undefined {
    if (this.head >= this.items.length) return undefined
    const item = this.items[this.head]
    this.items[this.head] = undefined
    this.head++
    if (this.head === this.items.length) {
      // Empty: start over, so that a mailbox that drains often never grows.
      this.items.length = 0
      this.head = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      // Compact once the consumed prefix dominates, so memory follows the live length.
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }

  /** Puts `items` (older messages, e.g. unconfirmed ones) in front of everything queued, keeping their order. */
  prependAll(items: ReadonlyArray<A>): void {
    if (items.length === 0) return
    this.items = [...items, ...this.items.slice(this.head)]
    this.head = 0
  }

  /** Removes the items that match, keeping the order of the others; returns how many it removed. */
  removeWhere(matches: (item: A) => boolean): number {
    const kept: Array<A | undefined> = []
    for (let i = this.head; i < this.items.length; i++) {
      const item = this.items[i] as A
      if (!matches(item)) kept.push(item)
    }
    const removed = this.length - kept.length
    this.items = kept
    this.head = 0
    return removed
  }

  /** Removes and returns everything, oldest first. */
  takeAll(): Array<A> {
    const all = this.items.slice(this.head) as Array<A>
    this.items = []
    this.head = 0
    return all
  }
}
