// rnnlab.js -- the forward pass of rnnlab's models in the browser, shared by the pages `rnnlab export --format
// html` writes (inlined into each page: no network, no external script). The numbers are rnnlab's: the same
// cells, the same stack, the same sampling and the same random draws as the NumPy code they mirror (named in
// each comment), so that the tests can hold the page to NumPy's probabilities.
"use strict";

// ---- the weights: one base64 string of little-endian float16 or float32 arrays (export.weights_blob) ----

function base64Bytes(text) {
  const raw = atob(text), bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

// IEEE 754 half precision -> number: sign, 5 exponent bits (bias 15), 10 fraction bits. Exact: every
// float16 value is a float32 value.
function halfToFloat(bits) {
  const sign = bits & 0x8000 ? -1 : 1, exponent = (bits >> 10) & 0x1f, fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;                    // zero and subnormals
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

function decodeWeights(blob) {
  const bytes = base64Bytes(blob.base64), view = new DataView(bytes.buffer), half = blob.dtype === "float16";
  const size = half ? 2 : 4, weights = {};
  for (const array of blob.arrays) {
    const n = array.shape.reduce((a, b) => a * b, 1), data = new Float32Array(n);
    for (let i = 0, at = array.offset * size; i < n; i++, at += size) {
      data[i] = half ? halfToFloat(view.getUint16(at, true)) : view.getFloat32(at, true);
    }
    weights[array.name] = {shape: array.shape, data};
  }
  return weights;
}

// ---- y = x W: the one product every layer needs -------------------------------------------------------
// Every matrix W (In, Out) is kept transposed -- Out rows of In columns, both padded with zeros to a multiple
// of 4 -- in ONE Float32Array, beside a scratch copy of x and of y: y_r = sum_c W^T[r][c] x_c. Two kernels
// read that same memory: a WebAssembly SIMD one (4 rows at a time, 4 columns per f32x4 multiply-add, float32
// sums; about 4x faster) and a plain JavaScript one (the same products, summed in double precision), used
// where WebAssembly SIMD is missing. x is rounded to float32 on the way in, as in NumPy's float32 model.

const WASM_MATVEC = (() => {
  // matvec(w, x, y, rows, cols): byte offsets into the imported memory; rows and cols multiples of 4.
  //   for r in 0, 4, 8 .. rows:  a0..a3 = 0;  for j in 0, 16 .. 4 cols:  xv = x[j..];  a_k += W[r+k][j..] * xv
  //                              y[r+k] = a_k.lane0 + a_k.lane1 + a_k.lane2 + a_k.lane3
  const leb = (n) => { const out = []; do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; out.push(b); } while (n); return out; };
  const get = (i) => [0x20, i], set = (i) => [0x21, i], tee = (i) => [0x22, i], i32 = (n) => [0x41, n];  // n < 64
  const ADD = 0x6a, MUL = 0x6c, SHL = 0x74, GE_U = 0x4f, BR_IF = 0x0d, BR = 0x0c, END = 0x0b;
  const BLOCK = [0x02, 0x40], LOOP = [0x03, 0x40], F32_ADD = 0x92, F32_STORE = 0x38;
  const simd = (op) => [0xfd, ...leb(op)];
  const LOAD = [...simd(0x00), 0, 0], SPLAT = simd(0x13), ADD4 = simd(0xe4), MUL4 = simd(0xe6);
  const lane = (k) => [...simd(0x1f), k];
  const [W, X, Y, ROWS, COLS, r, j, n, p, q] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], A = [10, 11, 12, 13], XV = 14;
  const code = [
    ...get(COLS), ...i32(2), SHL, ...set(n),                          // n = bytes per row
    ...i32(0), ...set(r),
    ...BLOCK, ...LOOP,
    ...get(r), ...get(ROWS), GE_U, BR_IF, 1,                          // r >= rows: done
    ...get(W), ...get(r), ...get(n), MUL, ADD, ...set(p),             // p = &W[r][0]
    0x43, 0, 0, 0, 0, ...SPLAT, ...tee(A[0]), ...tee(A[1]), ...tee(A[2]), ...set(A[3]),
    ...i32(0), ...set(j),
    ...BLOCK, ...LOOP,
    ...get(j), ...get(n), GE_U, BR_IF, 1,
    ...get(X), ...get(j), ADD, ...LOAD, ...set(XV),                   // xv = x[j .. j+3]
    ...get(p), ...get(j), ADD, ...set(q),
    ...[0, 1, 2, 3].flatMap((k) => [
      ...get(A[k]), ...get(q), ...LOAD, ...get(XV), ...MUL4, ...ADD4, ...set(A[k]),   // a_k += W[r+k][j..] * xv
      ...(k < 3 ? [...get(q), ...get(n), ADD, ...set(q)] : [])]),
    ...get(j), ...i32(16), ADD, ...set(j), BR, 0,
    END, END,
    ...[0, 1, 2, 3].flatMap((k) => [
      ...get(Y), ...get(r), ...i32(2), SHL, ADD,
      ...get(A[k]), ...lane(0), ...get(A[k]), ...lane(1), F32_ADD, ...get(A[k]), ...lane(2), F32_ADD,
      ...get(A[k]), ...lane(3), F32_ADD, F32_STORE, 2, ...leb(4 * k)]),                // y[r+k] = sum of lanes
    ...get(r), ...i32(4), ADD, ...set(r), BR, 0,
    END, END, END];
  const body = [2, 5, 0x7f, 5, 0x7b, ...code];                      // locals: 5 i32, 5 v128
  const section = (id, bytes) => [id, ...leb(bytes.length), ...bytes];
  const name = (text) => [text.length, ...Array.from(text, (c) => c.charCodeAt(0))];
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, [1, 0x60, 5, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0]),     // type: (i32 x 5) -> ()
    ...section(2, [1, ...name("env"), ...name("memory"), 2, 0, 1]),   // import env.memory
    ...section(3, [1, 0]),                                            // one function of type 0
    ...section(7, [1, ...name("matvec"), 0, 0]),                      // export it
    ...section(10, [1, ...leb(body.length), ...body])]);
})();

function wasmSimdAvailable() {
  try { return typeof WebAssembly === "object" && WebAssembly.validate(WASM_MATVEC); } catch (e) { return false; }
}

const pad4 = (n) => (n + 3) & ~3;

// matrices: [{data: Float32Array (In x Out, row-major), In, Out}]; kind: "wasm" (if available) or "js".
function makeKernel(matrices, kind) {
  const maxCols = Math.max(...matrices.map((m) => pad4(m.In))), maxRows = Math.max(...matrices.map((m) => pad4(m.Out)));
  const X = 0, Y = maxCols;
  let size = maxCols + maxRows;
  const handles = matrices.map((m) => { const h = {off: size, rows: m.Out, cols: m.In, rows4: pad4(m.Out), cols4: pad4(m.In)};
                                        size += h.rows4 * h.cols4; return h; });
  const useWasm = kind === "wasm" && wasmSimdAvailable();
  let f32, run;
  if (useWasm) {
    const memory = new WebAssembly.Memory({initial: Math.ceil(4 * size / 65536) + 1});
    run = new WebAssembly.Instance(new WebAssembly.Module(WASM_MATVEC), {env: {memory}}).exports.matvec;
    f32 = new Float32Array(memory.buffer);
  } else {
    f32 = new Float32Array(size);
  }
  matrices.forEach((m, i) => {                                        // W (In, Out) -> W^T, padded
    const h = handles[i];
    for (let c = 0; c < m.In; c++) for (let r = 0; r < m.Out; r++) f32[h.off + r * h.cols4 + c] = m.data[c * m.Out + r];
  });
  const sums = new Float64Array(maxRows);
  function jsMatvec(h) {                                              // 4 rows x 2 columns per step, double sums
    const cols = h.cols4;
    for (let r = 0; r < h.rows4; r += 4) {
      const r0 = h.off + r * cols, r1 = r0 + cols, r2 = r1 + cols, r3 = r2 + cols;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0, t0 = 0, t1 = 0, t2 = 0, t3 = 0;
      for (let c = 0; c < cols; c += 2) {
        const x = f32[X + c], y = f32[X + c + 1];
        s0 += f32[r0 + c] * x; s1 += f32[r1 + c] * x; s2 += f32[r2 + c] * x; s3 += f32[r3 + c] * x;
        t0 += f32[r0 + c + 1] * y; t1 += f32[r1 + c + 1] * y; t2 += f32[r2 + c + 1] * y; t3 += f32[r3 + c + 1] * y;
      }
      sums[r] = s0 + t0; sums[r + 1] = s1 + t1; sums[r + 2] = s2 + t2; sums[r + 3] = s3 + t3;
    }
  }
  return {
    kind: useWasm ? "wasm-simd" : "javascript",
    // out[0 .. Out) = x W (x: In numbers) for the i-th matrix
    matvec(i, x, out) {
      const h = handles[i];
      for (let c = 0; c < h.cols; c++) f32[X + c] = x[c];
      for (let c = h.cols; c < h.cols4; c++) f32[X + c] = 0;
      if (useWasm) {
        run(4 * h.off, 4 * X, 4 * Y, h.rows4, h.cols4);
        for (let r = 0; r < h.rows; r++) out[r] = f32[Y + r];
      } else {
        jsMatvec(h);
        for (let r = 0; r < h.rows; r++) out[r] = sums[r];
      }
      return out;
    },
  };
}

// A network's weights and the matrices its kernel multiplies by: describe(weights, matrix) builds the
// network, calling matrix(name) for every weight used as x W (it returns the matrix's number).
function buildNetwork(blob, kind, describe) {
  const weights = decodeWeights(blob), matrices = [];
  const matrix = (name) => { const w = weights[name]; matrices.push({data: w.data, In: w.shape[0], Out: w.shape[1]});
                             return matrices.length - 1; };
  const net = describe(weights, matrix);
  net.kernel = makeKernel(matrices, kind);
  return net;
}

// ---- the cells (cells.py, mincells.py): one entry each; adding a cell = one entry -------------------------
// step(zx, zh, state, H) turns one step's pre-activations into the new state, in place: zx = x Wx + b (every
// gate block, in cells.py's order), zh = h_{t-1} Wh (+ bh), or null for a cell whose gates read only the input
// (minGRU, minLSTM: no Wh), state = {h, c}. states: the names of its parts; label: how the page names it.

const sigmoid = (z) => 1 / (1 + Math.exp(-z));
const softplus = (z) => Math.max(z, 0) + Math.log1p(Math.exp(-Math.abs(z)));   // mincells.softplus: no overflow

const CELLS = {
  // h = tanh(zx + zh)
  rnn: {label: "RNN", gates: 1, states: ["h"], step(zx, zh, s, H) {
    for (let k = 0; k < H; k++) s.h[k] = Math.tanh(zx[k] + zh[k]);
  }},
  // [zi, zf, zg, zo] = zx + zh;  c = sig(zf) c + sig(zi) tanh(zg);  h = sig(zo) tanh(c)
  lstm: {label: "LSTM", gates: 4, states: ["h", "c"], step(zx, zh, s, H) {
    const {h, c} = s;
    for (let k = 0; k < H; k++) {
      const i = sigmoid(zx[k] + zh[k]), f = sigmoid(zx[H + k] + zh[H + k]);
      const g = Math.tanh(zx[2 * H + k] + zh[2 * H + k]), o = sigmoid(zx[3 * H + k] + zh[3 * H + k]);
      c[k] = f * c[k] + i * g;
      h[k] = o * Math.tanh(c[k]);
    }
  }},
  // r = sig(xr + hr), u = sig(xu + hu), n = tanh(xn + r hn);  h = (1 - u) n + u h   (reset after: zh has bh)
  gru: {label: "GRU", gates: 3, states: ["h"], step(zx, zh, s, H) {
    const h = s.h;
    for (let k = 0; k < H; k++) {
      const r = sigmoid(zx[k] + zh[k]), u = sigmoid(zx[H + k] + zh[H + k]);
      const n = Math.tanh(zx[2 * H + k] + r * zh[2 * H + k]);
      h[k] = (1 - u) * n + u * h[k];
    }
  }},
  // [zu, h~] = zx;  u = sig(zu);  h = (1 - u) h + u h~      (mingru_window_forward: a = 1 - u, b = u h~)
  mingru: {label: "minGRU", gates: 2, states: ["h"], step(zx, zh, s, H) {
    const h = s.h;
    for (let k = 0; k < H; k++) {
      const u = sigmoid(zx[k]);
      h[k] = (1 - u) * h[k] + u * zx[H + k];
    }
  }},
  // [zf, zi, h~] = zx;  f' = f / (f + i) = sig(softplus(-zi) - softplus(-zf));  h = f' h + (1 - f') h~
  // (minlstm_window_forward's form: no 0 / 0 when both gates round to 0)
  minlstm: {label: "minLSTM", gates: 3, states: ["h"], step(zx, zh, s, H) {
    const h = s.h;
    for (let k = 0; k < H; k++) {
      const f = sigmoid(softplus(-zx[H + k]) - softplus(-zx[k]));
      h[k] = f * h[k] + (1 - f) * zx[2 * H + k];
    }
  }},
};

// One recurrent layer (prefix "l0.", "enc_f.", "dec." ...); reads ids (lookup: x is one-hot, so x Wx is a row
// of Wx, as model.forward does) or a vector from below. Wh and bh are used when the layer has them (a cell
// whose gates read only the input has no Wh: its step gets zh = null).
function recurrentLayer(weights, matrix, prefix, cellName, lookup) {
  const cell = CELLS[cellName], GH = weights[prefix + "b"].shape[0], has = (name) => (prefix + name) in weights;
  return {cell, H: GH / cell.gates, GH, lookup: lookup ? weights[prefix + "Wx"].data : null,
          Wx: lookup ? null : matrix(prefix + "Wx"), Wh: has("Wh") ? matrix(prefix + "Wh") : null,
          b: weights[prefix + "b"].data, bh: has("bh") ? weights[prefix + "bh"].data : null,
          zx: new Float64Array(GH), zh: new Float64Array(GH)};
}

function zeroState(layer) {
  const state = {};
  for (const name of layer.cell.states) state[name] = new Float64Array(layer.H);
  return state;
}

// zx = x Wx + b into layer.zx (x: an id, or a vector)
function inputProjection(kernel, layer, x) {
  const zx = layer.zx, b = layer.b;
  if (layer.lookup) {
    for (let k = 0, row = x * layer.GH; k < layer.GH; k++) zx[k] = layer.lookup[row + k] + b[k];
  } else {
    kernel.matvec(layer.Wx, x, zx);
    for (let k = 0; k < layer.GH; k++) zx[k] += b[k];
  }
}

// zh = h Wh (+ bh), then the cell's step: the state moves one character on
function recurrentStep(kernel, layer, state) {
  let zh = null;
  if (layer.Wh !== null) {
    zh = kernel.matvec(layer.Wh, state.h, layer.zh);
    if (layer.bh) for (let k = 0; k < layer.GH; k++) zh[k] += layer.bh[k];
  }
  layer.cell.step(layer.zx, zh, state, layer.H);
}

// ---- the language model (model.py): the stack of layers under the output layer ---------------------------
// Two stacks (--block), one entry each in STACKS: build(weights, matrix, D) adds its parts to the network,
// step(net, id, states) reads one character id and returns the vector the output layer reads (length H).

// norms.py: RMSNorm  y = g x r,  r = 1 / sqrt(mean(x^2) + eps);  LayerNorm  y = g (x - mu) r + b  (r of x - mu).
// eps is norms.EPS, handed over in the page's data (D.constants), so the page cannot drift from the code.
function normalisation(weights, prefix, eps) {
  return {g: weights[prefix + "g"].data, b: (prefix + "b") in weights ? weights[prefix + "b"].data : null, eps};
}

function normalise(norm, x, out) {
  const H = x.length;
  let mu = 0, squares = 0;
  if (norm.b) { for (let k = 0; k < H; k++) mu += x[k]; mu /= H; }
  for (let k = 0; k < H; k++) squares += (x[k] - mu) * (x[k] - mu);
  const r = 1 / Math.sqrt(squares / H + norm.eps);
  for (let k = 0; k < H; k++) out[k] = (x[k] - mu) * r * norm.g[k] + (norm.b ? norm.b[k] : 0);
  return out;
}

// activations.gelu, the tanh approximation as rnnlab computes it: 0.5 z (1 + tanh(c z (1 + k z^2)))
function gelu(z, c, k) { return 0.5 * z * (1 + Math.tanh(c * z * (1 + k * z * z))); }

// block.feed_forward: FFN(v) = gelu(v W1 + b1) W2 + b2, into out
function feedForward(kernel, ff, v, out) {
  kernel.matvec(ff.W1, v, ff.z);
  for (let j = 0; j < ff.z.length; j++) ff.z[j] = gelu(ff.z[j] + ff.b1[j], ff.c, ff.k);
  kernel.matvec(ff.W2, ff.z, out);
  for (let k = 0; k < out.length; k++) out[k] += ff.b2[k];
  return out;
}

const STACKS = {
  // ids --layer 0 (a row of Wx: x is one-hot)--> h^0 --> layer 1 --> ... --> h^{L-1}
  plain: {
    build: (weights, matrix, D) => ({
      layers: Array.from({length: D.model.num_layers}, (_, l) => recurrentLayer(weights, matrix, "l" + l + ".", D.model.cell, l === 0)),
    }),
    step(net, id, states) {
      let x = id;
      net.layers.forEach((layer, l) => {
        inputProjection(net.kernel, layer, x);
        recurrentStep(net.kernel, layer, states[l]);
        x = states[l].h;
      });
      return x;
    },
  },
  // block.py: x = E[id];  per layer  y = x + RNN(norm1 x),  x = y + FFN(norm2 y);  then norm(x)
  residual: {
    build(weights, matrix, D) {
      const m = D.model, H = m.hidden_size, F = m.ffn_mult * H, eps = D.constants.norm_eps;
      return {
        emb: weights.emb.data, x: new Float64Array(H), u: new Float64Array(H), f: new Float64Array(H),
        top: new Float64Array(H), norm: normalisation(weights, "norm.", eps),
        layers: Array.from({length: m.num_layers}, (_, l) => {
          const prefix = "l" + l + ".";
          return Object.assign(recurrentLayer(weights, matrix, prefix, m.cell, false), {
            norm1: normalisation(weights, prefix + "norm1.", eps), norm2: normalisation(weights, prefix + "norm2.", eps),
            ff: {W1: matrix(prefix + "ff.W1"), b1: weights[prefix + "ff.b1"].data, W2: matrix(prefix + "ff.W2"),
                 b2: weights[prefix + "ff.b2"].data, z: new Float64Array(F), c: D.constants.gelu_c, k: D.constants.gelu_k},
          });
        }),
      };
    },
    step(net, id, states) {
      const {x, u, f} = net, H = x.length;
      for (let k = 0; k < H; k++) x[k] = net.emb[id * H + k];             // the embedding's row
      net.layers.forEach((layer, l) => {
        inputProjection(net.kernel, layer, normalise(layer.norm1, x, u));
        recurrentStep(net.kernel, layer, states[l]);
        for (let k = 0; k < H; k++) x[k] += states[l].h[k];              // y = x + RNN(norm1 x)
        feedForward(net.kernel, layer.ff, normalise(layer.norm2, x, u), f);
        for (let k = 0; k < H; k++) x[k] += f[k];                        // x' = y + FFN(norm2 y)
      });
      return normalise(net.norm, x, net.top);
    },
  },
};

function buildLanguageModel(D, kind) {
  const stack = STACKS[D.model.block];
  return buildNetwork(D.weights, kind, (weights, matrix) => ({
    stack, ...stack.build(weights, matrix, D),
    Wy: matrix("Wy"), by: weights.by.data, logits: new Float64Array(D.model.vocab_size),
  }));
}

function languageModelState(net) { return net.layers.map(zeroState); }

// one character in -> the logits of the next (a view, overwritten by the next step); the states move on
function languageModelStep(net, id, states) {
  const logits = net.kernel.matvec(net.Wy, net.stack.step(net, id, states), net.logits);
  for (let v = 0; v < logits.length; v++) logits[v] += net.by[v];
  return logits;
}

// ---- sampling (sampling.py): temperature, top-k, the draw, the portable random numbers --------------------

// xoshiro128** seeded by splitmix32 (sampling.PortableRandom): 32-bit integer steps, so Python and JavaScript
// draw the same numbers from the same seed.
class PortableRandom {
  constructor(seed) {
    let weyl = seed >>> 0;
    this.s = [0, 0, 0, 0].map(() => {
      weyl = (weyl + 0x9E3779B9) >>> 0;
      let z = Math.imul(weyl ^ (weyl >>> 16), 0x85EBCA6B) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xC2B2AE35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    });
    if (this.s.every((w) => w === 0)) this.s = [1, 0, 0, 0];
  }
  nextUint32() {
    const s = this.s, rotl = (x, k) => ((x << k) | (x >>> (32 - k))) >>> 0;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0, t = (s[1] << 9) >>> 0;
    s[2] = (s[2] ^ s[0]) >>> 0; s[3] = (s[3] ^ s[1]) >>> 0; s[1] = (s[1] ^ s[2]) >>> 0; s[0] = (s[0] ^ s[3]) >>> 0;
    s[2] = (s[2] ^ t) >>> 0; s[3] = rotl(s[3], 11);
    return result;
  }
  random() {                                                          // 53 random bits in [0, 1)
    const high = this.nextUint32() >>> 5;
    return (high * 67108864 + (this.nextUint32() >>> 6)) / 9007199254740992;
  }
}

// sampling.next_char_distribution: p = softmax(z / T) over the top_k largest logits (ties at the k-th kept)
function nextCharDistribution(logits, temperature, topK) {
  const z = Float64Array.from(logits);
  if (topK) {
    const kth = Array.from(z).sort((a, b) => b - a)[topK - 1];
    for (let v = 0; v < z.length; v++) if (!(z[v] >= kth)) z[v] = -Infinity;
  }
  let max = -Infinity, total = 0;
  for (const value of z) max = Math.max(max, value);
  for (let v = 0; v < z.length; v++) { z[v] = Math.exp((z[v] - max) / temperature); total += z[v]; }
  for (let v = 0; v < z.length; v++) z[v] /= total;
  return z;
}

// sampling.pick: argmax (greedy), or the inverse CDF at one uniform number u
function pick(p, rng, greedy) {
  if (greedy) { let best = 0; for (let v = 1; v < p.length; v++) if (p[v] > p[best]) best = v; return best; }
  const cdf = new Float64Array(p.length);
  let running = 0;
  for (let v = 0; v < p.length; v++) { running += p[v]; cdf[v] = running; }
  const target = rng.random() * cdf[p.length - 1];
  let index = 0;
  while (index < p.length && cdf[index] <= target) index++;           // searchsorted(cdf, target, "right")
  return Math.min(index, p.length - 1);
}

function characterIds(vocabulary, unkToken, text) {
  const index = new Map(vocabulary.map((ch, i) => [ch, i])), chars = Array.from(text);
  const unknown = [...new Set(chars.filter((ch) => !index.has(ch)))];
  if (unknown.length && unkToken === null) {
    throw new Error(unknown.length + " character(s) the model does not know: " + unknown.slice(0, 10).map((ch) => JSON.stringify(ch)).join(", "));
  }
  return chars.map((ch) => index.has(ch) ? index.get(ch) : index.get(unkToken));
}

// sampling.sample as a generator of characters: read the context (the prime, or the start symbol; a name's
// prime after a newline), then draw, yield and feed back one character at a time.
function* sampleCharacters(net, D, rng, opts) {
  const names = opts.stopAtNewline, prime = opts.prime;
  const context = (names && !prime.startsWith("\n") ? D.start + prime : prime) || D.start;
  const states = languageModelState(net);
  let logits;
  for (const id of characterIds(D.vocabulary, D.unk_token, context)) logits = languageModelStep(net, id, states);
  for (let n = 0; n < opts.length; n++) {
    const id = pick(nextCharDistribution(logits, opts.temperature, opts.topK), rng, opts.greedy);
    const ch = D.vocabulary[id];
    if (names && ch === "\n") return;
    yield ch;
    if (n + 1 < opts.length) logits = languageModelStep(net, id, states);
  }
}

// ---- the translator (seq2seq.py, translate.py): bidirectional encoder, attention decoder, greedy decoding --

// attention scores (attention.py): keys(net, value) once per source position, score(net, q, keys) per step
const SCORES = {
  additive: {   // e_j = v . tanh(q Wq + b + k_j), k_j = h_j Wk
    keys: (net, value) => net.kernel.matvec(net.att.Wk, value, new Float64Array(net.att.size)),
    score(net, q, keys) {
      const qp = net.kernel.matvec(net.att.Wq, q, new Float64Array(net.att.size)), v = net.att.v, b = net.att.b;
      return keys.map((k) => { let e = 0; for (let a = 0; a < k.length; a++) e += v[a] * Math.tanh(k[a] + (qp[a] + b[a])); return e; });
    }},
  dot: {keys: (net, value) => value, score: (net, q, keys) => keys.map((k) => dotProduct(q, k))},
  scaled_dot: {keys: (net, value) => value,
               score: (net, q, keys) => keys.map((k) => dotProduct(q, k) / Math.sqrt(q.length))},
  general: {    // e_j = q W h_j^T: keys k_j = h_j W^T
    keys: (net, value) => net.kernel.matvec(net.att.WT, value, new Float64Array(net.att.size)),
    score: (net, q, keys) => keys.map((k) => dotProduct(q, k))},
};

function dotProduct(a, b) { let s = 0; for (let i = 0; i < a.length; i++) s += a[i] * b[i]; return s; }

function buildTranslator(D, kind) {
  const m = D.model;
  return buildNetwork(D.weights, kind, (weights, matrix) => {
    if (weights["att.W"]) {                                           // general: keys h W^T, so W (Hq, Hv) -> W^T
      const [Hq, Hv] = weights["att.W"].shape, WT = new Float32Array(Hq * Hv);
      for (let a = 0; a < Hq; a++) for (let b = 0; b < Hv; b++) WT[b * Hq + a] = weights["att.W"].data[a * Hv + b];
      weights["att.WT"] = {shape: [Hv, Hq], data: WT};
    }
    const net = {
      model: m, score: SCORES[m.attention] || null,
      encF: recurrentLayer(weights, matrix, "enc_f.", m.encoder_cell, true),
      encB: recurrentLayer(weights, matrix, "enc_b.", m.encoder_cell, true),
      bridge: matrix("bridge.W"), bridgeB: weights["bridge.b"].data,
      dec: recurrentLayer(weights, matrix, "dec.", m.decoder_cell, true),
      Wy: matrix("Wy"), by: weights.by.data,
    };
    if (net.score) {
      net.Wc = matrix("dec.Wc");
      net.Wyc = matrix("Wyc");
      net.att = {size: m.attention === "additive" ? m.attention_size : m.decoder_hidden};
      if (m.attention === "additive") Object.assign(net.att, {Wq: matrix("att.Wq"), Wk: matrix("att.Wk"),
                                                                b: weights["att.b"].data, v: weights["att.v"].data});
      if (m.attention === "general") net.att.WT = matrix("att.WT");
    }
    return net;
  });
}

// one direction of the encoder from the zero state: the h after each id
function encodeDirection(kernel, layer, ids) {
  const state = zeroState(layer);
  return ids.map((id) => { inputProjection(kernel, layer, id); recurrentStep(kernel, layer, state); return Float64Array.from(state.h); });
}

function softmaxInPlace(e) {
  const max = Math.max(...e);
  let total = 0;
  for (let j = 0; j < e.length; j++) { e[j] = Math.exp(e[j] - max); total += e[j]; }
  for (let j = 0; j < e.length; j++) e[j] /= total;
  return e;
}

// translate.translate with beam_size 1: {source, output, weights (output chars x source chars), logprob, finished}
function translateText(net, D, text) {
  const m = net.model, kernel = net.kernel;
  const ids = characterIds(D.source_vocabulary, null, text);
  if (!ids.length) return {source: text, output: "", weights: [], logprob: 0, finished: true};
  const S = ids.length, He = m.encoder_hidden;
  const hf = encodeDirection(kernel, net.encF, ids), hb = encodeDirection(kernel, net.encB, ids.slice().reverse()).reverse();
  const values = hf.map((f, j) => { const h = new Float64Array(2 * He); h.set(f); h.set(hb[j], He); return h; });
  const last = new Float64Array(2 * He); last.set(hf[S - 1]); last.set(hb[0], He);
  const state = zeroState(net.dec);
  kernel.matvec(net.bridge, last, state.h);
  for (let k = 0; k < state.h.length; k++) state.h[k] = Math.tanh(state.h[k] + net.bridgeB[k]);   // s_0
  const keys = net.score ? values.map((value) => Float64Array.from(net.score.keys(net, value))) : null;
  let context = net.score ? new Float64Array(2 * He) : null, prev = D.end_id, logprob = 0, finished = false;
  const output = [], weights = [], logits = new Float64Array(D.target_vocabulary.length), extra = new Float64Array(logits.length);
  const fed = new Float64Array(net.dec.GH);
  for (let t = 0; t < m.max_output_length; t++) {
    inputProjection(kernel, net.dec, prev);
    if (context) { kernel.matvec(net.Wc, context, fed); for (let k = 0; k < fed.length; k++) net.dec.zx[k] += fed[k]; }
    recurrentStep(kernel, net.dec, state);
    let alpha = null;
    if (net.score) {
      alpha = softmaxInPlace(Float64Array.from(net.score.score(net, state.h, keys)));
      context = new Float64Array(2 * He);
      values.forEach((value, j) => { for (let k = 0; k < value.length; k++) context[k] += alpha[j] * value[k]; });
    }
    kernel.matvec(net.Wy, state.h, logits);
    if (context) { kernel.matvec(net.Wyc, context, extra); for (let v = 0; v < logits.length; v++) logits[v] += extra[v]; }
    for (let v = 0; v < logits.length; v++) logits[v] += net.by[v];
    const logp = logSoftmax(logits);
    let best = 0;
    for (let v = 1; v < logp.length; v++) if (logp[v] > logp[best]) best = v;
    logprob += logp[best];
    if (best === D.end_id) { finished = true; break; }
    output.push(D.target_vocabulary[best]);
    weights.push(alpha ? Array.from(alpha) : new Array(S).fill(0));
    prev = best;
  }
  return {source: text, output: output.join(""), weights, logprob, finished};
}

function logSoftmax(z) {
  const max = Math.max(...z);
  let total = 0;
  for (const value of z) total += Math.exp(value - max);
  const log = Math.log(total);
  return Array.from(z, (value) => value - max - log);
}

// ---- what the pages show about a model ----------------------------------------------------------------

function describeModel(D) {
  const m = D.model, n = D.parameters.toLocaleString("en-US");
  const shape = D.task === "lm"
    ? CELLS[m.cell].label + ", " + m.num_layers + " layer" + (m.num_layers > 1 ? "s" : "") + " \u00d7 " + m.hidden_size
      + " units" + (m.block === "residual" ? " in the residual block (" + (m.norm === "rms" ? "RMSNorm" : "LayerNorm")
      + ", feed-forward " + m.ffn_mult * m.hidden_size + ")" : "") + ", vocabulary of " + m.vocab_size
    : "translator: " + CELLS[m.encoder_cell].label + " encoder 2 \u00d7 " + m.encoder_hidden + ", "
      + CELLS[m.decoder_cell].label + " decoder " + m.decoder_hidden + ", " + m.attention + " attention";
  const loss = D.val_loss === null ? "validation loss not measured"
    : "validation " + D.val_loss.toFixed(3) + " nats/char (" + D.val_bits.toFixed(3) + " bits) on "
      + D.val_tokens.toLocaleString("en-US") + " characters";
  return shape + " \u00b7 " + n + " parameters (" + D.dtype + ") \u00b7 " + loss;
}

// the header every page has (#name, #description, #summary, in #header) and its status line (#status)
function showHeader(D) {
  const parts = [["h1", "name", D.name], ["div", "description", D.description],
                 ["div", "summary", describeModel(D) + " \u00b7 exported from " + D.source]];
  for (const [tag, id, text] of parts) {
    const element = document.createElement(tag);
    element.id = id; element.textContent = text;
    if (id === "summary") element.className = "muted";
    document.getElementById("header").appendChild(element);
  }
}

function say(text, error) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = error ? "error" : "muted";
}
