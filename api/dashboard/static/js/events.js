// The live event stream (GET /events/ws, JSON events {type, call_sid, timestamp, ...}) with polling as the fallback.
// Browsers cannot set headers on a WebSocket, so the credential goes in `?token=` there and nowhere else.
//
// mode: "connecting" -> "stream" while the socket is open; "polling" when it cannot be opened (a server without
// the stream, or a proxy that drops it). While polling, the socket is retried now and then, so the page upgrades
// by itself once the stream is back.

import { getCredential } from "./api.js";

const RETRY_MS = [1000, 2000, 5000, 10000, 30000];

export class LiveFeed {
  /**
   * onEvent(event) for each stream event; onMode(mode) when the mode changes; poll() is called every pollMs while
   * polling (and every safetyPollMs while streaming, in case an event was missed).
   */
  constructor({ onEvent, onMode, poll, pollMs = 2000, safetyPollMs = 15000, url }) {
    this.onEvent = onEvent;
    this.onMode = onMode;
    this.poll = poll;
    this.pollMs = pollMs;
    this.safetyPollMs = safetyPollMs;
    this.url = url || defaultUrl;
    this.mode = "connecting";
    this.failures = 0;
    this.closed = false;
    this.ws = null;
    this.pollTimer = null;
    this.retryTimer = null;
  }

  start() {
    this.poll();
    this.connect();
    this.schedulePoll();
    return this;
  }

  setMode(mode) {
    if (mode === this.mode) return;
    this.mode = mode;
    this.schedulePoll();
    if (this.onMode) this.onMode(mode);
  }

  schedulePoll() {
    clearInterval(this.pollTimer);
    if (this.closed) return;
    const every = this.mode === "stream" ? this.safetyPollMs : this.pollMs;
    this.pollTimer = setInterval(() => this.poll(), every);
  }

  connect() {
    const cred = getCredential();
    if (this.closed || !cred) return;
    let opened = false;
    let ws;
    try {
      ws = new WebSocket(this.url(cred.token));
    } catch {
      this.failed(false);
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      opened = true;
      this.failures = 0;
      this.setMode("stream");
      this.poll(); // catch up on what happened while the socket was down
    });
    ws.addEventListener("message", (msg) => {
      let event;
      try {
        event = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (event && typeof event === "object" && event.type) this.onEvent(event);
    });
    ws.addEventListener("close", () => {
      if (this.ws === ws) this.ws = null;
      this.failed(opened);
    });
  }

  failed(wasOpen) {
    if (this.closed) return;
    if (!wasOpen) this.failures++;
    this.setMode("polling");
    const delay = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)];
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  close() {
    this.closed = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.retryTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
    }
  }
}

function defaultUrl(token) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/events/ws?token=${encodeURIComponent(token)}`;
}

/** A transcript event's speaker ("user" or "agent" on the stream) as the transcript has it: "USER" or "AGENT". */
export function speakerOf(event) {
  return String(event.speaker || "").toLowerCase() === "agent" ? "AGENT" : "USER";
}

export function textOf(event) {
  return String(event.text ?? "");
}
