// Talk: a test call to an agent from this browser's microphone. The token comes from POST /api/livekit/token; the
// vendored LiveKit JS client joins the room; the transcript arrives live on LiveKit's `lk.transcription` text
// streams, which the agent publishes for both sides of the conversation.

import { post } from "../api.js";
import { everyAgent } from "./agents.js";
import { config } from "../app.js";
import { transcriptBox } from "../transcript.js";
import { clear, describe, empty, field, fill, h } from "../ui.js";

let clientPromise = null;

/** The LiveKit client (UMD, vendored), loaded only when a call starts. */
function livekitClient() {
  if (!clientPromise) {
    clientPromise = new Promise((resolve, reject) => {
      if (window.LivekitClient) return resolve(window.LivekitClient);
      const script = document.createElement("script");
      script.src = `${config.assets}/vendor/livekit-client/livekit-client.umd.js`;
      script.onload = () => (window.LivekitClient ? resolve(window.LivekitClient) : reject(new Error("LiveKit client did not load")));
      script.onerror = () => {
        clientPromise = null;
        reject(new Error("could not load the LiveKit client"));
      };
      document.head.append(script);
    });
  }
  return clientPromise;
}

export async function render(main, params) {
  let room = null;
  const segments = new Map(); // segment id -> {speaker, content, timestamp, partial}
  const statusBox = h("p", { class: "talk-status", role: "status", "aria-live": "polite", "data-testid": "talk-status" },
    "Not connected.");
  const trBox = h("div", { "data-testid": "talk-transcript" }, empty("The conversation appears here."));
  const audioBox = h("div", { hidden: true });
  const picker = h("div", {});
  const start = h("button", { type: "button", class: "primary" }, "Start call");
  const mute = h("button", { type: "button", disabled: true }, "Mute");
  const hang = h("button", { type: "button", class: "danger", disabled: true }, "Hang up");
  main.append(
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Talk"),
      h("p", { class: "muted" }, "Call an agent from this browser's microphone (through LiveKit)."))),
    h("div", { class: "split" },
      h("section", { class: "panel", "aria-label": "Call" }, picker, h("div", { class: "actions", style: "margin-top:.8rem" },
        start, mute, hang), statusBox, audioBox,
        h("p", { class: "muted small" }, "The browser asks for the microphone the first time. The call is recorded, ",
          "metered and analysed like any other; it appears on the Calls page.")),
      h("section", { class: "panel", "aria-labelledby": "talk-tr-h" }, h("h2", { id: "talk-tr-h" }, "Transcript"), trBox)));

  let select = null;
  await fill(picker, async () => {
    const agents = await everyAgent();
    if (!agents.length) {
      start.disabled = true;
      return empty("Create an agent first.", h("p", {}, h("a", { href: "#/agents" }, "Go to Agents")));
    }
    select = h("select", { name: "agent", id: "talk-agent" },
      agents.map((a) => h("option", { value: a.id, selected: a.id === params[0] }, a.name)));
    return field("Agent", select);
  }, "Loading agents");

  function setStatus(text) {
    statusBox.textContent = text;
  }

  function drawTranscript() {
    const items = [...segments.values()];
    clear(trBox, items.length ? transcriptBox(items, { live: true }) : empty("The conversation appears here."));
    const box = trBox.querySelector(".transcript");
    if (box) box.scrollTop = box.scrollHeight;
  }

  function idle() {
    start.disabled = !select;
    mute.disabled = true;
    hang.disabled = true;
    mute.textContent = "Mute";
    if (select) select.disabled = false;
  }

  start.addEventListener("click", async () => {
    if (!select) return;
    start.disabled = true;
    select.disabled = true;
    segments.clear();
    drawTranscript();
    try {
      setStatus("Getting a token…");
      const tok = await post("/api/livekit/token", { agentId: select.value });
      setStatus("Loading the LiveKit client…");
      const LK = await livekitClient();
      room = new LK.Room({ adaptiveStream: true, dynacast: true });
      wire(LK, room);
      setStatus("Joining the room…");
      await room.connect(tok.serverUrl, tok.token);
      setStatus("Connected. Waiting for the agent…");
      hang.disabled = false;
      try {
        await room.localParticipant.setMicrophoneEnabled(true);
        mute.disabled = false;
      } catch (err) {
        setStatus(`Connected, but the microphone is not available: ${describe(err)}`);
      }
    } catch (err) {
      setStatus(`Could not start the call: ${describe(err)}`);
      await leave();
    }
  });

  mute.addEventListener("click", async () => {
    if (!room) return;
    const on = room.localParticipant.isMicrophoneEnabled;
    await room.localParticipant.setMicrophoneEnabled(!on);
    mute.textContent = on ? "Unmute" : "Mute";
    mute.setAttribute("aria-pressed", String(on));
  });

  hang.addEventListener("click", async () => {
    await leave();
    setStatus("Call ended.");
  });

  function wire(LK, r) {
    const E = LK.RoomEvent;
    r.on(E.TrackSubscribed, (track) => {
      if (track.kind === "audio") audioBox.append(track.attach());
    });
    r.on(E.TrackUnsubscribed, (track) => track.detach().forEach((el) => el.remove()));
    r.on(E.ParticipantConnected, (p) => {
      if (p.isAgent || p.kind === LK.ParticipantKind?.AGENT) setStatus("The agent joined. Speak now.");
    });
    r.on(E.ActiveSpeakersChanged, (speakers) => {
      if (!room) return;
      const agent = speakers.some((s) => s.identity !== r.localParticipant.identity);
      const me = speakers.some((s) => s.identity === r.localParticipant.identity);
      if (agent) setStatus("The agent is speaking…");
      else if (me) setStatus("Listening to you…");
    });
    r.on(E.Disconnected, () => {
      if (room === r) {
        room = null;
        setStatus("The call ended.");
        audioBox.replaceChildren();
        idle();
      }
    });
    r.registerTextStreamHandler("lk.transcription", async (reader, from) => {
      const attrs = reader.info.attributes || {};
      const id = attrs["lk.segment_id"] || reader.info.id;
      const speaker = from.identity === r.localParticipant.identity ? "USER" : "AGENT";
      const seg = segments.get(id) || { speaker, content: "", timestamp: new Date(reader.info.timestamp || Date.now()).toISOString(),
        label: speaker === "USER" ? "You" : "Agent" };
      segments.set(id, seg);
      // One stream is one version of a segment: the agent's words arrive as chunks of one stream, the caller's
      // interim transcripts as one stream each; either way the stream's text is the segment's text so far.
      let text = "";
      seg.partial = true;
      try {
        for await (const chunk of reader) {
          text += chunk;
          seg.content = text;
          drawTranscript();
        }
      } catch (err) {
        // The room closed while this segment was still arriving (a hang-up mid-sentence): what came is kept. Only a
        // stream cut short while the call goes on is worth a word in the console.
        if (room === r) console.warn("transcript stream cut short:", err);
      }
      seg.partial = attrs["lk.transcription_final"] === "false";
      drawTranscript();
    });
  }

  async function leave() {
    const r = room;
    room = null;
    if (r) await r.disconnect();
    audioBox.replaceChildren();
    idle();
  }

  return () => {
    leave();
  };
}
