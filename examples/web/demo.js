// The demo page: the crate's JavaScript API (pkg/, built by build.sh) on this browser's
// WebGPU adapter, every result checked against a reference computed here in f64.
import init, { Engine } from "./pkg/softmax_wgpu_web.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// The benchmark's shapes; `?bench=quick` runs small ones (the page's screenshot test).
const SHAPES = params.get("bench") === "quick"
  ? [[1, 32000, "f32"], [8, 32000, "f32"], [8, 32000, "f16"]]
  : [[1, 32000, "f32"], [1, 128256, "f32"], [32, 32000, "f32"], [32, 128256, "f32"],
     [32, 32000, "f16"], [32, 128256, "f16"], [1, 1048576, "f32"]];

function row(table, cells, header = false) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement(header ? "th" : "td");
    if (c instanceof Node) td.append(c); else td.textContent = c;
    tr.append(td);
  }
  $(table).append(tr);
}

function mark(ok, text) {
  const span = document.createElement("span");
  span.className = ok ? "good" : "bad";
  span.textContent = text;
  return span;
}

const fmt = (v) => Number.isNaN(v) ? "NaN" : (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-4))
  ? v.toExponential(6) : v.toFixed(7);
const list = (v) => "(" + Array.from(v, fmt).join(", ") + ")";

// f16 bits <-> numbers, for the Uint16Array the f16 API takes.
function f16ToNumber(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
function numberToF16(x) {
  // Round to nearest even through the f32 bits; enough for the page's inputs.
  const f = new Float32Array([x]), u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000, exp = ((u >>> 23) & 0xff) - 127 + 15, man = u & 0x7fffff;
  if (((u >>> 23) & 0xff) === 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) return sign; // the page never needs f16 subnormals
  let h = sign | (exp << 10) | (man >>> 13);
  const rest = man & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h += 1;
  return h;
}

// The largest element (a loop: spreading a row of a million into Math.max overflows the stack).
function maxOf(x) {
  let m = -Infinity;
  for (const v of x) if (v > m) m = v;
  return m;
}

// The reference: softmax of one row in f64, shifted by its maximum.
function softmaxRef(x) {
  const m = maxOf(x);
  const e = Array.from(x, (v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

// The crate's accuracy contract for f32 softmax, eps (8 + 4|a| + 2 log2 C) p + f32::MIN_POSITIVE
// with a = z - m, plus one ulp of the output type for f16.
function withinContract(got, want, x, dtype) {
  const eps = 2 ** -24, m = maxOf(x), l = Math.log2(x.length);
  for (let i = 0; i < want.length; i++) {
    const a = Math.abs(x[i] - m);
    let tol = eps * (8 + 4 * a + 2 * l) * want[i] + 1.1754944e-38;
    if (dtype === "f16") tol += want[i] * 2 ** -10 + 2 ** -24;
    if (!(Math.abs(got[i] - want[i]) <= tol)) return `element ${i}: ${got[i]}, want ${want[i]}`;
  }
  return null;
}

async function adapterSection(engine) {
  const info = engine.info();
  const adapter = await navigator.gpu.requestAdapter();
  const offered = adapter ? [...adapter.features].sort().join(", ") : "?";
  const ai = adapter && adapter.info ? adapter.info : {};
  row("adapter", ["adapter", [ai.vendor, ai.architecture, ai.description].filter(Boolean).join(" / ") || info.name || "(unnamed)"]);
  row("adapter", ["backend", `${info.backend}, ${info.deviceType}`]);
  row("adapter", ["features the browser offers", offered || "(none)"]);
  row("adapter", ["features the kernels use", info.features.join(", ") || "(none)"]);
  row("adapter", ["f16 path", info.features.includes("shader-f16") ? "native f16" : "portable (f16 packed in u32 words)"]);
  row("adapter", ["f16 conversions", info.halfBuiltins ? "WGSL builtins (probed exact here)" : "bit manipulation (the builtins are not exact here)"]);
  row("adapter", ["tuning", info.tuning]);
  const l = info.limits;
  row("adapter", ["limits", `${l.maxComputeInvocationsPerWorkgroup} invocations, ${l.maxComputeWorkgroupStorageSize / 1024} KiB workgroup memory, ${l.maxStorageBuffersPerShaderStage} storage buffers, ${(l.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB per binding`]);
}

async function seedSection(engine) {
  const z = [1000, 1001, 999];
  const naive = (() => {
    const e = z.map((v) => Math.fround(Math.exp(v)));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  })();
  const stable = await engine.softmax(new Float32Array(z), { rows: 1, cols: 3 });
  const lse = await engine.logsumexp(new Float32Array(z), { rows: 1, cols: 3 });
  const want = softmaxRef(z);
  const err = withinContract(stable, want, z, "f32");
  row("seed", ["", "softmax", ""], true);
  row("seed", ["naive exp(z) / sum", list(naive), mark(false, "overflow")]);
  row("seed", ["stable, on the GPU", list(stable), mark(!err, err ? err : "matches the f64 reference")]);
  const lseRef = 1001 + Math.log(z.reduce((a, v) => a + Math.exp(v - 1001), 0));
  const lseOk = Math.abs(lse[0] - lseRef) <= 1e-4;
  row("seed", ["logsumexp", fmt(lse[0]), mark(lseOk, lseOk ? "matches" : `want ${lseRef}`)]);
  $("seed").dataset.stable = list(stable);
  if (err || !lseOk) throw new Error(`the seed row: ${err || "logsumexp"}`);
}

async function halfSection(engine) {
  const z = [65504, 65504, 65000];
  const bits = new Uint16Array(z.map(numberToF16));
  const naive = z.map(() => Infinity); // exp(65504) in f16
  const got = Array.from(await engine.softmax(bits, { rows: 1, cols: 3, dtype: "f16" }), f16ToNumber);
  const want = softmaxRef(z);
  const err = withinContract(got, want, z, "f16");
  row("half", ["", "softmax", ""], true);
  row("half", ["logits (f16)", list(z), ""]);
  row("half", ["naive exp in f16", list(naive), mark(false, "overflow")]);
  row("half", ["stable, on the GPU (f16 out)", list(got), mark(!err, err ? err : "within one f16 ulp")]);
  if (err) throw new Error(`the f16 row: ${err}`);
}

async function maskedSection(engine) {
  const x = new Float32Array([-Infinity, -Infinity, -Infinity, 0, -Infinity, 0]);
  const nan = await engine.softmax(x, { rows: 2, cols: 3 });
  const zeros = await engine.softmax(x, { rows: 2, cols: 3, maskedRows: "zeros" });
  const ok = Array.from(nan.slice(0, 3)).every(Number.isNaN)
    && Array.from(zeros.slice(0, 3)).every((v) => v === 0)
    && nan[3] === 0.5 && nan[4] === 0 && nan[5] === 0.5;
  row("masked", ["row", "maskedRows: \"nan\"", "maskedRows: \"zeros\"", ""], true);
  row("masked", ["(-inf, -inf, -inf)", list(nan.slice(0, 3)), list(zeros.slice(0, 3)), mark(ok, ok ? "as PyTorch" : "wrong")]);
  row("masked", ["(0, -inf, 0)", list(nan.slice(3)), list(zeros.slice(3)), ""]);
  if (!ok) throw new Error("the masked rows are wrong");
}

async function benchSection(engine) {
  const results = [];
  for (const [rows, cols, dtype] of SHAPES) {
    const r = await engine.bench({ op: "softmax", rows, cols, dtype, runs: 5 });
    const bad = r.checked.map((c) => {
      const err = withinContract(c.values, softmaxRef(c.logits), c.logits, dtype);
      return err && `row ${c.row}: ${err}`;
    }).filter(Boolean);
    row("bench", [`${rows} × ${cols}`, dtype, r.variant, r.gbps.toFixed(2), r.copyGbps.toFixed(2),
      r.ratio.toFixed(2), mark(!bad.length, bad.length ? bad[0] : r.checked.map((c) => c.row).join(", "))]);
    if (bad.length) throw new Error(`softmax ${rows} x ${cols} ${dtype}: ${bad[0]}`);
    results.push({ label: `${rows}×${cols} ${dtype}`, rows, cols, dtype, variant: r.variant,
      ours: r.gbps, copy: r.copyGbps, ratio: r.ratio });
  }
  plot(results);
  window.benchResults = results;
}

// Grouped bars: softmax and copy GB/s per shape.
function plot(results) {
  const svg = $("plot"), ns = "http://www.w3.org/2000/svg";
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height"), pad = 40, base = H - 50;
  const max = Math.max(...results.flatMap((r) => [r.ours, r.copy])) * 1.1;
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
  };
  el("line", { x1: pad, y1: base, x2: W - 10, y2: base, stroke: "#888" });
  el("text", { x: 4, y: 14, "font-size": 12 }, "GB/s");
  const slot = (W - pad - 10) / results.length;
  results.forEach((r, i) => {
    const x = pad + i * slot + slot * 0.15, w = slot * 0.33;
    for (const [k, v, color] of [[0, r.ours, "#3367d6"], [1, r.copy, "#bbb"]]) {
      const h = (v / max) * (base - 20);
      el("rect", { x: x + k * w, y: base - h, width: w - 2, height: h, fill: color });
      el("text", { x: x + k * w, y: base - h - 3, "font-size": 10 }, v.toFixed(1));
    }
    el("text", { x: x, y: base + 14, "font-size": 10 }, r.label);
  });
  el("rect", { x: W - 170, y: 8, width: 10, height: 10, fill: "#3367d6" });
  el("text", { x: W - 155, y: 17, "font-size": 11 }, "softmax");
  el("rect", { x: W - 95, y: 8, width: 10, height: 10, fill: "#bbb" });
  el("text", { x: W - 80, y: 17, "font-size": 11 }, "copy");
}

async function main() {
  await init();
  const engine = await Engine.create();
  await adapterSection(engine);
  await seedSection(engine);
  await halfSection(engine);
  await maskedSection(engine);
  $("state").textContent = "running the benchmark…";
  await benchSection(engine);
}

main().then(
  () => { $("state").dataset.state = "done"; $("state").textContent = "done: every result matches the reference"; },
  (e) => { $("state").dataset.state = "error"; $("state").textContent = "failed"; $("error").textContent = String(e && e.message || e); },
);
