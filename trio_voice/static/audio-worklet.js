// Microphone capture for trio-voice: Float32 input (any channel count, the context's rate) in,
// PCM16LE mono frames at `targetRate` out, posted to the main thread as transferable ArrayBuffers.
//
// processorOptions: { targetRate: Hz of the frames (default: the context's rate),
//                     frameMs: milliseconds per posted frame (default 40) }.
// Messages posted: { pcm: ArrayBuffer (Int16 little-endian on every platform browsers run on), level: 0..1 peak }.
// The main thread posts "stop" to end processing.

class Pcm16CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetRate = opts.targetRate || sampleRate;
    // Input samples per output sample: 1 means no resampling.
    this.ratio = sampleRate / this.targetRate;
    this.frameSamples = Math.max(1, Math.round((this.targetRate * (opts.frameMs || 40)) / 1000));
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.peak = 0;
    // Input not yet consumed by the resampler, and the fractional read position within it.
    this.pending = new Float32Array(0);
    this.position = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === "stop") this.running = false;
    };
  }

  process(inputs) {
    if (!this.running) return false;
    const channels = inputs[0];
    if (!channels || channels.length === 0 || channels[0].length === 0) return true;
    const mono = downmix(channels);
    if (this.ratio === 1) {
      for (let i = 0; i < mono.length; i++) this.push(mono[i]);
    } else {
      this.resample(mono);
    }
    return true;
  }

  // Downsampling averages the input samples each output sample covers (a box filter, enough against
  // aliasing for speech recognition); upsampling interpolates linearly.
  resample(mono) {
    const buf = new Float32Array(this.pending.length + mono.length);
    buf.set(this.pending, 0);
    buf.set(mono, this.pending.length);
    const ratio = this.ratio;
    let pos = this.position;
    if (ratio > 1) {
      while (pos + ratio <= buf.length) {
        const from = Math.floor(pos);
        const to = Math.max(from + 1, Math.floor(pos + ratio));
        let sum = 0;
        for (let i = from; i < to; i++) sum += buf[i];
        this.push(sum / (to - from));
        pos += ratio;
      }
    } else {
      while (Math.floor(pos) + 1 < buf.length) {
        const i = Math.floor(pos);
        const frac = pos - i;
        this.push(buf[i] + (buf[i + 1] - buf[i]) * frac);
        pos += ratio;
      }
    }
    const consumed = Math.min(Math.floor(pos), buf.length);
    this.pending = buf.slice(consumed);
    this.position = pos - consumed;
  }

  push(sample) {
    const s = sample > 1 ? 1 : sample < -1 ? -1 : sample;
    const magnitude = s < 0 ? -s : s;
    if (magnitude > this.peak) this.peak = magnitude;
    this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.filled === this.frameSamples) {
      const pcm = this.frame.buffer;
      this.port.postMessage({ pcm, level: this.peak }, [pcm]);
      this.frame = new Int16Array(this.frameSamples);
      this.filled = 0;
      this.peak = 0;
    }
  }
}

function downmix(channels) {
  if (channels.length === 1) return channels[0];
  const n = channels[0].length;
  const mono = new Float32Array(n);
  for (const channel of channels) {
    for (let i = 0; i < n; i++) mono[i] += channel[i];
  }
  for (let i = 0; i < n; i++) mono[i] /= channels.length;
  return mono;
}

registerProcessor("pcm16-capture", Pcm16CaptureProcessor);
