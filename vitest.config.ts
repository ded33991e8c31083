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
    // Transport tests share real brokers; files run in parallel, tests inside a file in order.
    fileParallelism: true,
    reporters: ["default"]
  }
})
