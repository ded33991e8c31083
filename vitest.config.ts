import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

export default defineConfig({
  resolve: {
    // The examples import "ari-proxy/client" as an application does: its source here, not the build in dist/
    // that the package's exports name (tsconfig.json maps it the same way).
    alias: [
      { find: /^ari-proxy\/client$/, replacement: fileURLToPath(new URL("src/client/index.ts", import.meta.url)) }
    ]
  },
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: ["test/setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Transport tests share real brokers; files run in parallel, tests inside a file in order. Most
    // of a file's time is waiting (brokers, child processes, timers): two workers even on two cores
    // (vitest's default there is one, which ran the suite file after file).
    fileParallelism: true,
    maxWorkers: 2,
    reporters: ["default"]
  }
})
