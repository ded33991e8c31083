/**
 * Figures of generated runs: what a property test reached, per run, so that its distribution can be
 * printed and checked (a property whose runs never reach a case proves nothing about it).
 */

export type Figures = Readonly<Record<string, number>>

/** Per figure: min, median and max over the runs, the total, and in how many runs it was above 0. */
export const summarize = (runs: ReadonlyArray<Figures>): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const key of Object.keys(runs[0] ?? {})) {
    const values = runs.map((r) => r[key]!).sort((x, y) => x - y)
    const sum = values.reduce((x, y) => x + y, 0)
    const inRuns = values.filter((v) => v > 0).length
    out[key] = `min ${values[0]} median ${values[values.length >> 1]} max ${values[values.length - 1]} ` +
      `(total ${sum}, >0 in ${inRuns}/${runs.length} runs)`
  }
  return out
}

/** In how many runs `key` was above 0. */
export const runsWith = (runs: ReadonlyArray<Figures>, key: string): number =>
  runs.filter((r) => (r[key] ?? 0) > 0).length
