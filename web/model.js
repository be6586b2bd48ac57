// The face parser in the browser: an ONNX export of a facesegm model run by onnxruntime-web.
//
// The exported model takes what `facesegm export` wrote in export.json: one RGB image, float32 in
// 0..255, NHWC, at the model's square size; the scaling to the encoder's range is inside the model.
// It returns logits (NHWC, one per class). This module turns a canvas crop into that input, runs it,
// and returns the class probabilities' arg-max and the summed probability of the chosen part.
import * as ort from "./node_modules/onnxruntime-web/dist/ort.all.min.mjs";

// everything onnxruntime-web loads comes from our own server: no CDN
ort.env.wasm.wasmPaths = new URL("./node_modules/onnxruntime-web/dist/", import.meta.url).href;
// threads need cross-origin isolation (the server sends COOP/COEP); without it, one thread
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;

/** Load export.json and model.onnx from `base`; `backend` is "wasm", "webgl" or "webgpu". */
export async function loadModel(base = "model/", backend = "wasm") {
  const info = await (await fetch(base + "export.json")).json();
  const session = await ort.InferenceSession.create(base + "model.onnx", {
    executionProviders: [backend],
    graphOptimizationLevel: "all",
  });
  const size = info.input.shape[1];
  return { session, info, size, classes: info.classes, inputName: session.inputNames[0], backend };
}

/** RGBA bytes (size*size*4) -> the model's input tensor: RGB float32 0..255, NHWC, batch 1. */
export function toTensor(rgba, size) {
  const data = new Float32Array(size * size * 3);
  for (let i = 0, j = 0; i < size * size; i++, j += 4) {
    data[3 * i] = rgba[j];
    data[3 * i + 1] = rgba[j + 1];
    data[3 * i + 2] = rgba[j + 2];
  }
  return new ort.Tensor("float32", data, [1, size, size, 3]);
}

/**
 * Run the model on RGBA bytes at its size. Returns {labels, part, ms}: the per-pixel arg-max
 * (Uint8Array), the probability of the `partIds` classes summed (Float32Array: softmax of the
 * logits), and the model's time in milliseconds.
 */
export async function parse(model, rgba, partIds) {
  const n = model.size * model.size;
  const t0 = performance.now();
  const out = await model.session.run({ [model.inputName]: toTensor(rgba, model.size) });
  const ms = performance.now() - t0;
  const logits = out[model.session.outputNames[0]].data;
  const k = logits.length / n;
  const labels = new Uint8Array(n);
  const part = new Float32Array(n);
  const isPart = new Uint8Array(k);
  for (const id of partIds) isPart[id] = 1;
  for (let i = 0, o = 0; i < n; i++, o += k) {
    let best = 0;
    let max = logits[o];
    for (let c = 1; c < k; c++) if (logits[o + c] > max) { max = logits[o + c]; best = c; }
    let sum = 0;
    let inPart = 0;
    for (let c = 0; c < k; c++) {
      const e = Math.exp(logits[o + c] - max);
      sum += e;
      if (isPart[c]) inPart += e;
    }
    labels[i] = best;
    part[i] = inPart / sum;
  }
  return { labels, part, ms };
}
