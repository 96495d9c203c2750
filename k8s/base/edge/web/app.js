// The voice playground: speak a text in a voice of the library, streamed and played as
// it arrives, with its timings and downloads. Plain browser JavaScript against the
// public REST API of the origin that served the page (edge/web.py); no framework.

import { $, ApiError, api, clearError, say, showError } from "./api.js";
import { JsonArrayReader, decodePcm, wavBlob } from "./audio.js";
import { loadVoices, setUpVoices } from "./voices.js";

const state = { audio: null, run: null, runs: 0, links: {} };

// What the last Speak did, for anyone watching (the browser test reads it), plain values
// (publish): state ("running", "done", "error" or "stopped") and error; firstChunkMs,
// from the request sent to its first audio chunk decoded and scheduled; firstAudioStartMs,
// to the moment that chunk is scheduled to start playing; responseEndMs, to the end of
// the response; chunks (audio chunks scheduled), audioSeconds, sampleRate; and of the
// last message, timing (tts, rvc, first_audio_seconds, total_seconds), engine, rvcApplied.
window.playgroundLastRun = null;

function audioContext() {
  if (!state.audio) state.audio = new AudioContext();
  if (state.audio.state === "suspended") state.audio.resume();
  return state.audio;
}

function randomSeed() {
  return Math.floor(Math.random() * 2 ** 31);
}

function formatSeconds(seconds) {
  return typeof seconds === "number" ? `${seconds.toFixed(3)} s` : "–";
}

function stageText(stage) {
  if (!stage) return "–";
  return `${formatSeconds(stage.compute_seconds)} / ${formatSeconds(stage.audio_seconds)}`;
}

function showRun(run) {
  $("results").hidden = false;
  say("t-first-page", run.firstChunkMs === null ? "–" : `${Math.round(run.firstChunkMs)} ms`);
  say("t-end-page", run.responseEndMs === null ? "–" : `${Math.round(run.responseEndMs)} ms`);
  say("t-chunks", String(run.chunks));
  say("t-audio", formatSeconds(run.audioSeconds));
  const timing = run.timing || {};
  say("t-first-server", formatSeconds(timing.first_audio_seconds));
  say("t-total-server", formatSeconds(timing.total_seconds));
  say("t-tts", stageText(timing.tts));
  say("t-rvc", stageText(timing.rvc));
  say("t-engine", run.engine ? run.engine.replace("ENGINE_", "").toLowerCase() : "–");
  say("t-rvc-applied", run.chunks ? (run.rvcApplied ? "applied" : "skipped") : "–");
}

// What the page shows and tests read of a run: plain values only.
function publish(run) {
  window.playgroundLastRun = {
    id: run.id, text: run.text, voice: run.voice, seed: run.seed,
    state: run.state, error: run.error,
    firstChunkMs: run.firstChunkMs, firstAudioStartMs: run.firstAudioStartMs,
    responseEndMs: run.responseEndMs, chunks: run.chunks,
    audioSeconds: run.audioSeconds, sampleRate: run.sampleRate,
    timing: run.timing, engine: run.engine, rvcApplied: run.rvcApplied,
  };
  showRun(run);
}

function playbackEnded(run) {
  run.playing -= 1;
  if (run.playing === 0 && run.state !== "running") $("stop").disabled = true;
}

// One streamed message: its audio is scheduled right after what is scheduled already.
function onMessage(run, message) {
  if (!message.chunk && (message.error || message.message)) {
    const error = message.error || message;
    throw new ApiError(error.code || 500, error.status || "", error.message);
  }
  if (message.engine && message.engine !== "ENGINE_UNSPECIFIED") run.engine = message.engine;
  if (run.chunks === 0) run.rvcApplied = Boolean(message.rvc_applied);
  if (message.timing) run.timing = message.timing;
  const audio = message.chunk && message.chunk.audio;
  const decoded = audio && audio.pcm ? decodePcm(audio) : null;
  if (!decoded || !decoded.frames) { publish(run); return; }
  if (run.sampleRate && decoded.rate !== run.sampleRate) {
    throw new Error(`the sample rate changed mid-stream (${run.sampleRate} to ${decoded.rate} Hz)`);
  }
  run.sampleRate = decoded.rate;
  run.pcm.push(decoded.data);
  const context = audioContext();
  const buffer = context.createBuffer(decoded.data.length, decoded.frames, decoded.rate);
  decoded.data.forEach((channel, c) => buffer.copyToChannel(channel, c));
  const source = context.createBufferSource();
  source.buffer = buffer;
  source.connect(context.destination);
  source.addEventListener("ended", () => playbackEnded(run));
  const at = Math.max(context.currentTime + 0.05, run.playhead);
  source.start(at);
  run.sources.push(source);
  run.playing += 1;
  run.playhead = at + buffer.duration;
  run.audioSeconds += buffer.duration;
  run.chunks += 1;
  if (run.firstChunkMs === null) {
    run.firstChunkMs = performance.now() - run.sentAt;
    run.firstAudioStartMs = run.firstChunkMs + (at - context.currentTime) * 1000;
  }
  publish(run);
}

async function readStream(run, response) {
  const reader = new JsonArrayReader((message) => onMessage(run, message));
  const decoder = new TextDecoder();
  const body = response.body.getReader();
  for (;;) {
    let part;
    try {
      part = await body.read();
    } catch (error) {
      // A stream the server cuts (a fault part way) ends without its "]": the browser
      // reports a network error.
      if (run.abort.signal.aborted) throw error;
      throw new Error(`the response broke off after ${run.chunks} chunks (${error.message})`);
    }
    if (part.done) break;
    reader.push(decoder.decode(part.value, { stream: true }));
  }
  reader.push(decoder.decode());
  run.responseEndMs = performance.now() - run.sentAt;
  if (!reader.closed) throw new Error("the stream ended before its last message");
  if (!run.chunks) throw new Error("the response held no audio");
}

async function speak() {
  const voice = $("voice").value;
  const text = $("text").value.trim();
  clearError();
  if (!text) { showError("Type something to say."); $("text").focus(); return; }
  if (!$("seed").checkValidity()) { showError(`Seed: ${$("seed").validationMessage}`); return; }
  if ($("seed").value === "") $("seed").value = String(randomSeed());
  const seed = Number($("seed").value);
  stopPlayback();
  $("download-links").replaceChildren();
  audioContext();
  const run = {
    id: ++state.runs, text, voice, seed, state: "running", error: null,
    sentAt: performance.now(), firstChunkMs: null, firstAudioStartMs: null, responseEndMs: null,
    chunks: 0, audioSeconds: 0, sampleRate: 0, timing: null, engine: "", rvcApplied: false,
    pcm: [], sources: [], playing: 0, playhead: 0, abort: new AbortController(),
  };
  state.run = run;
  publish(run);
  $("speak").disabled = true;
  $("stop").disabled = false;
  say("speak-status", `Speaking with the voice ${voice}…`);
  try {
    const response = await api("POST", "v1/synthesize:stream",
      { text, voice, sampling: { seed } }, run.abort.signal);
    await readStream(run, response);
    run.state = "done";
    say("speak-status", `Done: ${run.chunks} chunks, ${run.audioSeconds.toFixed(2)} s of audio.`);
  } catch (error) {
    if (run.responseEndMs === null) run.responseEndMs = performance.now() - run.sentAt;
    run.state = run.abort.signal.aborted ? "stopped" : "error";
    run.error = error.message || String(error);
    run.abort.abort();
    if (run.state === "error") {
      say("speak-status", "Speaking failed.");
      showError(error);
    } else {
      say("speak-status", "Stopped.");
    }
  } finally {
    publish(run);
    $("speak").disabled = !$("voice").value;
    $("stop").disabled = run.playing === 0;
  }
}

function stopPlayback() {
  const run = state.run;
  if (!run) return;
  run.abort.abort();
  for (const source of run.sources) {
    try { source.stop(); } catch (_) { /* never started */ }
  }
  run.sources = [];
}

// -- downloads -------------------------------------------------------------------

function joined(chunks) {
  const channels = chunks.length ? chunks[0].length : 0;
  return Array.from({ length: channels }, (_, c) => {
    const out = new Float32Array(chunks.reduce((n, chunk) => n + chunk[c].length, 0));
    let at = 0;
    for (const chunk of chunks) { out.set(chunk[c], at); at += chunk[c].length; }
    return out;
  });
}

function offer(blob, format, detail) {
  const name = `speech-${state.run.id}.${format}`;
  if (state.links[format]) URL.revokeObjectURL(state.links[format].href);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.textContent = name;
  link.dataset.format = format;
  link.dataset.bytes = String(blob.size);
  const item = document.createElement("li");
  item.append(link, ` (${Math.ceil(blob.size / 1024)} KiB${detail ? ", " + detail : ""})`);
  if (state.links[format]) state.links[format].closest("li").remove();
  state.links[format] = link;
  $("download-links").append(item);
  link.click();
}

// WAV from the audio received; the other formats from OpenAI's speech route, spoken
// again with the run's text, voice and seed (at its rate, where the format allows).
async function download(format, button) {
  const run = state.run;
  clearError();
  if (!run || run.state !== "done") { showError("Speak first: the downloads are of the last speech."); return; }
  button.disabled = true;
  say("speak-status", `Preparing ${format.toUpperCase()}…`);
  try {
    if (format === "wav") {
      offer(wavBlob(joined(run.pcm), run.sampleRate), format, `16-bit at ${run.sampleRate} Hz`);
    } else {
      const request = { model: "tts-1", input: run.text, voice: run.voice,
                        response_format: format, seed: run.seed };
      if (run.sampleRate >= 8000 && run.sampleRate <= 48000) request.sample_rate = run.sampleRate;
      const response = await api("POST", "v1/audio/speech", request);
      const rate = response.headers.get("x-sample-rate");
      const detail = format === "pcm" ? `16-bit mono${rate ? ` at ${rate} Hz` : ""}` : "";
      offer(await response.blob(), format, detail);
    }
    say("speak-status", `${format.toUpperCase()} ready.`);
  } catch (error) {
    say("speak-status", `Could not make the ${format.toUpperCase()} file.`);
    showError(error);
  } finally {
    button.disabled = false;
  }
}

// -- start -----------------------------------------------------------------------

async function reloadVoices() {
  try {
    await loadVoices();
  } catch (error) {
    showError(error);
  }
}

function start() {
  setUpVoices();
  $("speak").addEventListener("click", speak);
  $("stop").addEventListener("click", () => {
    stopPlayback();
    $("stop").disabled = true;
  });
  $("refresh-voices").addEventListener("click", reloadVoices);
  $("error-close").addEventListener("click", clearError);
  for (const button of $("downloads").querySelectorAll("button[data-format]")) {
    button.addEventListener("click", () => download(button.dataset.format, button));
  }
  $("seed").value = String(randomSeed());
  reloadVoices().finally(() => { document.body.dataset.ready = "true"; });
}

start();
