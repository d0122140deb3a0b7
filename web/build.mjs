// Builds the web player into dist/ and the Node tests into test-build/.
// The generated code in ../generated/web imports @bufbuild/protobuf, which is
// resolved from this folder's node_modules.
import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const web = dirname(fileURLToPath(import.meta.url));
const dist = join(web, "dist");
const testBuild = join(web, "test-build");
const nodePaths = [join(web, "node_modules")];

await rm(dist, { recursive: true, force: true });
await rm(testBuild, { recursive: true, force: true });
await mkdir(dist, { recursive: true });

await esbuild.build({
  entryPoints: [join(web, "src", "main.ts")],
  outfile: join(dist, "app.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["chrome110", "firefox115", "safari16"],
  minify: true,
  sourcemap: true,
  nodePaths,
  logLevel: "warning",
});
await copyFile(join(web, "index.html"), join(dist, "index.html"));
await copyFile(join(web, "src", "style.css"), join(dist, "style.css"));

await esbuild.build({
  entryPoints: [join(web, "test", "bridge.test.ts"), join(web, "test", "player.test.ts")],
  outdir: testBuild,
  outExtension: { ".js": ".mjs" },
  bundle: true,
  packages: "external",
  format: "esm",
  platform: "node",
  target: ["node20"],
  nodePaths,
  logLevel: "warning",
});
console.log("built dist/ and test-build/");
