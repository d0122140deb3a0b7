// The player's error messages and trace context, without a browser.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { describeError, newTraceContext } from "../src/api";

test("error messages name the cause for the listener", () => {
  const cases: [Code, "login" | "play", RegExp, boolean][] = [
    [Code.Unauthenticated, "login", /Wrong email or password/, false],
    [Code.Unauthenticated, "play", /session has ended/, true],
    [Code.PermissionDenied, "play", /not available in your market/, false],
    [Code.ResourceExhausted, "play", /rate limited/, false],
    [Code.Unavailable, "play", /unavailable/, false],
    [Code.DeadlineExceeded, "play", /unavailable/, false],
    [Code.NotFound, "play", /not in the catalog/, false],
    [Code.InvalidArgument, "play", /not accepted: track_id is required/, false],
  ];
  for (const [code, action, expected, signOut] of cases) {
    const problem = describeError(new ConnectError("track_id is required", code), action);
    assert.match(problem.text, expected, `${Code[code]} during ${action}`);
    assert.equal(problem.code, Code[code]);
    assert.equal(problem.signOut, signOut, `${Code[code]} during ${action}`);
  }
});

test("an unreachable bridge reads as unavailable", () => {
  const error = new ConnectError("Failed to fetch", Code.Unknown, undefined, undefined, new TypeError("Failed to fetch"));

  assert.match(describeError(error, "search").text, /web bridge cannot be reached/);
});

test("trace context is a sampled W3C traceparent", () => {
  const first = newTraceContext();
  const second = newTraceContext();

  assert.match(first.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  assert.equal(first.traceparent, `00-${first.traceId}-${first.spanId}-01`);
  assert.notEqual(first.traceId, second.traceId);
});
