// Drives the web player in headless Chromium (Debian's /usr/bin/chromium through playwright-core):
// a wrong password, sign-in, search, play with MediaSource, recommendations, playback events,
// a track withheld in the listener's market, and CORS as a browser enforces it.
//
// Environment:
//   BACKBEAT_BRIDGE_URL         the bridge serving the player, http://127.0.0.1:PORT
//   BACKBEAT_PLAY_QUERY         search text whose results include BACKBEAT_LICENSED_TRACK_ID
//   BACKBEAT_LICENSED_TRACK_ID  a track licensed in the listener's market
//   BACKBEAT_WITHHELD_TRACK_ID  a track withheld in the listener's market
//   BACKBEAT_CORS_BRIDGE_URL    optional: a second bridge that allows the player's origin
//   BACKBEAT_SCREENSHOT_DIR     optional: folder for screenshots
//   BACKBEAT_CHROMIUM           optional: browser binary, /usr/bin/chromium by default
// Prints one JSON line starting with "RESULT " and exits 0 when every check passed.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const EMAIL = "free-us@backbeat.test";
const PASSWORD = "listen-free-us";
const WAIT_MS = 20_000;

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
}

const bridgeUrl = required("BACKBEAT_BRIDGE_URL");
const query = required("BACKBEAT_PLAY_QUERY");
const licensed = required("BACKBEAT_LICENSED_TRACK_ID");
const withheld = required("BACKBEAT_WITHHELD_TRACK_ID");
const corsBridgeUrl = process.env.BACKBEAT_CORS_BRIDGE_URL ?? "";
const screenshots = process.env.BACKBEAT_SCREENSHOT_DIR ?? "";
const executablePath = process.env.BACKBEAT_CHROMIUM ?? "/usr/bin/chromium";

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]"]);

function isLoopback(url) {
  const parsed = new URL(url);
  if (parsed.protocol === "data:" || parsed.protocol === "blob:") {
    return true;
  }
  return LOOPBACK_HOSTS.has(parsed.hostname) || parsed.hostname.startsWith("127.");
}

function step(text) {
  console.log(`- ${text}`);
}

const userDataDir = await mkdtemp(join(tmpdir(), "backbeat-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
  ],
});

const blocked = [];
const pageErrors = [];
await context.route("**/*", (route) => {
  const url = route.request().url();
  if (isLoopback(url)) {
    return route.continue();
  }
  blocked.push(url);
  return route.abort("blockedbyclient");
});

const result = { ok: false };
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(WAIT_MS);
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error") {
      console.log(`  console error: ${message.text()}`);
    }
  });

  step(`open ${bridgeUrl}/`);
  await page.goto(`${bridgeUrl}/`);
  await page.waitForSelector("body[data-ready='true']");

  step("a wrong password shows a clear message");
  await page.fill("#email", EMAIL);
  await page.fill("#password", "not-the-password");
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#message")?.textContent?.includes("Wrong email or password"));
  assert.equal(await page.getAttribute("#message", "data-code"), "Unauthenticated");

  step("sign in");
  await page.fill("#password", PASSWORD);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#library:not([hidden])");
  assert.match((await page.textContent("#user")) ?? "", /free tier, market US/);

  step(`search "${query}"`);
  await page.fill("#query", query);
  await page.click("#search-form button[type=submit]");
  await page.waitForSelector(`#results li[data-track-id='${licensed}']`);
  result.results = await page.locator("#results li[data-track-id]").count();

  step(`play ${licensed}`);
  await page.click(`#results li[data-track-id='${licensed}'] button.play`);
  await page.waitForSelector("#now-playing:not([hidden])");
  await page.waitForFunction(() => {
    const audio = document.querySelector("#audio");
    return !audio.paused && audio.currentTime > 0.2;
  });
  const before = await page.evaluate(() => document.querySelector("#audio").currentTime);
  await page.waitForTimeout(2_000);
  const after = await page.evaluate(() => document.querySelector("#audio").currentTime);
  assert.ok(after > before + 1.0, `currentTime went from ${before} to ${after} in 2 s`);
  result.currentTime = { before, after };
  // The player asks the element to play once the first chunk is buffered, before the rest arrive.
  const requestedAt = Number(await page.getAttribute("#audio", "data-play-requested-at-bytes"));
  const total = Number(await page.getAttribute("#received", "data-total"));
  assert.ok(requestedAt > 0, `play requested at ${requestedAt} bytes`);
  assert.ok(requestedAt < total, `play requested at ${requestedAt} of ${total} bytes`);
  result.playRequestedAt = { bytes: requestedAt, total };

  const kbps = await page.getAttribute("#rendition", "data-kbps");
  assert.equal(kbps, "128", "the free tier caps the rendition at 128 kbps");
  result.rendition = await page.textContent("#rendition");
  result.credit = (await page.textContent("#credit")) ?? "";
  assert.match(result.credit, /^Audio: .+/);

  result.traceId = (await page.textContent("#trace-id")) ?? "";
  result.traceparent = (await page.getAttribute("#trace-id", "data-traceparent")) ?? "";
  assert.match(result.traceId, /^[0-9a-f]{32}$/);
  assert.equal(result.traceparent.split("-")[1], result.traceId, "the play joined the page's trace");
  const link = await page.getAttribute("#trace-link", "href");
  assert.equal(link, `http://localhost:16686/trace/${result.traceId}`);

  result.recommendations = await page.locator("#recommendations li[data-track-id]").count();
  assert.ok(result.recommendations > 0, "recommendations are listed");

  step("START is reported; LIKE is reported");
  await page.waitForSelector("#events li[data-event='START']");
  await page.click("#like");
  await page.waitForSelector("#events li[data-event='LIKE']");

  step("the whole file arrives");
  await page.waitForFunction(() => {
    const received = document.querySelector("#received");
    return received.dataset.total && received.dataset.bytes === received.dataset.total;
  });
  result.bytes = Number(await page.getAttribute("#received", "data-bytes"));

  if (screenshots) {
    await page.screenshot({ path: join(screenshots, "playing.png"), fullPage: true });
  }

  step("PROGRESS is reported after 10 s of audio");
  await page.evaluate(() => {
    document.querySelector("#audio").currentTime = 10.5;
  });
  await page.waitForSelector("#events li[data-event='PROGRESS']");

  step("SKIP is reported and the first recommendation plays");
  const firstTitle = await page.textContent("#track-title");
  const next = await page.getAttribute("#recommendations li[data-track-id]", "data-track-id");
  await page.click("#skip");
  await page.waitForSelector("#events li[data-event='SKIP']");
  await page.waitForFunction((title) => document.querySelector("#track-title")?.textContent !== title, firstTitle);
  await page.waitForFunction(() => document.querySelectorAll("#events li[data-event='START']").length === 2);
  const nextTraceId = (await page.textContent("#trace-id")) ?? "";
  assert.notEqual(nextTraceId, result.traceId, "each play has its own trace");
  result.skippedTo = next;

  step("COMPLETE is reported when the track ends");
  await page.waitForFunction(() => {
    const received = document.querySelector("#received");
    return received.dataset.total && received.dataset.bytes === received.dataset.total;
  });
  await page.evaluate(() => {
    const audio = document.querySelector("#audio");
    audio.currentTime = audio.duration - 0.5;
  });
  await page.waitForSelector("#events li[data-event='COMPLETE']");

  step(`play ${withheld}, withheld in the listener's market`);
  await page.fill("#query", withheld);
  await page.click("#search-form button[type=submit]");
  await page.waitForSelector(`#results li[data-track-id='${withheld}']`);
  await page.click(`#results li[data-track-id='${withheld}'] button.play`);
  await page.waitForFunction(() =>
    document.querySelector("#message")?.textContent?.includes("not available in your market"),
  );
  assert.equal(await page.getAttribute("#message", "data-code"), "PermissionDenied");
  if (screenshots) {
    await page.screenshot({ path: join(screenshots, "withheld.png"), fullPage: true });
  }

  if (corsBridgeUrl) {
    // An empty LoginRequest is a valid protobuf message, and the gateway returns INVALID_ARGUMENT for it.
    const crossOriginCall = async (url) => {
      try {
        const response = await fetch(`${url}/backbeat.gateway.v1.GatewayService/Login`, {
          method: "POST",
          headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", "grpc-timeout": "5S" },
          body: new Uint8Array([0, 0, 0, 0, 0]),
        });
        return {
          status: response.status,
          grpcStatus: response.headers.get("grpc-status"),
          grpcMessage: response.headers.get("grpc-message"),
        };
      } catch (error) {
        return { error: String(error) };
      }
    };
    step(`cross-origin call from ${bridgeUrl} to ${corsBridgeUrl}, an allowed origin`);
    const allowed = await page.evaluate(crossOriginCall, corsBridgeUrl);
    assert.equal(allowed.status, 200, JSON.stringify(allowed));
    assert.equal(allowed.grpcStatus, "3", JSON.stringify(allowed));
    assert.ok(allowed.grpcMessage, JSON.stringify(allowed));

    const otherOrigin = bridgeUrl.replace("127.0.0.1", "localhost");
    step(`cross-origin call from ${otherOrigin}, an origin the second bridge does not allow`);
    const other = await context.newPage();
    await other.goto(`${otherOrigin}/healthz`);
    const refused = await other.evaluate(crossOriginCall, corsBridgeUrl);
    assert.ok(refused.error, `the browser let a disallowed origin read the response: ${JSON.stringify(refused)}`);
    result.cors = { allowed, refused };
  }

  assert.deepEqual(pageErrors, [], "the page threw");
  assert.deepEqual(blocked, [], "the page asked for addresses outside loopback");
  result.ok = true;
} finally {
  result.blocked = blocked;
  result.pageErrors = pageErrors;
  console.log(`RESULT ${JSON.stringify(result)}`);
  await context.close();
  await rm(userDataDir, { recursive: true, force: true });
}
