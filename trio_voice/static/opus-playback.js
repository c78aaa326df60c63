// Reply audio in Ogg/Opus (output_audio_format "opus", protocol/voice.md "Compressed audio"): the
// reply's bytes arrive spread over its response.audio.delta events; this reads the Ogg pages as they
// complete, hands each Opus packet to the browser's own decoder (WebCodecs AudioDecoder) and gives
// the decoded samples to the page's player. One OggOpusStream per reply.

export const opusPlaybackSupported = typeof window.AudioDecoder === "function";

const PACKET_US = 20000; // the server sends 20 ms packets

export class OggOpusStream {
  /**
   * @param {(samples: Float32Array, rate: number) => void} onSamples decoded mono audio, in order
   * @param {(error: Error) => void} onError
   */
  constructor(onSamples, onError) {
    this.onSamples = onSamples;
    this.onError = onError;
    this.buffer = new Uint8Array(0);
    this.carry = []; // the parts of a packet that continues on the next page
    this.packets = 0;
    this.decoder = null;
    this.timestamp = 0;
    this.skip = 0; // samples at the start that are the encoder's look-ahead (OpusHead pre-skip)
    this.bytes = 0;
  }

  push(bytes) {
    this.bytes += bytes.length;
    const joined = new Uint8Array(this.buffer.length + bytes.length);
    joined.set(this.buffer);
    joined.set(bytes, this.buffer.length);
    this.buffer = joined;
    this.readPages();
  }

  readPages() {
    for (;;) {
      const b = this.buffer;
      if (b.length < 27) return;
      if (b[0] !== 0x4f || b[1] !== 0x67 || b[2] !== 0x67 || b[3] !== 0x53) {
        this.onError(new Error("reply audio is not an Ogg stream"));
        this.buffer = new Uint8Array(0);
        return;
      }
      const segments = b[26];
      if (b.length < 27 + segments) return;
      let size = 27 + segments;
      for (let i = 0; i < segments; i++) size += b[27 + i];
      if (b.length < size) return;
      let offset = 27 + segments;
      for (let i = 0; i < segments; i++) {
        const length = b[27 + i];
        this.carry.push(b.slice(offset, offset + length));
        offset += length;
        if (length < 255) this.packet(concat(this.carry.splice(0)));
      }
      this.buffer = b.slice(size);
    }
  }

  packet(data) {
    const index = this.packets++;
    if (index === 0) {
      // OpusHead: channels at byte 9, pre-skip (48 kHz samples) at bytes 10-11.
      this.skip = data[10] | (data[11] << 8);
      this.decoder = new AudioDecoder({
        output: (audio) => this.output(audio),
        error: (error) => this.onError(error),
      });
      this.decoder.configure({ codec: "opus", sampleRate: 48000, numberOfChannels: data[9], description: data });
      return;
    }
    if (index === 1 || !this.decoder || this.decoder.state !== "configured") return; // OpusTags
    this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: this.timestamp, data }));
    this.timestamp += PACKET_US;
  }

  output(audio) {
    const samples = new Float32Array(audio.numberOfFrames);
    audio.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
    const rate = audio.sampleRate;
    audio.close();
    let start = 0;
    if (this.skip > 0) {
      start = Math.min(this.skip, samples.length);
      this.skip -= start;
    }
    if (start < samples.length) this.onSamples(samples.subarray(start), rate);
  }

  close() {
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
  }
}

function concat(parts) {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
