#!/usr/bin/env node
// peer_ort.js: the ONNX Runtime peer of xbench (cmd/xbench).
//
//   node peer_ort.js probe     print {"peer": "ort", "version": ...} if onnxruntime-node loads
//   node peer_ort.js run DIR   time DIR/model.onnx on the inputs named in DIR/manifest.json,
//                              write DIR/ort.out.f32 and DIR/ort.result.json
//
// DIR/model.onnx is the layer with xbench's weights, exported from PyTorch by
// peer_torch.py export. The session runs on the CPU execution provider with
// intraOpNumThreads = threads, one inter-op thread, sequential execution and
// every graph optimisation; `warmup` untimed runs, then the median of
// `repeats` timed runs (wall time around each awaited session.run).
//
// onnxruntime-node is looked up next to this script, in peer/node_modules
// (scripts/peers-setup.sh installs it there), then on Node's usual path.
'use strict';

const fs = require('fs');
const path = require('path');

function loadORT() {
  const where = [path.join(__dirname, 'peer'), __dirname];
  const p = require.resolve('onnxruntime-node', { paths: where });
  const ort = require(p);
  let version = '?';
  try {
    version = require(require.resolve('onnxruntime-node/package.json', { paths: where })).version;
  } catch (e) {
    // keep '?'
  }
  return { ort, version };
}

function readF32(file, n) {
  const buf = fs.readFileSync(file);
  if (buf.length !== 4 * n) {
    throw new Error(`${file}: ${buf.length} bytes, want ${4 * n}`);
  }
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = buf.readFloatLE(4 * i);
  return out;
}

function tensor(ort, dir, man, name) {
  const t = man.tensors[name];
  const n = t.shape.reduce((a, b) => a * b, 1);
  return new ort.Tensor('float32', readF32(path.join(dir, t.file), n), t.shape);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function run(dir) {
  const { ort, version } = loadORT();
  const man = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  const threads = man.threads | 0;
  const session = await ort.InferenceSession.create(path.join(dir, 'model.onnx'), {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const feeds = { x: tensor(ort, dir, man, 'x'), context: tensor(ort, dir, man, 'context') };
  let out;
  for (let i = 0; i < man.warmup; i++) out = await session.run(feeds);
  const times = [];
  for (let i = 0; i < man.repeats; i++) {
    const t0 = process.hrtime.bigint();
    out = await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const y = out.y.data;
  const b = Buffer.alloc(4 * y.length);
  for (let i = 0; i < y.length; i++) b.writeFloatLE(y[i], 4 * i);
  fs.writeFileSync(path.join(dir, 'ort.out.f32'), b);
  const res = {
    peer: 'ort',
    version,
    threads,
    times_ms: times,
    median_ms: median(times),
    min_ms: Math.min(...times),
    max_ms: Math.max(...times),
    note: `onnxruntime-node ${version}, CPU EP, node ${process.version}`,
  };
  fs.writeFileSync(path.join(dir, 'ort.result.json'), JSON.stringify(res));
  if (session.release) await session.release();
}

async function main(argv) {
  if (argv[0] === 'probe') {
    const { version } = loadORT();
    console.log(JSON.stringify({ peer: 'ort', version, node: process.version }));
    return 0;
  }
  if (argv[0] === 'run' && argv.length === 2) {
    await run(argv[1]);
    return 0;
  }
  process.stderr.write('usage: peer_ort.js probe | run DIR\n');
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    // The stack first, then the message alone on the last line, which is
    // what xbench quotes.
    const msg = String(err && err.message ? err.message : err).split('\n')[0];
    process.stderr.write(`${err && err.stack ? err.stack : err}\npeer_ort: ${msg}\n`);
    process.exit(1);
  },
);
