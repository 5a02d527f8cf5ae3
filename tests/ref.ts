// Plain TypeScript references for the kernels (float64 arithmetic).

/** erf to ~1e-15 (series for small |x|, continued fraction/complement otherwise via Numerical Recipes erfc). */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  // Numerical Recipes erfc (Chebyshev), fractional error < 1.2e-7 is not enough: use series + asymptotic instead.
  if (z < 3) {
    // Taylor series: erf(z) = 2/sqrt(pi) * sum (-1)^n z^(2n+1) / (n! (2n+1))
    let sum = 0, term = z, n = 0;
    while (Math.abs(term) > 1e-17 * Math.abs(sum) || n < 3) {
      sum += term / (2 * n + 1);
      n++;
      term *= -z * z / n;
      if (n > 200) break;
    }
    const r = 2 / Math.sqrt(Math.PI) * sum;
    return x < 0 ? -r : r;
  }
  void t;
  // Continued fraction for erfc (Lentz), accurate for z >= 3.
  let f = z, C = z, D = 0;
  for (let i = 1; i < 200; i++) {
    const a = i / 2;
    D = z + a * D;
    D = 1 / D;
    C = z + a / C;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-z * z) / Math.sqrt(Math.PI) / f;
  const r = 1 - erfc;
  return x < 0 ? -r : r;
}

export const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
export const silu = (v: number) => v * sigmoid(v);
export const gelu = (v: number) => 0.5 * v * (1 + erf(v / Math.SQRT2));
export const quickGelu = (v: number) => v * sigmoid(1.702 * v);
export const geluTanh = (v: number) => 0.5 * v * (1 + Math.tanh(0.7978845608028654 * (v + 0.044715 * v ** 3)));
