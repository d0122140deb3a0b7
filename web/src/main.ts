// The Backbeat web player: sign in, search the catalog, play through the edge, report playback.
import { Code, ConnectError } from "@connectrpc/connect";
import {
  PlaybackEventType,
  Tier,
  type Track,
  type UserContext,
} from "../../generated/web/backbeat/common/v1/common_pb";
import type { PlayResponse } from "../../generated/web/backbeat/gateway/v1/gateway_service_pb";
import { createApi, describeError, newTraceContext, type Action, type TraceContext } from "./api";
import { resetAudio, streamIntoAudio } from "./audio";

const DEFAULT_JAEGER_UI = "http://localhost:16686";
const PROGRESS_EVERY_MS = 10_000;
const TRACK_ID = /^[0-9A-Za-z]{22}$/;
const TIER_CAPS: Record<number, string> = {
  [Tier.FREE]: "free tier: up to 128 kbps",
  [Tier.PREMIUM]: "premium tier: up to 320 kbps",
};
const EVENT_NAMES: Record<number, string> = {
  [PlaybackEventType.START]: "START",
  [PlaybackEventType.PROGRESS]: "PROGRESS",
  [PlaybackEventType.SKIP]: "SKIP",
  [PlaybackEventType.COMPLETE]: "COMPLETE",
  [PlaybackEventType.LIKE]: "LIKE",
};

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (found === null) {
    throw new Error(`the page has no #${id}`);
  }
  return found as T;
}

const ui = {
  user: element<HTMLParagraphElement>("user"),
  signOut: element<HTMLButtonElement>("sign-out"),
  message: element<HTMLParagraphElement>("message"),
  login: element<HTMLElement>("login"),
  loginForm: element<HTMLFormElement>("login-form"),
  email: element<HTMLInputElement>("email"),
  password: element<HTMLInputElement>("password"),
  library: element<HTMLElement>("library"),
  searchForm: element<HTMLFormElement>("search-form"),
  query: element<HTMLInputElement>("query"),
  results: element<HTMLOListElement>("results"),
  nowPlaying: element<HTMLElement>("now-playing"),
  trackTitle: element<HTMLParagraphElement>("track-title"),
  credit: element<HTMLParagraphElement>("credit"),
  rendition: element<HTMLElement>("rendition"),
  tierCap: element<HTMLSpanElement>("tier-cap"),
  received: element<HTMLSpanElement>("received"),
  audio: element<HTMLAudioElement>("audio"),
  like: element<HTMLButtonElement>("like"),
  skip: element<HTMLButtonElement>("skip"),
  traceLink: element<HTMLAnchorElement>("trace-link"),
  traceId: element<HTMLElement>("trace-id"),
  events: element<HTMLUListElement>("events"),
  fallback: element<HTMLSpanElement>("fallback"),
  recommendations: element<HTMLOListElement>("recommendations"),
};

interface Session {
  token: string;
  user: UserContext;
}

interface CurrentPlay {
  play: PlayResponse;
  trace: TraceContext;
  abort: AbortController;
  started: boolean;
  nextProgressMs: number;
}

const api = createApi(window.location.origin);
let jaegerUi = DEFAULT_JAEGER_UI;
let session: Session | undefined;
let current: CurrentPlay | undefined;

function showMessage(text: string, kind: "info" | "error" = "info", code = ""): void {
  ui.message.textContent = text;
  ui.message.className = kind;
  ui.message.dataset.code = code;
  ui.message.hidden = false;
}

function clearMessage(): void {
  ui.message.hidden = true;
  ui.message.textContent = "";
  ui.message.dataset.code = "";
}

function showProblem(error: unknown, action: Action): void {
  if (error instanceof ConnectError && error.code === Code.Canceled) {
    return;
  }
  const problem = describeError(error, action);
  showMessage(problem.text, "error", problem.code);
  if (problem.signOut) {
    signOut();
  }
}

function headers(trace?: TraceContext): Record<string, string> {
  const values: Record<string, string> = {};
  if (session !== undefined) {
    values.authorization = `Bearer ${session.token}`;
  }
  if (trace !== undefined) {
    values.traceparent = trace.traceparent;
  }
  return values;
}

function describeTrack(track: Track): string {
  const year = track.releaseDate.slice(0, 4);
  return `${track.name} — ${track.artist} · ${track.albumName}${year ? ` (${year})` : ""}`;
}

function renderTracks(
  list: HTMLOListElement,
  tracks: Track[],
  empty: string,
  unavailable: ReadonlySet<string> = new Set(),
): void {
  list.replaceChildren();
  if (tracks.length === 0) {
    const item = document.createElement("li");
    item.className = "hint";
    item.textContent = empty;
    list.append(item);
    return;
  }
  for (const track of tracks) {
    const item = document.createElement("li");
    item.dataset.trackId = track.trackId;
    const label = document.createElement("span");
    label.textContent = describeTrack(track);
    if (unavailable.has(track.trackId)) {
      item.classList.add("unavailable");
      label.textContent += " (not available in your market)";
    }
    const play = document.createElement("button");
    play.type = "button";
    play.className = "play";
    play.textContent = "Play";
    play.addEventListener("click", () => void playTrack(track.trackId));
    item.append(label, play);
    list.append(item);
  }
}

function signedIn(next: Session): void {
  session = next;
  const tier = next.user.tier === Tier.PREMIUM ? "premium" : "free";
  ui.user.textContent = `Signed in as ${next.user.displayName} (${tier} tier, market ${next.user.market})`;
  ui.user.hidden = false;
  ui.signOut.hidden = false;
  ui.login.hidden = true;
  ui.library.hidden = false;
  ui.password.value = "";
  ui.query.focus();
}

function signOut(): void {
  stopPlayback();
  session = undefined;
  ui.user.hidden = true;
  ui.signOut.hidden = true;
  ui.login.hidden = false;
  ui.library.hidden = true;
  ui.nowPlaying.hidden = true;
  ui.results.replaceChildren();
}

async function login(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  clearMessage();
  try {
    const response = await api.gateway.login(
      { email: ui.email.value.trim(), password: ui.password.value },
      { timeoutMs: 10_000 },
    );
    if (response.user === undefined) {
      throw new Error("the login response has no user");
    }
    signedIn({ token: response.accessToken, user: response.user });
  } catch (error) {
    showProblem(error, "login");
  }
}

async function search(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  clearMessage();
  const query = ui.query.value.trim();
  if (!query) {
    return;
  }
  try {
    if (TRACK_ID.test(query)) {
      const response = await api.gateway.getTrack({ trackId: query }, { headers: headers(), timeoutMs: 5_000 });
      renderTracks(ui.results, response.track ? [response.track] : [], "No track has this id.");
    } else {
      const response = await api.gateway.search({ query, limit: 20 }, { headers: headers(), timeoutMs: 5_000 });
      renderTracks(
        ui.results,
        response.tracks,
        `No tracks match "${query}".`,
        new Set(response.unavailableTrackIds),
      );
    }
  } catch (error) {
    showProblem(error, "search");
  }
}

function playedMs(): bigint {
  return BigInt(Math.floor(ui.audio.currentTime * 1000));
}

const EVENT_LOG_LENGTH = 20;

function logEvent(text: string, name: string): void {
  const item = document.createElement("li");
  item.dataset.event = name;
  item.textContent = text;
  ui.events.append(item);
  while (ui.events.children.length > EVENT_LOG_LENGTH) {
    ui.events.firstElementChild?.remove();
  }
}

async function report(play: CurrentPlay, eventType: PlaybackEventType): Promise<void> {
  const name = EVENT_NAMES[eventType] ?? String(eventType);
  const played = playedMs();
  try {
    const response = await api.gateway.reportPlayback(
      {
        playbackId: play.play.playbackId,
        trackId: play.play.track?.trackId ?? "",
        eventType,
        playedMs: played,
      },
      { headers: headers(play.trace), timeoutMs: 5_000 },
    );
    const counted = response.countedAsStream ? ", counted as a stream" : "";
    const seconds = (Number(played) / 1000).toFixed(1);
    logEvent(`${name} of "${play.play.track?.name ?? ""}" at ${seconds} s reported${counted}`, name);
  } catch (error) {
    logEvent(`${name} of "${play.play.track?.name ?? ""}" not reported`, `${name}-failed`);
    showProblem(error, "report");
  }
}

function stopPlayback(): void {
  if (current !== undefined) {
    current.abort.abort();
    current = undefined;
  }
  resetAudio(ui.audio);
}

function renderPlay(play: PlayResponse, trace: TraceContext): void {
  const track = play.track;
  ui.trackTitle.textContent = track ? `${track.name} — ${track.artist}` : play.playbackId;
  ui.credit.textContent = track?.recordingCredit ? `Audio: ${track.recordingCredit}` : "";
  const rendition = play.rendition;
  ui.rendition.textContent = rendition ? `${rendition.bitrateKbps} kbps ${rendition.codec}` : "unknown";
  ui.rendition.dataset.kbps = String(rendition?.bitrateKbps ?? 0);
  ui.tierCap.textContent = session ? `(${TIER_CAPS[session.user.tier] ?? "tier cap unknown"})` : "";
  ui.received.textContent = "0";
  ui.traceId.textContent = play.traceId;
  ui.traceId.dataset.traceparent = trace.traceparent;
  ui.traceLink.href = `${jaegerUi}/trace/${play.traceId}`;
  ui.like.disabled = false;
  ui.like.textContent = "Like";
  ui.fallback.hidden = !play.recommendationsFallback;
  renderTracks(ui.recommendations, play.recommendations, "No recommendations right now.");
  ui.nowPlaying.hidden = false;
}

async function playTrack(trackId: string): Promise<void> {
  stopPlayback();
  clearMessage();
  const trace = newTraceContext();
  let play: PlayResponse;
  try {
    play = await api.gateway.play({ trackId }, { headers: headers(trace), timeoutMs: 5_000 });
  } catch (error) {
    ui.nowPlaying.hidden = true;
    showProblem(error, "play");
    return;
  }
  const playing: CurrentPlay = { play, trace, abort: new AbortController(), started: false, nextProgressMs: 0 };
  current = playing;
  renderPlay(play, trace);

  const contentType = play.rendition?.contentType || "audio/mpeg";
  const chunks = api.edge.streamAudio(
    { streamGrant: play.streamGrant, offset: 0n },
    { headers: headers(trace), signal: playing.abort.signal },
  );
  try {
    await streamIntoAudio(
      ui.audio,
      chunks,
      contentType,
      {
        onProgress: (progress) => {
          ui.received.textContent = `${progress.received} of ${progress.total} bytes in ${progress.chunks} chunks`;
          ui.received.dataset.bytes = String(progress.received);
          ui.received.dataset.total = String(progress.total);
        },
        onFirstAudio: () => {
          ui.audio.dataset.playRequestedAtBytes = ui.received.dataset.bytes ?? "0";
          ui.audio.play().catch(() => showMessage("Press play to start the audio."));
        },
      },
      playing.abort.signal,
    );
  } catch (error) {
    if (!playing.abort.signal.aborted) {
      showProblem(error, "stream");
    }
  }
}

ui.audio.addEventListener("playing", () => {
  if (current !== undefined && !current.started) {
    current.started = true;
    current.nextProgressMs = PROGRESS_EVERY_MS;
    void report(current, PlaybackEventType.START);
  }
});

ui.audio.addEventListener("timeupdate", () => {
  if (current === undefined || !current.started) {
    return;
  }
  if (ui.audio.currentTime * 1000 >= current.nextProgressMs) {
    current.nextProgressMs += PROGRESS_EVERY_MS;
    void report(current, PlaybackEventType.PROGRESS);
  }
});

ui.audio.addEventListener("ended", () => {
  if (current !== undefined) {
    void report(current, PlaybackEventType.COMPLETE);
  }
});

ui.like.addEventListener("click", () => {
  if (current !== undefined) {
    ui.like.disabled = true;
    ui.like.textContent = "Liked";
    void report(current, PlaybackEventType.LIKE);
  }
});

ui.skip.addEventListener("click", async () => {
  if (current === undefined) {
    return;
  }
  const skipped = current;
  await report(skipped, PlaybackEventType.SKIP);
  const next = skipped.play.recommendations[0];
  if (next !== undefined && current === skipped) {
    await playTrack(next.trackId);
  } else if (current === skipped) {
    stopPlayback();
  }
});

ui.loginForm.addEventListener("submit", (event) => void login(event));
ui.searchForm.addEventListener("submit", (event) => void search(event));
ui.signOut.addEventListener("click", () => {
  clearMessage();
  signOut();
});

async function loadConfig(): Promise<void> {
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (response.ok) {
      const config = (await response.json()) as { jaegerUiUrl?: unknown };
      if (typeof config.jaegerUiUrl === "string" && /^https?:\/\//.test(config.jaegerUiUrl)) {
        jaegerUi = config.jaegerUiUrl.replace(/\/+$/, "");
      }
    }
  } catch {
    // The default Jaeger UI address stays in use.
  }
  document.body.dataset.ready = "true";
}

void loadConfig();
