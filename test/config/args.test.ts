import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { parseArgs } from "../../src/config/index.js"

describe("parseArgs", () => {
  it("defaults to proxy mode and ./config.json", () => {
    expect(parseArgs([])).toEqual(Either.right({ configPath: "./config.json", mode: "proxy" }))
  })

  it("accepts the seed's -config in all of Go's spellings", () => {
    for (const argv of [["-config", "a.json"], ["--config", "a.json"], ["-config=a.json"], ["--config=a.json"]]) {
      expect(parseArgs(argv)).toEqual(Either.right({ configPath: "a.json", mode: "proxy" }))
    }
  })

  it("takes the mode as the first positional word, before or after the flag", () => {
    expect(parseArgs(["demo", "-config", "d.json"])).toEqual(Either.right({ configPath: "d.json", mode: "demo" }))
    expect(parseArgs(["--config=p.json", "proxy"])).toEqual(Either.right({ configPath: "p.json", mode: "proxy" }))
    expect(parseArgs(["-config", "x=y.json"])).toEqual(Either.right({ configPath: "x=y.json", mode: "proxy" }))
  })

  it("--help and its spellings give mode help", () => {
    for (const argv of [["--help"], ["-help"], ["-h"], ["demo", "--help"], ["help"]]) {
      expect(Either.map(parseArgs(argv), (a) => a.mode)).toEqual(Either.right("help"))
    }
  })

  it("rejects unknown flags, unknown words, extra words and a missing path", () => {
    expect(parseArgs(["--verbose"])).toEqual(Either.left("unknown flag \"--verbose\" (try -help)"))
    expect(parseArgs(["serve"])).toEqual(Either.left("unknown command \"serve\": expected proxy or demo (try -help)"))
    expect(parseArgs(["demo", "proxy"])).toEqual(Either.left("unexpected argument \"proxy\" (try -help)"))
    expect(parseArgs(["-config"])).toEqual(Either.left("flag -config needs a path"))
    expect(parseArgs(["--config="])).toEqual(Either.left("flag -config needs a path"))
  })
})
