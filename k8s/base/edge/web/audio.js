// Audio as the API carries it (base64 PCM), as the page plays and saves it, and the
// streamed JSON array the edge prints for a server stream. No DOM here.

export function base64Bytes(text) {
  if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export function bytesBase64(bytes) {
  if (bytes.toBase64) return bytes.toBase64();
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

// voice.v1.Audio as JSON -> one Float32Array per channel (S16LE unless it says F32LE).
export function decodePcm(audio) {
  const bytes = base64Bytes(audio.pcm || "");
  const channels = audio.channels || 1;
  const float = audio.sample_format === "SAMPLE_FORMAT_PCM_F32LE";
  const width = float ? 4 : 2;
  const frames = Math.floor(bytes.byteLength / (width * channels));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const data = Array.from({ length: channels }, () => new Float32Array(frames));
  for (let i = 0, at = 0; i < frames; i++) {
    for (let c = 0; c < channels; c++, at += width) {
      data[c][i] = float ? view.getFloat32(at, true) : view.getInt16(at, true) / 32768;
    }
  }
  return { data, frames, rate: audio.sample_rate };
}

// 16-bit PCM WAV of per-channel Float32Arrays.
export function wavBlob(data, rate) {
  const channels = data.length;
  const frames = channels ? data[0].length : 0;
  const bytes = frames * channels * 2;
  const view = new DataView(new ArrayBuffer(44 + bytes));
  const text = (at, s) => [...s].forEach((ch, i) => view.setUint8(at + i, ch.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + bytes, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true);
  view.setUint16(22, channels, true); view.setUint32(24, rate, true);
  view.setUint32(28, rate * channels * 2, true); view.setUint16(32, channels * 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, bytes, true);
  for (let i = 0, at = 44; i < frames; i++) {
    for (let c = 0; c < channels; c++, at += 2) {
      const s = Math.max(-1, Math.min(1, data[c][i]));
      view.setInt16(at, s < 0 ? s * 32768 : s * 32767, true);
    }
  }
  return new Blob([view.buffer], { type: "audio/wav" });
}

// The edge prints a server stream as one JSON array, each message as it comes:
// "[{...}", ",{...}", ..., "]". push() takes text as it arrives and hands on each
// complete top-level element; strings are skipped whole (base64 audio is most of it).
export class JsonArrayReader {
  constructor(onElement) {
    this.onElement = onElement;
    this.text = "";
    this.at = 0;
    this.depth = 0;
    this.start = 0;
    this.inString = false;
    this.opened = false;
    this.closed = false;
  }

  push(chunk) {
    const s = (this.text += chunk);
    let i = this.at;
    while (i < s.length) {
      if (this.inString) {
        const quote = s.indexOf('"', i);
        if (quote < 0) { i = s.length; break; }
        let slashes = 0;
        for (let j = quote - 1; s.charCodeAt(j) === 92; j--) slashes++;
        if (slashes % 2 === 0) this.inString = false;
        i = quote + 1;
        continue;
      }
      const c = s[i];
      if (c === '"') {
        this.inString = true;
      } else if (c === "[" && this.depth === 0 && !this.opened) {
        this.opened = true;
      } else if (c === "{" || c === "[") {
        if (this.depth++ === 0) this.start = i;
      } else if (c === "}" || c === "]") {
        if (this.depth === 0) {
          this.closed = true;
        } else if (--this.depth === 0) {
          this.onElement(JSON.parse(s.slice(this.start, i + 1)));
        }
      }
      i++;
    }
    // Keep the element being read (or nothing) for the next chunk.
    const keep = this.depth > 0 ? this.start : i;
    this.text = s.slice(keep);
    this.at = i - keep;
    this.start -= keep;
  }
}

// A clip (any format the browser decodes) as mono float32 samples at ``rate``: an
// offline context decodes it at its own rate, then the channels are averaged.
export async function decodeClip(bytes, rate) {
  const context = new OfflineAudioContext(1, 1, rate);
  const buffer = await context.decodeAudioData(bytes);
  const mono = new Float32Array(buffer.length);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const channel = buffer.getChannelData(c);
    for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / buffer.numberOfChannels;
  }
  return mono;
}

// Float32 samples as the API's pcm: little-endian bytes, base64.
export function float32Base64(samples) {
  const view = new DataView(new ArrayBuffer(samples.length * 4));
  samples.forEach((sample, i) => view.setFloat32(i * 4, sample, true));
  return bytesBase64(new Uint8Array(view.buffer));
}
