// ONNX Runtime (CPU, the library inside npm's onnxruntime-node) timing for scripts/bench_compare.py.
// Usage: node peers/ort_bench.js MODEL.onnx C H W BATCHES THREADS SECONDS
//   BATCHES: comma-separated, e.g. 1,128. Prints one JSON line: {"batch": img/s, ...} and the peak RSS.
const path = require('path');
const ort = require(path.join(__dirname, 'node_modules', 'onnxruntime-node'));
(async () => {
  const [file, C, H, W, batches, threads, secs] = process.argv.slice(2);
  const s = await ort.InferenceSession.create(file, {
    intraOpNumThreads: +threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential',
  });
  const out = {};
  for (const b of batches.split(',').map(Number)) {
    const x = new ort.Tensor('float32', Float32Array.from({ length: b * C * H * W }, () => Math.random() - 0.5), [b, +C, +H, +W]);
    const feeds = { [s.inputNames[0]]: x };
    for (let i = 0; i < 3; i++) await s.run(feeds);
    let n = 0;
    const t0 = process.hrtime.bigint();
    let dt = 0;
    do { await s.run(feeds); n++; dt = Number(process.hrtime.bigint() - t0) / 1e9; } while (dt < +secs || n < 3);
    out[b] = n * b / dt;
  }
  console.log(JSON.stringify({ img_per_s: out, max_rss_mb: process.resourceUsage().maxRSS / 1024 }));
})().catch((e) => { console.error('ort_bench: ' + e.message); process.exit(1); });
