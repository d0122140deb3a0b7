// Audio chunks from the edge into an <audio> element through MediaSource, so playback
// starts while later chunks are still arriving.
import type { StreamAudioResponse } from "../../generated/web/backbeat/edge/v1/edge_service_pb";

export interface StreamProgress {
  received: number;
  total: number;
  chunks: number;
}

export interface StreamHandlers {
  onProgress(progress: StreamProgress): void;
  /** Called once, after the first chunk is in the audio element's buffer. */
  onFirstAudio(): void;
}

function waitFor(target: EventTarget, event: string, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      signal.removeEventListener("abort", aborted);
      resolve();
    };
    const aborted = () => {
      target.removeEventListener(event, done);
      reject(signal.reason);
    };
    target.addEventListener(event, done, { once: true });
    signal.addEventListener("abort", aborted, { once: true });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function append(
  audio: HTMLAudioElement,
  buffer: SourceBuffer,
  data: Uint8Array<ArrayBuffer>,
  signal: AbortSignal,
): Promise<void> {
  for (;;) {
    try {
      buffer.appendBuffer(data);
      await waitFor(buffer, "updateend", signal);
      return;
    } catch (error) {
      if (!(error instanceof DOMException) || error.name !== "QuotaExceededError") {
        throw error;
      }
      // The buffer is full: drop audio that has already played, or wait for playback to move on.
      if (audio.currentTime > 15) {
        buffer.remove(0, audio.currentTime - 10);
        await waitFor(buffer, "updateend", signal);
      } else {
        await sleep(500);
      }
    }
  }
}

/** True when this browser can play `contentType` through MediaSource. */
export function canStream(contentType: string): boolean {
  return typeof MediaSource !== "undefined" && MediaSource.isTypeSupported(contentType);
}

/**
 * Feeds `chunks` into `audio`. With MediaSource, each chunk is appended as it arrives.
 * Without it, the whole file is collected first. Resolves when the last chunk is in.
 */
export async function streamIntoAudio(
  audio: HTMLAudioElement,
  chunks: AsyncIterable<StreamAudioResponse>,
  contentType: string,
  handlers: StreamHandlers,
  signal: AbortSignal,
): Promise<void> {
  const progress: StreamProgress = { received: 0, total: 0, chunks: 0 };
  const count = (chunk: StreamAudioResponse) => {
    progress.received += chunk.data.byteLength;
    progress.total = Number(chunk.totalSize);
    progress.chunks += 1;
    handlers.onProgress({ ...progress });
  };

  if (!canStream(contentType)) {
    const parts: Uint8Array<ArrayBuffer>[] = [];
    for await (const chunk of chunks) {
      parts.push(new Uint8Array(chunk.data));
      count(chunk);
    }
    audio.src = URL.createObjectURL(new Blob(parts, { type: contentType }));
    handlers.onFirstAudio();
    return;
  }

  const mediaSource = new MediaSource();
  audio.src = URL.createObjectURL(mediaSource);
  await waitFor(mediaSource, "sourceopen", signal);
  const buffer = mediaSource.addSourceBuffer(contentType);
  for await (const chunk of chunks) {
    await append(audio, buffer, new Uint8Array(chunk.data), signal);
    count(chunk);
    if (progress.chunks === 1) {
      handlers.onFirstAudio();
    }
  }
  if (mediaSource.readyState === "open" && !buffer.updating) {
    mediaSource.endOfStream();
  }
}

/** Stops playback and releases the element's object URL. */
export function resetAudio(audio: HTMLAudioElement): void {
  audio.pause();
  const source = audio.src;
  audio.removeAttribute("src");
  audio.load();
  if (source.startsWith("blob:")) {
    URL.revokeObjectURL(source);
  }
}
