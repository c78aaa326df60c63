// trio-voice demo client: one WebSocket to /v1/voice (protocol/voice.md), the microphone through an
// AudioWorklet as binary PCM16 frames, reply audio through Web Audio with gap-free scheduling and
// instant stop on barge-in, the live transcript, the conversation and each turn's latency.
//
// Query parameters: ?ws=URL of the WebSocket endpoint (default ws(s)://<page host>:8765/v1/voice),
// ?token=TOKEN passed on as ?token= on the WebSocket URL, ?lowbw=1 to start in low-bandwidth mode.
//
// Low bandwidth: Opus both ways. The microphone goes out as MediaRecorder's WebM/Opus blobs
// (input_audio_format "webm", ~24 kbit/s instead of 256 kbit/s of PCM16 at 16 kHz), and replies come
// back as Ogg/Opus (output_audio_format "opus"), decoded here by WebCodecs (opus-playback.js).

import { OggOpusStream, opusPlaybackSupported } from "./opus-playback.js";
// window.trioVoice.stats is a read-only snapshot of counters, for tests and curious people.

const SUPPORTED_RATES = [8000, 16000, 24000, 44100, 48000];
const FALLBACK_RATE = 16000; // the worklet resamples to this when the context's rate is not supported
const FRAME_MS = 40; // microphone frame length sent to the server
const PLAY_LEAD_S = 0.06; // scheduling margin when playback (re)starts, so the first chunk is not clipped
const BACKOFF_FIRST_S = 1;
const BACKOFF_MAX_S = 30;
const MAX_QUEUED_FRAMES = Math.round(3000 / FRAME_MS); // mic audio kept while the input rate is confirmed
const MAX_OUTBOX = 10; // typed messages kept while (re)connecting
const KEPT_RESPONSES = 8; // replies whose playback record is kept for response.truncate
const RECORDER_MIME = "audio/webm;codecs=opus";
const RECORDER_SLICE_MS = 100; // MediaRecorder timeslice: how often a WebM blob goes out
const RECORDER_BITS = 24000;

const METRIC_LABELS = [
  ["speech_end_to_final_ms", "transcript"],
  ["llm_first_token_ms", "first token"],
  ["first_phrase_ms", "first phrase"],
  ["first_audio_ms", "first audio"],
  ["voice_to_voice_ms", "voice-to-voice"],
  ["speech_end_to_first_audio_ms", "voice-to-voice"],
  ["interruption_ms", "interruption"],
  ["total_ms", "total"],
];

const $ = (id) => document.getElementById(id);
const ui = {
  conn: $("conn"),
  connText: $("conn-text"),
  mic: $("mic"),
  interrupt: $("interrupt"),
  levelBar: $("level-bar"),
  activity: $("activity"),
  notice: $("notice"),
  noticeText: $("notice-text"),
  noticeRetry: $("notice-retry"),
  noticeClose: $("notice-close"),
  log: $("log"),
  logEmpty: $("log-empty"),
  compose: $("compose"),
  composeText: $("compose-text"),
  settings: $("settings"),
  settingsForm: $("settings-form"),
  wsUrl: $("ws-url"),
  token: $("token"),
  sessionId: $("session-id"),
  conversationId: $("conversation-id"),
  micRate: $("mic-rate"),
  outRate: $("out-rate"),
  lowBandwidth: $("low-bandwidth"),
};

const params = new URLSearchParams(location.search);

function defaultWsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.hostname || "127.0.0.1"}:8765/v1/voice`;
}

const stats = {
  connects: 0,
  eventsReceived: 0,
  framesSent: 0,
  bytesSent: 0,
  partials: 0,
  finals: 0,
  replies: 0,
  textDeltas: 0,
  chunks: 0,
  scheduledSeconds: 0,
  underruns: 0,
  stops: 0,
  truncations: 0, // replies cut short here
  truncatesSent: 0, // response.truncate messages sent
  seqGaps: 0,
  recorderBlobs: 0, // low bandwidth: WebM blobs sent
  opusBytes: 0, // low bandwidth: Ogg/Opus reply bytes received
  opusChunks: 0, // low bandwidth: decoded Opus audio chunks scheduled
  errors: [],
};

const state = {
  wsUrl: params.get("ws") || defaultWsUrl(),
  token: params.get("token") || "",
  ws: null,
  connected: false, // session.created received on the current socket
  opened: false, // the current socket's handshake succeeded
  lastSeq: 0,
  attempt: 0,
  retryTimer: null,
  closeReason: null, // what an error event said just before a close
  stopRetrying: false,
  sessionId: null,
  conversationId: null, // kept across reconnects, so the conversation goes on
  createdConversationId: null, // the new conversation the current session started with
  outbox: [],
  requestCounter: 0,
  // audio
  ctx: null,
  master: null,
  micOn: false,
  micStarting: false,
  stream: null,
  source: null,
  worklet: null,
  sink: null,
  micRate: null,
  serverInputRate: null,
  lowBandwidth: params.get("lowbw") === "1",
  recorder: null,
  serverFormats: { input: "pcm16", output: "pcm16" }, // what the server last confirmed
  queuedBlobs: [], // WebM blobs waiting for the server to expect webm (the first holds the header)
  opus: new Map(), // response_id -> OggOpusStream
  rateRequestId: null,
  queuedFrames: [],
  playCursor: 0,
  playing: new Map(), // response_id -> { chunks: [{src, start, duration}], scheduled, stopped, truncated }
  // conversation
  userSpeaking: false,
  partialEl: null,
  responseId: null, // the reply the server is producing now
  replyEls: new Map(), // response_id -> element
};

window.trioVoice = Object.freeze({
  get stats() {
    return {
      ...stats,
      errors: [...stats.errors],
      connected: state.connected,
      micOn: state.micOn,
      lowBandwidth: state.lowBandwidth,
      serverFormats: { ...state.serverFormats },
      sounding: isPlaying(),
    };
  },
});

// ---------------------------------------------------------------------------------------------
// Connection

function socketUrl() {
  const url = new URL(state.wsUrl, location.href);
  if (state.token) url.searchParams.set("token", state.token);
  return url.toString();
}

function setConn(kind, text) {
  ui.conn.dataset.state = kind;
  ui.connText.textContent = text;
}

function connect() {
  clearTimeout(state.retryTimer);
  state.retryTimer = null;
  if (state.ws && state.ws.readyState <= WebSocket.OPEN) return;
  let ws;
  try {
    ws = new WebSocket(socketUrl());
  } catch (err) {
    setConn("error", "Bad server address");
    showNotice(`The server address is not valid: ${err.message}`, { retry: false });
    ui.settings.open = true;
    return;
  }
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  state.opened = false;
  state.connected = false;
  state.lastSeq = 0;
  state.closeReason = null;
  state.serverInputRate = null;
  setConn("connecting", state.attempt ? `Reconnecting (attempt ${state.attempt + 1})…` : "Connecting…");
  ws.onopen = () => {
    if (ws !== state.ws) return;
    state.opened = true;
  };
  ws.onmessage = (message) => {
    if (ws !== state.ws || typeof message.data !== "string") return;
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      console.warn("trio-voice: a frame that is not JSON", message.data);
      return;
    }
    handleEvent(event);
  };
  ws.onclose = (close) => {
    if (ws !== state.ws) return;
    onClosed(close, ws);
  };
  ws.onerror = () => {}; // the close event that follows says everything the browser lets us know
}

function onClosed(close, ws) {
  const wasConnected = state.connected;
  state.connected = false;
  state.ws = null;
  state.queuedFrames = [];
  stopPlayback({ truncate: false });
  endPartial();
  updateButtons();
  const reason = state.closeReason;
  if (reason === "server_full" || close.code === 1013) {
    retryLater("Server full", "The server is full right now.");
  } else if (reason === "idle_timeout") {
    setConn("idle", "Disconnected (idle)");
    showNotice("The session was closed after a long silence. It reconnects when you speak or type.", {
      retry: true,
      source: "connection",
    });
  } else if (!state.opened && !wasConnected) {
    // The handshake failed: a browser does not see the HTTP status, so ask the HTTP server whether
    // the token is the problem (it answers 401 to the same token).
    diagnoseRefusal().then((diagnosis) => {
      if (state.ws !== null && state.ws !== ws) return;
      if (diagnosis === "auth") {
        state.stopRetrying = true;
        setConn("error", "Not authorized");
        showNotice(
          state.token
            ? "The server refused the access token. Enter the right one under “Connection settings”."
            : "This server needs an access token. Enter it under “Connection settings”.",
          { retry: false, source: "connection" },
        );
        ui.settings.open = true;
        ui.token.focus();
      } else {
        retryLater("Cannot connect", `Cannot reach the server at ${state.wsUrl}.`);
      }
    });
  } else if (close.code === 1001) {
    retryLater("Server restarting", "The server is restarting.");
  } else if (close.code === 1011) {
    retryLater("Server error", "The server hit an internal error and closed the session.");
  } else {
    retryLater("Disconnected", `The connection closed (code ${close.code}).`);
  }
}

async function diagnoseRefusal() {
  try {
    const url = new URL("/v1/sessions", location.href);
    if (state.token) url.searchParams.set("token", state.token);
    const answer = await fetch(url, { cache: "no-store" });
    return answer.status === 401 ? "auth" : "unknown";
  } catch {
    return "unknown";
  }
}

function retryLater(short, message) {
  if (state.stopRetrying) return;
  const base = Math.min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** state.attempt);
  const delay = base * (0.8 + Math.random() * 0.4);
  state.attempt += 1;
  setConn("retrying", `${short}, retrying…`);
  showNotice(`${message} Retrying in ${Math.round(delay)} s.`, { retry: true, source: "connection" });
  clearTimeout(state.retryTimer);
  state.retryTimer = setTimeout(connect, delay * 1000);
}

function reconnectNow() {
  state.stopRetrying = false;
  state.attempt = 0;
  hideNotice();
  if (state.ws) {
    const old = state.ws;
    state.ws = null;
    old.close(1000);
  }
  connect();
}

function send(message) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
  state.ws.send(JSON.stringify(message));
  return true;
}

function nextRequestId(prefix) {
  state.requestCounter += 1;
  return `${prefix}${state.requestCounter}`;
}

/** Send now when connected, else keep it (bounded) for the next session and (re)connect. */
function sendOrQueue(message) {
  if (state.connected && send(message)) return;
  if (state.outbox.length < MAX_OUTBOX) state.outbox.push(message);
  if (!state.ws) reconnectNow();
}

// ---------------------------------------------------------------------------------------------
// Server events

function handleEvent(event) {
  stats.eventsReceived += 1;
  if (typeof event.seq === "number") {
    if (state.lastSeq && event.seq !== state.lastSeq + 1) {
      stats.seqGaps += 1;
      console.warn(`trio-voice: event seq ${event.seq} after ${state.lastSeq}: an event was lost`);
    }
    state.lastSeq = event.seq;
  }
  switch (event.type) {
    case "session.created":
      onSessionCreated(event);
      break;
    case "session.updated":
      onSessionUpdated(event);
      break;
    case "input.speech_started":
      onSpeechStarted();
      break;
    case "input.speech_stopped":
      state.userSpeaking = false;
      setActivity("Thinking…");
      break;
    case "transcript.partial":
      onPartial(event.text);
      break;
    case "transcript.final":
      if (!event.request_id) onFinal(event.text);
      break;
    case "response.created":
      onResponseCreated(event);
      break;
    case "response.text.delta":
      onTextDelta(event);
      break;
    case "response.audio.delta":
      onAudioDelta(event);
      break;
    case "response.done":
      onResponseDone(event);
      break;
    case "error":
      onError(event);
      break;
    case "warning":
      showNotice(`Warning: ${event.message}`, { retry: false, kind: "warning" });
      break;
    default:
      break; // pong, response.phrase, and event types of later releases
  }
}

function onSessionCreated(event) {
  state.connected = true;
  state.attempt = 0;
  stats.connects += 1;
  state.sessionId = event.session_id;
  state.createdConversationId = event.conversation_id;
  ui.sessionId.textContent = event.session_id;
  ui.outRate.textContent = `${event.config.output_sample_rate} Hz`;
  state.serverInputRate = event.config.input_sample_rate;
  state.serverFormats = { input: event.config.input_audio_format, output: event.config.output_audio_format };
  if (state.recorder) {
    // A new session has a new decoder, which needs the WebM header: start a new recording.
    state.recorder.ondataavailable = null;
    if (state.recorder.state !== "inactive") state.recorder.stop();
    state.queuedBlobs = [];
    startRecorder(state.stream);
  }
  setConn("connected", "Connected");
  if (ui.notice.dataset.source === "connection") hideNotice();
  const update = {};
  if (state.conversationId) update.conversation_id = state.conversationId; // keep the history on reconnect
  if (state.micRate && state.micRate !== state.serverInputRate) update.input_sample_rate = state.micRate;
  Object.assign(update, formatUpdate());
  if (Object.keys(update).length) {
    sendSessionUpdate(update);
  } else {
    state.conversationId = event.conversation_id;
    ui.conversationId.textContent = event.conversation_id;
    flushQueuedFrames();
  }
  for (const message of state.outbox.splice(0)) send(message);
  updateButtons();
  if (!state.micOn) setActivity("Press “Start conversation” and speak, or type below.");
  else setActivity("Listening…");
}

function sendSessionUpdate(update) {
  state.rateRequestId = nextRequestId("u");
  send({ type: "session.update", request_id: state.rateRequestId, ...update });
}

function wantedFormats() {
  return state.lowBandwidth ? { input: "webm", output: "opus" } : { input: "pcm16", output: "pcm16" };
}

/** The session.update fields that bring the server's audio formats to this page's mode (maybe none). */
function formatUpdate() {
  const wanted = wantedFormats();
  const update = {};
  if (state.serverFormats.input !== wanted.input) update.input_audio_format = wanted.input;
  if (state.serverFormats.output !== wanted.output) update.output_audio_format = wanted.output;
  return update;
}

function setLowBandwidth(on) {
  if (on && (!opusPlaybackSupported || !window.MediaRecorder || !MediaRecorder.isTypeSupported(RECORDER_MIME))) {
    showNotice("This browser cannot record or play Opus (MediaRecorder WebM/Opus and WebCodecs are needed).", {
      retry: false,
    });
    ui.lowBandwidth.checked = false;
    return;
  }
  state.lowBandwidth = on;
  ui.lowBandwidth.checked = on;
  const restartMic = state.micOn;
  if (restartMic) stopMic();
  if (state.connected) {
    const update = formatUpdate();
    if (Object.keys(update).length) sendSessionUpdate(update);
  }
  if (restartMic) startMic();
}

function onSessionUpdated(event) {
  state.serverFormats = { input: event.config.input_audio_format, output: event.config.output_audio_format };
  flushQueuedBlobs();
  state.serverInputRate = event.config.input_sample_rate;
  state.conversationId = event.conversation_id;
  ui.conversationId.textContent = event.conversation_id;
  if (state.micRate && state.micRate !== state.serverInputRate) {
    sendSessionUpdate({ input_sample_rate: state.micRate });
    return;
  }
  flushQueuedFrames();
}

function onError(event) {
  stats.errors.push(event.code);
  if (stats.errors.length > 50) stats.errors.shift();
  switch (event.code) {
    case "no_active_response":
    case "input_audio_empty":
    case "no_audio":
      return; // a race with a reply or turn that had just ended: nothing to tell the user
    case "server_full":
    case "idle_timeout":
      state.closeReason = event.code; // the close that follows is explained in onClosed
      return;
    case "conversation_not_found":
      // The server no longer has the old conversation: carry on in this session's new one.
      if (event.request_id === state.rateRequestId) {
        state.conversationId = state.createdConversationId;
        ui.conversationId.textContent = state.conversationId;
        if (state.micRate && state.micRate !== state.serverInputRate) {
          sendSessionUpdate({ input_sample_rate: state.micRate });
        } else {
          flushQueuedFrames();
        }
      }
      return;
    default:
      showNotice(`Server error (${event.code}): ${event.message}`, { retry: false });
      if (event.response_id) markReplyFailed(event.response_id, event.code);
  }
}

// ---------------------------------------------------------------------------------------------
// Transcript and replies

function addLogItem(className, label) {
  if (ui.logEmpty.isConnected) ui.logEmpty.remove();
  const item = document.createElement("li");
  item.className = `msg ${className}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = label;
  const text = document.createElement("p");
  text.className = "text";
  item.append(who, text);
  ui.log.append(item);
  item.scrollIntoView({ block: "end", behavior: "smooth" });
  return item;
}

function onSpeechStarted() {
  state.userSpeaking = true;
  // Barge-in: the user talks over the reply, so it stops now, not when the server's cancel arrives.
  stopPlayback({ truncate: true });
  setActivity("You are speaking…");
}

function onPartial(text) {
  stats.partials += 1;
  if (!state.partialEl) {
    state.partialEl = addLogItem("user partial", "You (speaking)");
    state.partialEl.setAttribute("aria-busy", "true");
  }
  state.partialEl.querySelector(".text").textContent = text || "…";
}

function onFinal(text) {
  stats.finals += 1;
  const item = state.partialEl;
  state.partialEl = null;
  if (!text || !text.trim()) {
    if (item) item.remove(); // noise or a cough: no turn, no reply
    setActivity(state.micOn ? "Listening…" : "");
    return;
  }
  const el = item || addLogItem("user", "You");
  el.className = "msg user final";
  el.removeAttribute("aria-busy");
  el.querySelector(".who").textContent = "You (spoken)";
  el.querySelector(".text").textContent = text;
}

function endPartial() {
  if (state.partialEl) {
    state.partialEl.remove();
    state.partialEl = null;
  }
  state.userSpeaking = false;
}

function onResponseCreated(event) {
  stats.replies += 1;
  state.responseId = event.response_id;
  const el = addLogItem("assistant streaming", "Assistant");
  el.dataset.responseId = event.response_id;
  el.setAttribute("aria-busy", "true");
  state.replyEls.set(event.response_id, el);
  trimMap(state.replyEls, KEPT_RESPONSES * 4);
  setActivity("Answering…");
  updateButtons();
}

function onTextDelta(event) {
  stats.textDeltas += 1;
  const el = state.replyEls.get(event.response_id);
  if (el) el.querySelector(".text").textContent += event.delta;
}

function onResponseDone(event) {
  const el = state.replyEls.get(event.response_id);
  if (state.responseId === event.response_id) state.responseId = null;
  if (event.status === "cancelled") stopPlayback({ truncate: true, responseId: event.response_id });
  const record = state.playing.get(event.response_id);
  if (record) {
    record.done = true;
    if (record.truncated) sendTruncate(event.response_id, record);
  }
  if (el) {
    el.classList.remove("streaming");
    el.classList.add("done", event.status);
    el.removeAttribute("aria-busy");
    el.querySelector(".text").textContent = event.text;
    if (event.status === "cancelled") addTag(el, reasonText(event.reason));
    if (event.status === "failed") addTag(el, `failed: ${event.reason}`);
    el.append(renderMetrics(event.metrics || {}, event.status));
  }
  if (!isPlaying()) setActivity(state.micOn ? "Listening…" : "");
  updateButtons();
}

function markReplyFailed(responseId, code) {
  const el = state.replyEls.get(responseId);
  if (el) el.dataset.error = code;
}

function reasonText(reason) {
  return (
    {
      turn_detected: "interrupted by you",
      client_cancelled: "interrupted",
      new_message: "replaced by a new message",
      client_disconnected: "disconnected",
      shutdown: "server stopped",
    }[reason] || `cancelled (${reason})`
  );
}

function addTag(el, text) {
  const tag = document.createElement("span");
  tag.className = "tag";
  tag.textContent = text;
  el.querySelector(".who").after(tag);
}

function renderMetrics(metrics, status) {
  const list = document.createElement("dl");
  list.className = "metrics";
  list.setAttribute("aria-label", "Latency of this turn");
  const shown = new Set();
  for (const [key, label] of METRIC_LABELS) {
    const value = metrics[key];
    if (value === null || value === undefined || shown.has(label)) continue;
    shown.add(label);
    const item = document.createElement("div");
    item.dataset.metric = key;
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = `${Math.round(value)} ms`;
    item.append(dt, dd);
    list.append(item);
  }
  if (typeof metrics.tokens === "number" && metrics.tokens > 0) {
    const item = document.createElement("div");
    item.dataset.metric = "tokens";
    const dt = document.createElement("dt");
    dt.textContent = "tokens";
    const dd = document.createElement("dd");
    dd.textContent = String(metrics.tokens);
    item.append(dt, dd);
    list.append(item);
  }
  list.title = `status: ${status}\n${JSON.stringify(metrics, null, 1)}`;
  return list;
}

function trimMap(map, keep) {
  while (map.size > keep) map.delete(map.keys().next().value);
}

// ---------------------------------------------------------------------------------------------
// Audio: one AudioContext for capture and playback, made on the first user gesture

function ensureAudioContext() {
  if (!state.ctx) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) throw new Error("this browser has no Web Audio");
    state.ctx = new Ctx({ latencyHint: "interactive" });
    state.master = state.ctx.createGain();
    state.master.connect(state.ctx.destination);
  }
  if (state.ctx.state === "suspended") state.ctx.resume().catch(() => {});
  return state.ctx;
}

function decodePcm16(base64) {
  const binary = atob(base64);
  const count = binary.length >> 1;
  const samples = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const lo = binary.charCodeAt(2 * i);
    const hi = binary.charCodeAt(2 * i + 1);
    let value = (hi << 8) | lo;
    if (value >= 0x8000) value -= 0x10000;
    samples[i] = value / 0x8000;
  }
  return samples;
}

function onAudioDelta(event) {
  const record = state.playing.get(event.response_id);
  if (record && record.stopped) return; // cut short here already: the rest is stale
  if (event.format === "opus") {
    let stream = state.opus.get(event.response_id);
    if (!stream) {
      const id = event.response_id;
      stream = new OggOpusStream(
        (samples, rate) => {
          stats.opusChunks += 1;
          schedule(id, samples, rate);
        },
        (error) => showNotice(`Opus playback failed: ${error.message}`, { retry: false }),
      );
      state.opus.set(id, stream);
      while (state.opus.size > KEPT_RESPONSES) {
        const [oldest, old] = state.opus.entries().next().value;
        old.close();
        state.opus.delete(oldest);
      }
    }
    const binary = atob(event.audio);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    stats.opusBytes += bytes.length;
    stream.push(bytes);
    return;
  }
  schedule(event.response_id, decodePcm16(event.audio), event.sample_rate);
}

/** Play decoded mono samples of reply ``responseId`` right after what is already scheduled. */
function schedule(responseId, samples, rate) {
  let record = state.playing.get(responseId);
  if (record && record.stopped) return;
  if (!samples.length) return;
  const ctx = ensureAudioContext();
  if (!record) {
    record = { chunks: [], scheduled: 0, stopped: false, truncated: false };
    state.playing.set(responseId, record);
    trimMap(state.playing, KEPT_RESPONSES);
  }
  const buffer = ctx.createBuffer(1, samples.length, rate);
  buffer.copyToChannel(samples, 0);
  const src = ctx.createBufferSource();
  src.buffer = buffer;
  src.connect(state.master);
  // A running play cursor: each chunk starts where the previous one ends, so phrases join without
  // gaps; when the cursor has fallen behind the clock (the first chunk, or the network was late),
  // playback restarts a little ahead of now.
  const now = ctx.currentTime;
  if (state.playCursor < now + 0.005) {
    if (state.playCursor > 0 && isPlaying()) stats.underruns += 1;
    state.playCursor = now + PLAY_LEAD_S;
  }
  const chunk = { src, start: state.playCursor, duration: buffer.duration, ended: false };
  src.onended = () => {
    chunk.ended = true;
    src.disconnect();
    if (!isPlaying()) {
      updateButtons();
      if (!state.responseId) setActivity(state.micOn ? "Listening…" : "");
    }
  };
  src.start(chunk.start);
  state.playCursor += buffer.duration;
  record.chunks.push(chunk);
  record.scheduled += buffer.duration;
  stats.chunks += 1;
  stats.scheduledSeconds += buffer.duration;
  setActivity("Speaking…");
  updateButtons();
}

function sendTruncate(id, record) {
  if (record.truncateSent || record.heardMs === undefined) return;
  record.truncateSent = true;
  stats.truncatesSent += 1;
  send({ type: "response.truncate", response_id: id, audio_end_ms: record.heardMs });
}

function isPlaying() {
  for (const record of state.playing.values()) {
    if (!record.stopped && record.chunks.some((c) => !c.ended)) return true;
  }
  return false;
}

/**
 * Stop reply audio at once (at the next render quantum) and tell the server what was heard.
 * responseId limits it to one reply; otherwise every reply still sounding is stopped.
 */
function stopPlayback({ truncate, responseId = null }) {
  const running = state.responseId;
  if (running && !state.playing.has(running) && (!responseId || responseId === running)) {
    // No audio of the running reply yet: whatever still arrives of it is stale.
    state.playing.set(running, { chunks: [], scheduled: 0, stopped: true, truncated: false });
    trimMap(state.playing, KEPT_RESPONSES);
  }
  if (!state.ctx) return;
  const now = state.ctx.currentTime;
  for (const [id, record] of state.playing) {
    if (record.stopped || (responseId && id !== responseId)) continue;
    const sounding = record.chunks.some((c) => !c.ended);
    // Mark every reply that was not done playing, including one whose first chunk has not started.
    record.stopped = sounding || state.responseId === id;
    if (!record.stopped) continue;
    let playedS = 0;
    for (const chunk of record.chunks) {
      playedS += Math.min(Math.max(now - chunk.start, 0), chunk.duration);
      if (!chunk.ended) {
        chunk.src.onended = null;
        try {
          chunk.src.stop();
        } catch {
          // not started yet in some engines: disconnecting silences it anyway
        }
        chunk.src.disconnect();
        chunk.ended = true;
      }
    }
    stats.stops += 1;
    if (truncate && !record.truncated && playedS < record.scheduled - 0.001) {
      record.truncated = true;
      stats.truncations += 1;
      record.heardMs = Math.floor(playedS * 1000);
      // The server finds a reply for response.truncate only once it has ended: a running one's
      // truncate waits for its response.done (which a barge-in or cancel brings at once).
      if (record.done) sendTruncate(id, record);
      const el = state.replyEls.get(id);
      if (el) {
        el.dataset.heardMs = String(Math.floor(playedS * 1000));
        addTag(el, `audio stopped at ${playedS.toFixed(1)} of ${record.scheduled.toFixed(1)} s`);
      }
    }
  }
  state.playCursor = 0;
  updateButtons();
}

// ---------------------------------------------------------------------------------------------
// Microphone

async function startMic() {
  if (state.micOn || state.micStarting) return;
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showNotice(
      "The microphone needs a secure page: open it over https, or on localhost / 127.0.0.1. You can still type.",
      { retry: false },
    );
    return;
  }
  state.micStarting = true;
  updateButtons();
  setActivity("Asking for the microphone…");
  try {
    const ctx = ensureAudioContext();
    const streamPromise = navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    // Asked for in parallel with loading the worklet; its refusal is handled below, not "unhandled".
    streamPromise.catch(() => {});
    try {
      await ctx.audioWorklet.addModule(new URL("audio-worklet.js", import.meta.url));
    } catch (err) {
      streamPromise.then((stream) => stream.getTracks().forEach((track) => track.stop())).catch(() => {});
      throw err;
    }
    const stream = await streamPromise;
    state.micRate = SUPPORTED_RATES.includes(ctx.sampleRate) ? ctx.sampleRate : FALLBACK_RATE;
    ui.micRate.textContent = `${state.micRate} Hz`;
    const source = ctx.createMediaStreamSource(stream);
    const worklet = new AudioWorkletNode(ctx, "pcm16-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { targetRate: state.micRate, frameMs: FRAME_MS },
    });
    // A silent path to the destination keeps the node pulled by the render graph in every engine.
    const sink = ctx.createGain();
    sink.gain.value = 0;
    source.connect(worklet);
    worklet.connect(sink);
    sink.connect(ctx.destination);
    worklet.port.onmessage = (message) => onMicFrame(message.data);
    for (const track of stream.getAudioTracks()) {
      track.onended = () => {
        showNotice("The microphone was disconnected.", { retry: false });
        stopMic();
      };
    }
    Object.assign(state, { stream, source, worklet, sink, micOn: true });
    if (state.lowBandwidth) startRecorder(stream);
    if (state.connected && state.micRate !== state.serverInputRate) {
      sendSessionUpdate({ input_sample_rate: state.micRate });
    }
    if (!state.ws) reconnectNow();
    setActivity(state.connected ? "Listening…" : "Connecting…");
  } catch (err) {
    setActivity("");
    showNotice(micErrorText(err), { retry: false });
  } finally {
    state.micStarting = false;
    updateButtons();
  }
}

function micErrorText(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone permission was refused. Allow the microphone for this page in the browser's site settings, then press “Start conversation” again. You can still type.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one and try again, or type below.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone is busy or could not be opened (another program may be using it).";
    default:
      return `The microphone could not be started: ${err && err.message ? err.message : err}`;
  }
}

function startRecorder(stream) {
  // Every blob of one recording is one WebM stream: the first holds its header, so none is dropped.
  const recorder = new MediaRecorder(stream, { mimeType: RECORDER_MIME, audioBitsPerSecond: RECORDER_BITS });
  recorder.ondataavailable = async (event) => {
    if (!event.data.size) return;
    const blob = await event.data.arrayBuffer();
    if (state.serverFormats.input !== "webm" || state.queuedBlobs.length) state.queuedBlobs.push(blob);
    else sendBlob(blob);
  };
  recorder.start(RECORDER_SLICE_MS);
  state.recorder = recorder;
}

function sendBlob(blob) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return;
  state.ws.send(blob);
  stats.recorderBlobs += 1;
  stats.bytesSent += blob.byteLength;
}

function flushQueuedBlobs() {
  if (state.serverFormats.input !== "webm") return;
  for (const blob of state.queuedBlobs.splice(0)) sendBlob(blob);
}

function onMicFrame({ pcm, level }) {
  ui.levelBar.style.transform = `scaleX(${Math.min(1, level * 1.5).toFixed(3)})`;
  if (!state.micOn || !state.connected || state.lowBandwidth) return; // low bandwidth: the recorder sends
  if (state.serverInputRate !== state.micRate) {
    // session.updated has not confirmed our rate yet: audio sent now would be read at the old rate.
    state.queuedFrames.push(pcm);
    if (state.queuedFrames.length > MAX_QUEUED_FRAMES) state.queuedFrames.shift();
    return;
  }
  sendFrame(pcm);
}

function sendFrame(pcm) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return;
  state.ws.send(pcm);
  stats.framesSent += 1;
  stats.bytesSent += pcm.byteLength;
}

function flushQueuedFrames() {
  if (state.serverInputRate !== state.micRate) return;
  for (const pcm of state.queuedFrames.splice(0)) sendFrame(pcm);
}

function stopMic() {
  if (!state.micOn) return;
  state.micOn = false;
  if (state.recorder) {
    state.recorder.ondataavailable = null;
    if (state.recorder.state !== "inactive") state.recorder.stop();
    state.recorder = null;
    state.queuedBlobs = [];
  }
  state.worklet.port.postMessage("stop");
  state.worklet.port.onmessage = null;
  state.source.disconnect();
  state.worklet.disconnect();
  state.sink.disconnect();
  for (const track of state.stream.getTracks()) {
    track.onended = null;
    track.stop();
  }
  Object.assign(state, { stream: null, source: null, worklet: null, sink: null, queuedFrames: [] });
  ui.levelBar.style.transform = "scaleX(0)";
  // Stopping mid-sentence means "that is all I wanted to say": end the turn now.
  if (state.userSpeaking && state.connected) send({ type: "input_audio.commit" });
  setActivity(state.responseId || isPlaying() ? "Answering…" : "Microphone off. Type below, or start it again.");
  updateButtons();
}

// ---------------------------------------------------------------------------------------------
// User actions

function interrupt() {
  stopPlayback({ truncate: true });
  if (state.responseId && state.connected) {
    send({ type: "response.cancel", request_id: nextRequestId("x"), response_id: state.responseId });
  }
  setActivity(state.micOn ? "Listening…" : "");
}

function sendText(text) {
  try {
    ensureAudioContext(); // this is a user gesture: let the reply's audio play
  } catch {
    // no Web Audio: replies are shown as text only
  }
  stopPlayback({ truncate: true }); // a new question replaces whatever is still playing
  const el = addLogItem("user final typed", "You (typed)");
  el.querySelector(".text").textContent = text;
  sendOrQueue({ type: "message.create", request_id: nextRequestId("m"), text });
}

function updateButtons() {
  ui.mic.disabled = state.micStarting;
  ui.mic.setAttribute("aria-pressed", String(state.micOn));
  ui.mic.textContent = state.micOn
    ? "Stop microphone"
    : stats.framesSent
      ? "Start microphone"
      : "Start conversation";
  ui.interrupt.disabled = !(state.responseId || isPlaying());
}

function setActivity(text) {
  if (ui.activity.textContent !== text) ui.activity.textContent = text;
}

/** Show one notice; `source: "connection"` ones are cleared by the next successful connection. */
function showNotice(text, { retry = false, kind = "error", source = "page" } = {}) {
  ui.notice.hidden = false;
  ui.notice.dataset.kind = kind;
  ui.notice.dataset.source = source;
  ui.noticeText.textContent = text;
  ui.noticeRetry.hidden = !retry;
}

function hideNotice() {
  ui.notice.hidden = true;
  ui.noticeText.textContent = "";
}

ui.mic.addEventListener("click", () => {
  if (state.micOn) stopMic();
  else startMic();
});
ui.interrupt.addEventListener("click", interrupt);
ui.compose.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.composeText.value.trim();
  if (!text) return;
  ui.composeText.value = "";
  sendText(text);
});
ui.noticeRetry.addEventListener("click", reconnectNow);
ui.noticeClose.addEventListener("click", hideNotice);
ui.settingsForm.addEventListener("submit", (event) => {
  event.preventDefault();
  state.wsUrl = ui.wsUrl.value.trim() || defaultWsUrl();
  state.token = ui.token.value;
  state.conversationId = null;
  reconnectNow();
});
ui.lowBandwidth.addEventListener("change", () => setLowBandwidth(ui.lowBandwidth.checked));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !ui.interrupt.disabled) interrupt();
});

// Without ?ws=, ask the server that served this page where its WebSocket listens (it may not be 8765).
async function discoverWsUrl() {
  if (params.get("ws")) return;
  try {
    const response = await fetch("/v1/config", { cache: "no-store" });
    if (!response.ok) return;
    const config = await response.json();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    state.wsUrl = `${scheme}//${location.hostname || "127.0.0.1"}:${config.ws_port}${config.ws_path}`;
  } catch (error) {
    // An older server or a static host: keep the default.
  }
}

ui.token.value = state.token;
if (state.lowBandwidth) setLowBandwidth(true);
updateButtons();
discoverWsUrl().then(() => {
  ui.wsUrl.value = state.wsUrl;
  connect();
});
