// Clients of the gateway and the edge over grpc-web, W3C trace context and error messages.
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { EdgeService } from "../../generated/web/backbeat/edge/v1/edge_service_pb";
import { GatewayService } from "../../generated/web/backbeat/gateway/v1/gateway_service_pb";

export interface Api {
  gateway: Client<typeof GatewayService>;
  edge: Client<typeof EdgeService>;
}

/** Clients that call the bridge at `baseUrl` with the binary grpc-web format. */
export function createApi(baseUrl: string): Api {
  const transport = createGrpcWebTransport({ baseUrl });
  return {
    gateway: createClient(GatewayService, transport),
    edge: createClient(EdgeService, transport),
  };
}

export interface TraceContext {
  traceId: string;
  spanId: string;
  traceparent: string;
}

function randomHex(bytes: number): string {
  const values = new Uint8Array(bytes);
  do {
    crypto.getRandomValues(values);
  } while (values.every((value) => value === 0));
  return Array.from(values, (value) => value.toString(16).padStart(2, "0")).join("");
}

/** Creates a sampled W3C trace context. The player makes one per play and sends it with each call of that play. */
export function newTraceContext(): TraceContext {
  const traceId = randomHex(16);
  const spanId = randomHex(8);
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

export type Action = "login" | "search" | "play" | "stream" | "report";

export interface Problem {
  text: string;
  code: string;
  signOut: boolean;
}

/** Returns a message for the listener about a failed call, and whether the session has ended. */
export function describeError(error: unknown, action: Action): Problem {
  if (!(error instanceof ConnectError)) {
    const detail = error instanceof Error ? error.message : String(error);
    return { text: `Playback failed in the browser: ${detail}`, code: "browser", signOut: false };
  }
  const code = Code[error.code];
  const problem = (text: string, signOut = false): Problem => ({ text, code, signOut });
  switch (error.code) {
    case Code.Unauthenticated:
      return action === "login"
        ? problem("Wrong email or password.")
        : problem("Your session has ended. Sign in again.", true);
    case Code.PermissionDenied:
      return problem("This track is not available in your market.");
    case Code.ResourceExhausted:
      return problem("Too many requests: you are rate limited. Wait a moment, then try again.");
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return problem("Backbeat is unavailable right now (the service did not answer in time). Try again shortly.");
    case Code.NotFound:
      return problem("That track is not in the catalog.");
    case Code.InvalidArgument:
      return problem(`The request was not accepted: ${error.rawMessage}`);
    case Code.OutOfRange:
      return problem("The audio stream ended early.");
    case Code.Unknown:
      if (error.cause instanceof TypeError) {
        return problem("Backbeat is unavailable right now (the web bridge cannot be reached). Try again shortly.");
      }
      return problem(`Something went wrong: ${error.rawMessage}`);
    default:
      return problem(`Something went wrong (${code}): ${error.rawMessage}`);
  }
}
