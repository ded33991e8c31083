// Types of scripts/generate-ari.mjs, for the staleness test.

/** The repository root (the directory above scripts/). */
export declare const repoRoot: string
/** src/client/generated under the repository root. */
export declare const outputDir: string
/** The api-docs directory: `$ARI_API_DOCS`, else `vendor/ari-api-docs` in the repo. */
export declare const apiDocsDir: () => string
/** Generates every file from the api-docs in `dir`: file name (in src/client/generated) → content. */
export declare const generate: (dir: string) => Record<string, string>
