// An eenn model exported with its exits (scripts/eenn_export.py) run by ONNX Runtime (npm's onnxruntime-node),
// with real early exits: each input runs segment after segment and stops at the first exit whose score reaches
// its threshold (the policy in the export's manifest); at batch B the inputs that exit are dropped before the
// next segment, as eenn compacts its batches.
//
//   node peers/onnx_exits.js DIR IMAGES-idx3-ubyte.gz [--limit N] [--batch B] [--threads T]
//       prints one JSON line per input: class, exit (0-based), confidence, and the answering exit's logits
//   node peers/onnx_exits.js DIR IMAGES-idx3-ubyte.gz --bench [--limit N] [--seconds S] [--threads T]
//       img/s at batch 1 and 128 with the exits, and of the dense network (dense.onnx), in one run
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const ort = require(path.join(__dirname, 'node_modules', 'onnxruntime-node'));

function fail(msg) { console.error('onnx_exits: ' + msg); process.exit(1); }

// IDX images (gzipped or not) as uint8 N x H x W
function readIdx(file) {
  let b = fs.readFileSync(file);
  if (b[0] === 0x1f && b[1] === 0x8b) b = zlib.gunzipSync(b);
  if (b.readUInt32BE(0) !== 0x803) fail(file + ': not an IDX image file');
  const n = b.readUInt32BE(4), h = b.readUInt32BE(8), w = b.readUInt32BE(12);
  return { n, h, w, px: b.subarray(16, 16 + n * h * w) };
}

// the exit's score of one logit row, as eenn computes it (policy.c): max probability, 1 - normalised entropy,
// or the margin between the two largest probabilities, at the exit's temperature
function score(kind, z, t) {
  let mx = -Infinity, arg = 0;
  for (let j = 0; j < z.length; j++) if (z[j] > mx) { mx = z[j]; arg = j; }
  const p = new Float64Array(z.length);
  let sum = 0;
  for (let j = 0; j < z.length; j++) { p[j] = Math.exp((z[j] - mx) / t); sum += p[j]; }
  for (let j = 0; j < z.length; j++) p[j] /= sum;
  const conf = p[arg];
  if (kind === 'maxprob') return { s: conf, arg, conf };
  if (kind === 'entropy') {
    let hh = 0;
    for (const q of p) if (q > 0) hh -= q * Math.log(q);
    return { s: 1 - hh / Math.log(z.length), arg, conf };
  }
  let second = 0;
  for (let j = 0; j < p.length; j++) if (j !== arg && p[j] > second) second = p[j];
  return { s: conf - second, arg, conf };
}

async function main() {
  const args = process.argv.slice(2);
  const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
  const [dir, images] = args;
  if (!dir || !images) fail('usage: node peers/onnx_exits.js DIR IMAGES-idx3-ubyte.gz [--limit N] [--batch B] [--bench]');
  const m = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const threads = +opt('--threads', 1);
  const so = { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential' };
  const segs = [];
  for (const f of m.segments) segs.push(await ort.InferenceSession.create(path.join(dir, f), so));
  const img = readIdx(images);
  const [C, H, W] = m.input;
  if (C !== 1 || H !== img.h || W !== img.w) fail(`${images}: ${img.h}x${img.w} images, the model takes ${C}x${H}x${W}`);
  const limit = Math.min(+opt('--limit', img.n), img.n);
  const per = H * W;
  // normalised as eenn's ee_dataset_batch: pixel * (1 / (255 std)) - mean / std, in float
  const scale = Math.fround(1 / Math.fround(255 * Math.fround(m.std[0]))), shift = Math.fround(-Math.fround(m.mean[0]) / Math.fround(m.std[0]));
  const input = (idx) => {
    const x = new Float32Array(idx.length * per);
    idx.forEach((k, r) => { for (let i = 0; i < per; i++) x[r * per + i] = Math.fround(Math.fround(img.px[k * per + i] * scale) + shift); });
    return x;
  };
  const pol = m.policy, H1 = segs.length;

  // one batch of image indices through the segments; answers[k] = {cls, exit, conf, logits}
  async function run(idx, answers) {
    let live = idx.map((k, r) => ({ k, r }));
    let x = new ort.Tensor('float32', input(idx), [idx.length, C, H, W]);
    for (let h = 0; h < H1 && live.length; h++) {
      const out = await segs[h].run({ x });
      const z = out.logits.data, K = out.logits.dims[1];
      const keep = [];
      live.forEach((e, r) => {
        const row = Array.from(z.subarray(r * K, r * K + K));
        const sc = score(pol.score, row, pol.temperatures[h] || 1);
        if (h === H1 - 1 || sc.s >= pol.thresholds[h]) answers[e.k] = { cls: sc.arg, exit: h, conf: sc.conf, logits: row };
        else keep.push(r);
      });
      if (h === H1 - 1 || !keep.length) break;
      const nx = out.next, sz = nx.data.length / nx.dims[0];
      const data = new Float32Array(keep.length * sz);
      keep.forEach((r, i) => data.set(nx.data.subarray(r * sz, (r + 1) * sz), i * sz));
      x = new ort.Tensor('float32', data, [keep.length, ...nx.dims.slice(1)]);
      live = keep.map((r) => live[r]);
    }
  }

  if (!args.includes('--bench')) {
    const B = +opt('--batch', 1), answers = {};
    for (let i = 0; i < limit; i += B) {
      const idx = [];
      for (let k = i; k < Math.min(limit, i + B); k++) idx.push(k);
      await run(idx, answers);
    }
    for (let k = 0; k < limit; k++) {
      const a = answers[k];
      console.log(JSON.stringify({ index: k, class: a.cls, exit: a.exit, confidence: a.conf, logits: a.logits }));
    }
    return;
  }
  // --bench: exits at batch 1 and 128, and the dense network, in one run
  const secs = +opt('--seconds', 3);
  const dense = await ort.InferenceSession.create(path.join(dir, m.dense), so);
  const timeIt = async (fn) => {
    for (let w = 0; w < 2; w++) await fn(0);
    let n = 0, i = 0;
    const t0 = process.hrtime.bigint();
    let dt = 0;
    do { n += await fn(i++); dt = Number(process.hrtime.bigint() - t0) / 1e9; } while (dt < secs);
    return n / dt;
  };
  const res = {};
  for (const B of [1, 128]) {
    const batchAt = (i) => { const idx = []; for (let k = 0; k < B; k++) idx.push((i * B + k) % limit); return idx; };
    res[`exits_b${B}`] = await timeIt(async (i) => { const idx = batchAt(i); await run(idx, {}); return idx.length; });
    res[`dense_b${B}`] = await timeIt(async (i) => {
      const idx = batchAt(i);
      await dense.run({ x: new ort.Tensor('float32', input(idx), [idx.length, C, H, W]) });
      return idx.length;
    });
    res[`speedup_b${B}`] = res[`exits_b${B}`] / res[`dense_b${B}`];
  }
  console.log(JSON.stringify({ threads, images: limit, img_per_s: res }));
}
main().catch((e) => fail(e.message));
