// Calls a running web bridge with the connect-web grpc-web transport (binary format) and
// with hand-made grpc-web-text requests whose messages @bufbuild/protobuf encodes.
// BACKBEAT_BRIDGE_URL names the bridge, for example http://127.0.0.1:50058.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { Tier } from "../../generated/web/backbeat/common/v1/common_pb";
import {
  EdgeService,
  StreamAudioRequestSchema,
  StreamAudioResponseSchema,
} from "../../generated/web/backbeat/edge/v1/edge_service_pb";
import {
  GatewayService,
  LoginRequestSchema,
  LoginResponseSchema,
  SearchRequestSchema,
  SearchResponseSchema,
  type PlayResponse,
} from "../../generated/web/backbeat/gateway/v1/gateway_service_pb";

const baseUrl = process.env.BACKBEAT_BRIDGE_URL ?? "";
const EMAIL = "free-us@backbeat.test";
const PASSWORD = "listen-free-us";

const transport = createGrpcWebTransport({ baseUrl });
const gateway = createClient(GatewayService, transport);
const edge = createClient(EdgeService, transport);
let token = "";

function auth(): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

before(async () => {
  assert.ok(baseUrl.startsWith("http://127.0.0.1:"), `BACKBEAT_BRIDGE_URL must be a loopback URL, got ${baseUrl}`);
  const response = await gateway.login({ email: EMAIL, password: PASSWORD }, { timeoutMs: 10_000 });
  token = response.accessToken;
});

async function licensedPlay(query: string): Promise<PlayResponse> {
  const found = await gateway.search({ query, limit: 20 }, { headers: auth(), timeoutMs: 5_000 });
  for (const track of found.tracks) {
    try {
      return await gateway.play({ trackId: track.trackId }, { headers: auth(), timeoutMs: 5_000 });
    } catch (error) {
      if (!(error instanceof ConnectError && error.code === Code.PermissionDenied)) {
        throw error;
      }
    }
  }
  throw new Error(`no track for "${query}" is licensed in the listener's market`);
}

test("unary: Login returns a token and the listener", async () => {
  const response = await gateway.login({ email: EMAIL, password: PASSWORD }, { timeoutMs: 10_000 });
  assert.ok(response.accessToken.length > 20);
  assert.equal(response.user?.market, "US");
  assert.equal(response.user?.tier, Tier.FREE);
  assert.ok(response.expiresAt !== undefined);
});

test("unary: Search finds catalog tracks", async () => {
  const response = await gateway.search({ query: "love", limit: 5 }, { headers: auth(), timeoutMs: 5_000 });
  assert.ok(response.tracks.length > 0);
  assert.ok(response.tracks.length <= 5);
  for (const track of response.tracks) {
    assert.match(track.trackId, /^[0-9A-Za-z]{22}$/);
    assert.ok(track.name.length > 0);
  }
});

test("server streaming: StreamAudio delivers every byte of the rendition in order", async () => {
  const play = await licensedPlay("love");
  const size = Number(play.rendition?.sizeBytes ?? 0);
  assert.equal(play.rendition?.bitrateKbps, 128);
  let received = 0;
  let chunks = 0;
  for await (const chunk of edge.streamAudio({ streamGrant: play.streamGrant, offset: 0n })) {
    assert.equal(Number(chunk.offset), received);
    assert.equal(Number(chunk.totalSize), size);
    assert.equal(chunk.contentType, "audio/mpeg");
    received += chunk.data.byteLength;
    chunks += 1;
  }
  assert.equal(received, size);
  assert.ok(chunks > 1, `expected several chunks, got ${chunks}`);
});

test("error before any message: Play with a bad token is Unauthenticated with a message", async () => {
  await assert.rejects(
    gateway.play({ trackId: "0".repeat(22) }, { headers: { authorization: "Bearer not-a-token" }, timeoutMs: 5_000 }),
    (error: unknown) => {
      assert.ok(error instanceof ConnectError, String(error));
      assert.equal(error.code, Code.Unauthenticated);
      assert.ok(error.rawMessage.length > 0);
      return true;
    },
  );
});

test("error before any message: Login with a wrong password is Unauthenticated", async () => {
  await assert.rejects(gateway.login({ email: EMAIL, password: "wrong" }, { timeoutMs: 10_000 }), (error: unknown) => {
    assert.ok(error instanceof ConnectError);
    assert.equal(error.code, Code.Unauthenticated);
    return true;
  });
});

function frame(flags: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + payload.byteLength);
  const view = new DataView(out.buffer);
  view.setUint8(0, flags);
  view.setUint32(1, payload.byteLength);
  out.set(payload, 5);
  return out;
}

interface Frame {
  flags: number;
  payload: Uint8Array;
}

function frames(body: Uint8Array): Frame[] {
  const found: Frame[] = [];
  let at = 0;
  while (at < body.byteLength) {
    assert.ok(at + 5 <= body.byteLength, "body ends inside a frame header");
    const length = new DataView(body.buffer, body.byteOffset + at).getUint32(1);
    assert.ok(at + 5 + length <= body.byteLength, "body ends inside a frame");
    found.push({ flags: body[at], payload: body.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  return found;
}

// grpc-web-text: every write is its own padded base64 run, so decode 4 characters at a time.
function decodeText(text: string): Uint8Array {
  const compact = text.replace(/\s+/g, "");
  assert.equal(compact.length % 4, 0, "grpc-web-text body is not whole base64 groups");
  const parts: Buffer[] = [];
  for (let at = 0; at < compact.length; at += 4) {
    parts.push(Buffer.from(compact.slice(at, at + 4), "base64"));
  }
  return new Uint8Array(Buffer.concat(parts));
}

function trailers(payload: Uint8Array): Map<string, string> {
  const found = new Map<string, string>();
  for (const line of new TextDecoder().decode(payload).split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) {
      found.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
  }
  return found;
}

async function textCall<I extends DescMessage>(
  path: string,
  schema: I,
  message: MessageShape<I>,
  headers: Record<string, string> = {},
): Promise<{ response: Response; frames: Frame[] }> {
  const body = Buffer.from(frame(0, toBinary(schema, message))).toString("base64");
  const response = await fetch(new URL(path, baseUrl), {
    method: "POST",
    headers: { "content-type": "application/grpc-web-text", "x-grpc-web": "1", ...headers },
    body,
  });
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^application\/grpc-web-text/);
  return { response, frames: frames(decodeText(await response.text())) };
}

test("text mode: Login and Search as application/grpc-web-text", async () => {
  const login = await textCall(
    "/backbeat.gateway.v1.GatewayService/Login",
    LoginRequestSchema,
    create(LoginRequestSchema, { email: EMAIL, password: PASSWORD }),
  );
  assert.equal(login.frames.length, 2);
  assert.equal(login.frames[0].flags, 0);
  const session = fromBinary(LoginResponseSchema, login.frames[0].payload);
  assert.equal(session.user?.market, "US");
  assert.equal(login.frames[1].flags, 0x80);
  assert.equal(trailers(login.frames[1].payload).get("grpc-status"), "0");

  const search = await textCall(
    "/backbeat.gateway.v1.GatewayService/Search",
    SearchRequestSchema,
    create(SearchRequestSchema, { query: "love", limit: 3 }),
    { authorization: `Bearer ${session.accessToken}` },
  );
  const found = fromBinary(SearchResponseSchema, search.frames[0].payload);
  assert.ok(found.tracks.length > 0);
  assert.ok(found.tracks.length <= 3);
  assert.equal(trailers(search.frames[1].payload).get("grpc-status"), "0");
});

test("text mode: an error before any message is trailers-only", async () => {
  const { response, frames: received } = await textCall(
    "/backbeat.gateway.v1.GatewayService/Login",
    LoginRequestSchema,
    create(LoginRequestSchema, { email: EMAIL, password: "wrong" }),
  );
  assert.equal(response.headers.get("grpc-status"), String(Code.Unauthenticated));
  assert.equal(received.length, 1);
  assert.equal(received[0].flags, 0x80);
  const trailer = trailers(received[0].payload);
  assert.equal(trailer.get("grpc-status"), String(Code.Unauthenticated));
  assert.ok((trailer.get("grpc-message") ?? "").length > 0);
});

test("text mode: StreamAudio arrives as one base64 run per frame", async () => {
  const play = await licensedPlay("night");
  const { frames: received } = await textCall(
    "/backbeat.edge.v1.EdgeService/StreamAudio",
    StreamAudioRequestSchema,
    create(StreamAudioRequestSchema, { streamGrant: play.streamGrant, offset: 0n }),
  );
  const last = received.at(-1);
  assert.ok(last !== undefined);
  assert.equal(last.flags, 0x80);
  assert.equal(trailers(last.payload).get("grpc-status"), "0");
  const bytes = received
    .slice(0, -1)
    .reduce((total, item) => total + fromBinary(StreamAudioResponseSchema, item.payload).data.byteLength, 0);
  assert.equal(bytes, Number(play.rendition?.sizeBytes ?? -1));
});
