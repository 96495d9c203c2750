// The voice library: list (GET /v1/voices), create (POST /v1/voices with a
// voice.v1.VoiceSpec), delete (DELETE /v1/voices/{name}); the RVC voices to convert
// into (GET /v1/rvc-voices); and the reference clip, uploaded or recorded.

import { $, api, clearError, say, showError } from "./api.js";
import { decodeClip, float32Base64 } from "./audio.js";

// A reference clip is sent as 32-bit float mono at this rate (what Spark TTS reads).
export const CLIP_RATE = 16000;
// The longest clip the page sends (its JSON is a third larger than its PCM).
const MAX_CLIP_SECONDS = 60;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

let voices = [];
let clip = null;  // {samples: Float32Array at CLIP_RATE, url: the preview's blob: URL}
let recorder = null;
let rvcLoaded = false;

export function findVoice(name) {
  return voices.find((voice) => voice.name === name) || null;
}

function describeVoice() {
  const voice = findVoice($("voice").value);
  if (!voice) { say("voice-info", ""); return; }
  const engine = (voice.engine || "ENGINE_UNSPECIFIED").replace("ENGINE_", "").toLowerCase();
  const description = (voice.description || "No description").replace(/[.\s]*$/, ".");
  const parts = [description, `Engine: ${engine === "unspecified" ? "the service's default" : engine}.`];
  parts.push(voice.skip_rvc ? "No voice conversion." : `RVC voice: ${voice.rvc_model || "the default"}.`);
  if (voice.aliases && voice.aliases.length) parts.push(`Also called: ${voice.aliases.join(", ")}.`);
  say("voice-info", parts.join(" "));
}

// Fills the voice menu; ``select`` (else the current choice, else the default voice)
// stays chosen. A voice with a problem is listed, not selectable.
export async function loadVoices(select) {
  const body = await (await api("GET", "v1/voices")).json();
  voices = body.voices || [];
  const menu = $("voice");
  const keep = select || menu.value;
  menu.replaceChildren();
  for (const voice of voices) {
    let label = voice.name + (voice.is_default ? " (default)" : "");
    if (voice.problem) label += ` (unusable: ${voice.problem})`;
    const option = new Option(label, voice.name);
    option.disabled = Boolean(voice.problem);
    menu.append(option);
  }
  const usable = voices.filter((voice) => !voice.problem);
  const chosen = usable.find((v) => v.name === keep) || usable.find((v) => v.is_default) || usable[0];
  menu.disabled = !chosen;
  if (chosen) menu.value = chosen.name;
  $("speak").disabled = $("delete-voice").disabled = !chosen;
  menu.dataset.loaded = String(voices.length);
  describeVoice();
}

async function loadRvcVoices() {
  const body = await (await api("GET", "v1/rvc-voices")).json();
  const menu = $("new-rvc");
  const keep = menu.value;
  const fallback = body.default_model ? `The service's default (${body.default_model})` : "The service's default";
  menu.replaceChildren(new Option(fallback, ""));
  for (const model of body.models || []) {
    const option = new Option(model.name + (model.problem ? ` (unusable: ${model.problem})` : ""), model.name);
    option.disabled = Boolean(model.problem);
    menu.append(option);
  }
  menu.value = [...menu.options].some((option) => option.value === keep) ? keep : "";
  rvcLoaded = true;
}

async function deleteVoice() {
  const name = $("voice").value;
  if (!name) return;
  clearError();
  say("speak-status", `Deleting the voice ${name}…`);
  try {
    await api("DELETE", `v1/voices/${encodeURIComponent(name)}`);
    say("speak-status", `Deleted the voice ${name}.`);
    await loadVoices();
  } catch (error) {
    say("speak-status", `Could not delete the voice ${name}.`);
    showError(error);
  }
}

// -- the reference clip ----------------------------------------------------------

async function useClip(blob, label) {
  let samples;
  try {
    samples = await decodeClip(await blob.arrayBuffer(), CLIP_RATE);
  } catch (error) {
    throw new Error(`Cannot decode the clip (${label}): ${error.message || error}`);
  }
  const seconds = samples.length / CLIP_RATE;
  if (!samples.length) throw new Error(`The clip (${label}) holds no audio.`);
  if (seconds > MAX_CLIP_SECONDS) {
    throw new Error(`The clip is ${seconds.toFixed(1)} s long; at most ${MAX_CLIP_SECONDS} s, please.`);
  }
  if (clip) URL.revokeObjectURL(clip.url);
  clip = { samples, url: URL.createObjectURL(blob) };
  $("clip-preview").src = clip.url;
  $("clip-preview").hidden = false;
  $("clip-info").dataset.seconds = seconds.toFixed(3);
  say("clip-info", `Clip ready: ${seconds.toFixed(2)} s (${label}), sent as 16 kHz mono.`);
}

async function onClipFile() {
  const file = $("clip-file").files[0];
  if (!file) return;
  clearError();
  say("clip-info", `Reading ${file.name}…`);
  try {
    await useClip(file, file.name);
  } catch (error) {
    say("clip-info", "No clip.");
    showError(error);
  }
}

async function startRecording() {
  clearError();
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    showError("Recording needs a secure page (HTTPS or localhost) and MediaRecorder.");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    showError(`Cannot use the microphone: ${error.message || error.name}`);
    return;
  }
  const parts = [];
  const started = performance.now();
  recorder = new MediaRecorder(stream);
  recorder.addEventListener("dataavailable", (event) => {
    if (event.data.size) parts.push(event.data);
    if (recorder && recorder.state === "recording") {
      const seconds = (performance.now() - started) / 1000;
      $("clip-info").dataset.recordedSeconds = seconds.toFixed(2);
      say("clip-info", `Recording… ${seconds.toFixed(1)} s. Press Stop recording when done.`);
    }
  });
  recorder.addEventListener("stop", () => {
    stream.getTracks().forEach((track) => track.stop());
    const blob = new Blob(parts, { type: recorder.mimeType });
    recorder = null;
    $("record-start").disabled = false;
    useClip(blob, "recorded").catch((error) => { say("clip-info", "No clip."); showError(error); });
  });
  delete $("clip-info").dataset.recordedSeconds;
  recorder.start(250);  // a piece every 250 ms: the time recorded shows as it grows
  $("record-start").disabled = true;
  $("record-stop").disabled = false;
  say("clip-info", "Recording… press Stop recording when done.");
}

function stopRecording() {
  $("record-stop").disabled = true;
  if (recorder) {
    say("clip-info", "Decoding the recording…");
    recorder.stop();
  }
}

// -- creating a voice ------------------------------------------------------------

function number(id, label) {
  const input = $(id);
  if (!input.checkValidity() || input.value === "") {
    input.focus();
    throw new Error(`${label}: ${input.validationMessage || "a number, please"}`);
  }
  return Number(input.value);
}

function voiceSpec() {
  const name = $("new-name").value.trim();
  if (!NAME.test(name)) {
    $("new-name").focus();
    throw new Error("Name: 1 to 64 letters, digits, dots, dashes or underscores, not starting with a symbol.");
  }
  if (!clip) throw new Error("Upload or record a reference clip first.");
  const spec = {
    name,
    description: $("new-description").value.trim(),
    reference: {
      audio: {
        pcm: float32Base64(clip.samples),
        sample_rate: CLIP_RATE,
        sample_format: "SAMPLE_FORMAT_PCM_F32LE",
        channels: 1,
      },
      transcript: $("new-transcript").value.trim(),
    },
    conversion: {
      model: $("new-rvc").value,
      pitch_shift: number("new-pitch", "Pitch shift"),
      f0_method: $("new-f0").value,
      index_rate: number("new-index-rate", "Index rate"),
    },
    skip_rvc: $("new-skip-rvc").checked,
  };
  if ($("new-seed").value !== "") spec.sampling = { seed: number("new-seed", "Seed") };
  return spec;
}

async function createVoice(event) {
  event.preventDefault();
  clearError();
  let spec;
  try {
    spec = voiceSpec();
  } catch (error) {
    showError(error);
    return;
  }
  $("create-voice").disabled = true;
  say("create-status", `Creating the voice ${spec.name}…`);
  try {
    const voice = await (await api("POST", "v1/voices", spec)).json();
    say("create-status", `Created the voice ${voice.name || spec.name}.`);
    await loadVoices(voice.name || spec.name);
  } catch (error) {
    say("create-status", `Could not create the voice ${spec.name}.`);
    showError(error);
  } finally {
    $("create-voice").disabled = false;
  }
}

export function setUpVoices() {
  $("voice").addEventListener("change", describeVoice);
  $("delete-voice").addEventListener("click", deleteVoice);
  $("clip-file").addEventListener("change", onClipFile);
  $("record-start").addEventListener("click", startRecording);
  $("record-stop").addEventListener("click", stopRecording);
  $("create-form").addEventListener("submit", createVoice);
  // The RVC voices are asked for when the form is first opened.
  $("create-panel").addEventListener("toggle", () => {
    if ($("create-panel").open && !rvcLoaded) loadRvcVoices().catch(showError);
  });
}
