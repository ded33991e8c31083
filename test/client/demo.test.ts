/**
 * `node dist/main.js demo`, as the README tells a newcomer to run it: simulator, proxy and the IVR
 * example in one process, no Asterisk, no broker; it prints the traffic and a summary and exits 0.
 */
import { execFile, execSync } from "node:child_process"
import { existsSync } from "node:fs"
import { beforeAll, describe, expect, it } from "vitest"

const main = "dist/main.js"

describe("demo", () => {
  beforeAll(() => {
    if (!existsSync(main)) execSync("npm run build", { stdio: "ignore" })
  }, 120_000)

  it("runs the IVR on a few simulated calls, prints every message and a summary, and exits 0", async () => {
    const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = execFile("node", [main, "demo"], { timeout: 30_000 }, (error, out) =>
        resolve({ code: error === null ? 0 : (error as { code?: number }).code ?? null, stdout: out }))
      child.stdin?.end()
    })
    expect(code).toBe(0)
    expect(stdout).toMatch(/^Summary: 3 calls \(1 bridged to an agent, 2 goodbyes\), 3 dialogs ended;/m)
    const kinds = ["AppStart", "command      ATTACH", "event        StasisStart", "response     204", "DialogEnded"]
    for (const kind of kinds) expect(stdout).toContain(kind)
    expect(stdout).toContain("addChannel") // the branch that bridges to an agent
    expect(stdout).toContain("sound%3Ademo-congrats") // and the goodbye
  }, 40_000)
})
