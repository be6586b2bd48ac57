// Colour maths of the recolour page: the same LAB recipe as Python's facesegm_utils.recolor.recolor.
//
// In CIELAB, lightness L and chroma (a, b) are separate. Inside the part the chroma becomes the
// target's; the part's mean L moves `LIGHTNESS` of the way to the target's L while each pixel keeps
// its own detail L - mean(L) (scaled by a mild gain), so hair keeps its strands. The result is
// blended in with alpha = strength * weight, where the weight is the model's probability of the part:
// soft edges for free, and pixels with weight 0 stay bit-for-bit the same.

export const LIGHTNESS = 0.7; // recolor(lightness=0.7), Python's default
export const PROBA_FLOOR = 0.02; // recolor.PROBA_FLOOR: below this a pixel is "not the part"

// sRGB <-> CIELAB (D65), as OpenCV's COLOR_RGB2Lab / COLOR_Lab2RGB
const WHITE = [0.950456, 1.0, 1.088754];
const toLinear = (c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
const toGamma = (c) => (c <= 0.0031308 ? 12.92 * c : 1.055 * c ** (1 / 2.4) - 0.055);
const f = (t) => (t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116);
const fInv = (t) => (t > 0.206893 ? t ** 3 : (t - 16 / 116) / 7.787);
const LINEAR = Float32Array.from({ length: 256 }, (_, i) => toLinear(i / 255));

/** [L 0..100, a, b] of an RGB colour given as bytes 0..255. */
export function rgbToLab(r, g, b) {
  const [R, G, B] = [LINEAR[r], LINEAR[g], LINEAR[b]];
  const x = (0.412453 * R + 0.35758 * G + 0.180423 * B) / WHITE[0];
  const y = (0.212671 * R + 0.71516 * G + 0.072169 * B) / WHITE[1];
  const z = (0.019334 * R + 0.119193 * G + 0.950227 * B) / WHITE[2];
  const L = y > 0.008856 ? 116 * Math.cbrt(y) - 16 : 903.3 * y;
  return [L, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))];
}

/** CIELAB L (0..100) of an RGB colour given as bytes: only Y is needed. */
export function lightness(r, g, b) {
  const y = 0.212671 * LINEAR[r] + 0.71516 * LINEAR[g] + 0.072169 * LINEAR[b];
  return y > 0.008856 ? 116 * Math.cbrt(y) - 16 : 903.3 * y;
}

/** [r, g, b] bytes of a CIELAB colour (clipped to the sRGB cube). */
export function labToRgb(L, a, b) {
  const fy = (L + 16) / 116;
  const [x, y, z] = [fInv(fy + a / 500) * WHITE[0], fInv(fy) * WHITE[1], fInv(fy - b / 200) * WHITE[2]];
  const lin = [
    3.240479 * x - 1.53715 * y - 0.498535 * z,
    -0.969256 * x + 1.875991 * y + 0.041556 * z,
    0.055648 * x - 0.204043 * y + 1.057311 * z,
  ];
  return lin.map((c) => Math.round(255 * toGamma(Math.min(1, Math.max(0, c)))));
}

/** "#rrggbb" -> [r, g, b] bytes. */
export function parseHex(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

/** The part's probability -> recolour weight in 0..1 (recolor.feather_weight for probabilities). */
export function weightFromProbability(p) {
  const w = new Float32Array(p.length);
  for (let i = 0; i < p.length; i++) w[i] = Math.min(1, Math.max(0, (p[i] - PROBA_FLOOR) / (1 - PROBA_FLOOR)));
  return w;
}

/** A (size x size) map resized bilinearly to (side x side), pixel centres aligned (as cv2.resize). */
export function resizeBilinear(src, size, side) {
  if (size === side) return src;
  const out = new Float32Array(side * side);
  const scale = size / side;
  for (let y = 0; y < side; y++) {
    const sy = Math.min(size - 1, Math.max(0, (y + 0.5) * scale - 0.5));
    const y0 = Math.floor(sy), y1 = Math.min(size - 1, y0 + 1), fy = sy - y0;
    for (let x = 0; x < side; x++) {
      const sx = Math.min(size - 1, Math.max(0, (x + 0.5) * scale - 0.5));
      const x0 = Math.floor(sx), x1 = Math.min(size - 1, x0 + 1), fx = sx - x0;
      const top = src[y0 * size + x0] * (1 - fx) + src[y0 * size + x1] * fx;
      const bottom = src[y1 * size + x0] * (1 - fx) + src[y1 * size + x1] * fx;
      out[y * side + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}

/**
 * Recolour RGBA bytes in place where `weight` > 0 toward `hex` with `strength` in 0..1.
 * As Python's uint8 path: the new colour depends on the pixel's 8-bit L alone, so one 256-entry
 * RGB table per frame replaces a LAB -> RGB conversion per pixel.
 */
export function recolor(rgba, weight, hex, strength) {
  const [Lt, at, bt] = rgbToLab(...parseHex(hex));
  const n = weight.length;
  const L8 = new Uint8Array(n);
  let sumWL = 0, sumW = 0;
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    if (weight[i] <= 0) continue;
    L8[i] = Math.round(2.55 * lightness(rgba[j], rgba[j + 1], rgba[j + 2]));
    sumWL += weight[i] * L8[i];
    sumW += weight[i];
  }
  if (sumW === 0 || strength <= 0) return rgba;
  const meanL = sumWL / sumW / 2.55;
  const newMean = meanL + LIGHTNESS * (Lt - meanL);
  const gain = Math.min(1.5, Math.max(0.75, Math.sqrt(Math.max(newMean, 5) / Math.max(meanL, 5))));
  const table = [];
  for (let v = 0; v < 256; v++) {
    const L = Math.min(255, Math.max(0, Math.round(2.55 * (newMean + gain * (v / 2.55 - meanL)))));
    table.push(labToRgb(L / 2.55, at, bt));
  }
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    if (weight[i] <= 0) continue;
    const alpha = strength * weight[i];
    const target = table[L8[i]];
    for (let c = 0; c < 3; c++) rgba[j + c] = Math.round(rgba[j + c] + alpha * (target[c] - rgba[j + c]));
  }
  return rgba;
}
