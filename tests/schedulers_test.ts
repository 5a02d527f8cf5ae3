// Schedulers and Text2Video-Zero latent ops: CPU tables and timesteps against values diffusers 0.25.1 produced,
// input validation, and whole denoising loops recorded on the GPU without readback against float64 references.
// (Single-kernel checks live in tests/ops/scheduler.ts; the golden runner checks the stored reference cases.)
import { assertEquals, assertThrows } from "../fixtures/asserts.ts";
import type { Tensor } from "../pipeline/gpu/tensor.ts";
import {
  loadSchedulerConfig,
  noiseTables,
  schedulerConfig,
  SchedulerError,
  torchLinspaceF32,
} from "../pipeline/schedulers/config.ts";
import { DDIM, ddimTimesteps } from "../pipeline/schedulers/ddim.ts";
import { ddpmForward, forwardAlphaVec, forwardTimesteps } from "../pipeline/schedulers/ddpm_forward.ts";
import { EulerAncestral } from "../pipeline/schedulers/euler_ancestral.ts";
import { cfg, cfgPix2Pix } from "../pipeline/schedulers/guidance.ts";
import { motionFlow, motionGrid, warpLatents } from "../pipeline/modes/motion.ts";
import { assertClose, DTYPES, gpuTest, quantize, randn, up } from "./util.ts";

// Values from diffusers 0.25.1 / PyTorch 1.13 (float32), recorded from the golden cases.
const SD15_ALPHAS_CUMPROD: Record<number, number> = {
  0: 0.9991499781608582,
  1: 0.9982960224151611,
  499: 0.2776694595813751,
  500: 0.2763324975967407,
  881: 0.017185159027576447,
  941: 0.009117304347455502,
  981: 0.005775496829301119,
  999: 0.0046600960195064545,
};
const EULER_20_SIGMAS_HEAD = [14.614645004272461, 10.746849060058594, 8.081535339355469, 6.204951286315918];
const EULER_20_TIMESTEPS_HEAD = [999, 946.4210815429688, 893.8421020507812, 841.26318359375];

Deno.test("SD 1.5 noise tables match diffusers' float32 values", () => {
  const t = noiseTables(schedulerConfig({}));
  for (const [i, v] of Object.entries(SD15_ALPHAS_CUMPROD)) {
    assertEquals(t.alphasCumprod[+i], v, `alphas_cumprod[${i}]`);
  }
  assertEquals(t.betas[0], Math.fround(Math.fround(Math.sqrt(0.00085)) ** 2));
  assertEquals(t.alphas[500], Math.fround(1 - t.betas[500]));
  // Product of alphas[881:941] (Text2Video-Zero forward_loop), float32 in torch's reduction order.
  assertEquals(forwardAlphaVec(881, 941, schedulerConfig({})), 0.5310642719268799);
});

Deno.test("torchLinspaceF32 endpoints and length", () => {
  const l = torchLinspaceF32(0.1, 0.9, 37);
  assertEquals(l.length, 37);
  assertEquals(l[0], Math.fround(0.1));
  assertEquals(l[36], Math.fround(0.9));
  assertEquals(Array.from(torchLinspaceF32(2, 5, 1)), [2]);
  for (let i = 1; i < 37; i++) if (!(l[i] > l[i - 1])) throw new Error(`not increasing at ${i}`);
});

Deno.test("DDIM timesteps for each spacing (numpy semantics)", () => {
  const d = new DDIM(schedulerConfig({}));
  assertEquals(Array.from(d.setTimesteps(50)), Array.from({ length: 50 }, (_, i) => 981 - 20 * i));
  assertEquals(d.timesteps, d.setTimesteps(50));
  assertEquals(Array.from(d.setTimesteps(20)).slice(0, 3), [951, 901, 851]);
  assertEquals(Array.from(ddimTimesteps(7, 1000, "linspace", 1)), [999, 832, 666, 500, 333, 166, 0]);
  assertEquals(Array.from(ddimTimesteps(7, 1000, "trailing", 1)), [999, 856, 713, 570, 428, 285, 142]);
  assertEquals(Array.from(ddimTimesteps(3, 1000, "trailing", 1)), [999, 666, 332]);
  assertThrows(() => ddimTimesteps(61, 1000, "trailing", 1), SchedulerError, "gives 62 timesteps");
  assertEquals(d.prevTimestep(981), 931);
  assertEquals(Array.from(d.setTimesteps(1)), [1]);
});

Deno.test("Euler-ancestral timesteps, sigmas and init_noise_sigma", () => {
  const e = new EulerAncestral(schedulerConfig({}));
  assertEquals(e.spacing, "linspace"); // diffusers' class default when the config has no timestep_spacing
  const ts = e.setTimesteps(20);
  assertEquals(Array.from(ts.slice(0, 4)), EULER_20_TIMESTEPS_HEAD);
  assertEquals(ts[19], 0);
  assertEquals(Array.from(e.sigmas.slice(0, 4)), EULER_20_SIGMAS_HEAD);
  assertEquals(e.sigmas.length, 21);
  assertEquals(e.sigmas[20], 0);
  assertEquals(e.initNoiseSigma, EULER_20_SIGMAS_HEAD[0]);
  assertEquals(e.indexOf(946.4210815429688), 1);
  const lead = new EulerAncestral(schedulerConfig({ timestep_spacing: "leading" }));
  assertEquals(Array.from(lead.setTimesteps(7)), [853, 711, 569, 427, 285, 143, 1]);
  const m = lead.sigmas[0];
  assertEquals(lead.initNoiseSigma, Math.fround(Math.sqrt(Math.fround(Math.fround(m * m) + 1))));
  const trail = new EulerAncestral(schedulerConfig({ timestep_spacing: "trailing" }));
  assertEquals(Array.from(trail.setTimesteps(7)), [999, 856, 713, 570, 428, 285, 142]);
});

Deno.test("Text2Video-Zero t0/t1 indices", () => {
  const ts = new DDIM(schedulerConfig({})).setTimesteps(50);
  assertEquals(forwardTimesteps(ts, 44, 47), { t0: 881, t1: 941 });
  assertThrows(() => forwardTimesteps(ts, 47, 44), SchedulerError, "0 <= t0 < t1 <= 49");
  assertThrows(() => forwardTimesteps(new DDIM(schedulerConfig({})).setTimesteps(30), 44, 47), SchedulerError);
  assertThrows(() => forwardAlphaVec(941, 881, schedulerConfig({})), SchedulerError, "t0 < t1");
});

Deno.test("scheduler config: loading, defaults and refusals", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/scheduler_config.json`,
      JSON.stringify({ _class_name: "PNDMScheduler", beta_schedule: "linear", beta_start: 0.0001, beta_end: 0.02 }),
    );
    const c = await loadSchedulerConfig(dir);
    assertEquals(c.beta_schedule, "linear");
    assertEquals(c.steps_offset, 1);
    assertEquals(c.timestep_spacing, undefined);
    assertEquals(c._class_name, "PNDMScheduler");
    assertEquals((await loadSchedulerConfig(`${dir}/scheduler_config.json`)).beta_end, 0.02);
    const t = noiseTables(c);
    assertEquals(t.betas[0], Math.fround(0.0001));
    assertEquals(t.betas[999], Math.fround(0.02));
    await Deno.writeTextFile(`${dir}/bad.json`, JSON.stringify({ beta_schedule: "cubic" }));
    await loadSchedulerConfig(`${dir}/bad.json`).then(
      () => {
        throw new Error("accepted a bad schedule");
      },
      (e) => assertEquals((e as Error).message.includes('beta_schedule "cubic"'), true),
    );
    await loadSchedulerConfig(`${dir}/missing.json`).then(
      () => {
        throw new Error("accepted a missing file");
      },
      (e) => assertEquals(e instanceof SchedulerError, true),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assertThrows(() => schedulerConfig({ thresholding: true }), SchedulerError, "thresholding");
  assertThrows(() => schedulerConfig({ rescale_betas_zero_snr: true }), SchedulerError, "rescale_betas_zero_snr");
  assertThrows(() => schedulerConfig({ timestep_spacing: "even" }), SchedulerError, "timestep_spacing");
  assertThrows(() => schedulerConfig({ prediction_type: "flow" }), SchedulerError, "prediction_type");
  assertThrows(() => schedulerConfig({ num_train_timesteps: 0 }), SchedulerError, "num_train_timesteps");
  const cos = noiseTables(schedulerConfig({ beta_schedule: "squaredcos_cap_v2" }));
  if (!(cos.betas[999] <= Math.fround(0.999) && cos.betas[0] > 0)) throw new Error("cosine betas out of range");
});

Deno.test("DDIM / Euler-ancestral reject bad step counts and timesteps (CPU side)", () => {
  const d = new DDIM(schedulerConfig({}));
  assertThrows(() => d.coefficients(981), SchedulerError, "call setTimesteps");
  for (const n of [0, -3, 2.5, 1001, NaN]) assertThrows(() => d.setTimesteps(n), SchedulerError, "step count");
  assertThrows(() => d.setTimesteps(1000), SchedulerError, "outside"); // leading + steps_offset 1 reaches 1000
  d.setTimesteps(50);
  assertThrows(() => d.coefficients(980), SchedulerError, "not one of the 50 timesteps");
  assertThrows(() => d.coefficients(981, -1), SchedulerError, "eta");
  const e = new EulerAncestral(schedulerConfig({}));
  assertThrows(() => e.coefficients(0), SchedulerError, "call setTimesteps");
  assertThrows(() => e.setTimesteps(0), SchedulerError, "step count");
  e.setTimesteps(10);
  for (const i of [-1, 10, 1.5]) assertThrows(() => e.coefficients(i), SchedulerError, "outside [0, 9]");
  assertThrows(() => e.indexOf(500), SchedulerError, "not in the current schedule");
  assertThrows(() => new EulerAncestral(schedulerConfig({ prediction_type: "sample" })), SchedulerError);
  // The last step lands on x0: sigma_to = 0 gives sigma_up = sigma_down = 0.
  const last = e.coefficients(9);
  assertEquals([last.sigmaUp, last.sigmaDown, last.eps], [0, 0, -e.sigmas[9]]);
});

Deno.test("motion flow and grid", () => {
  assertEquals(Array.from(motionFlow([0, 1, 7], 12, -8)), [0, -0, 12, -8, 84, -56]); // -8.0 * 0 is -0.0 in Python too
  // id 0, 512x512: the grid is the identity grid shifted by -0.5 px ((X/512)*2-1 at pixel X).
  const g = motionGrid(512, 512, [0], 12, 12);
  assertEquals([g[0], g[1]], [-1, -1]);
  assertThrows(() => motionGrid(8, 8, [1, -2], 12, 12), Error, "non-negative integers");
});

gpuTest("GPU ops reject bad shapes and missing noise", async (dev) => {
  const x = up(dev, randn(2 * 4 * 3 * 5, 1), [2, 4, 3, 5], "f32");
  const y = up(dev, randn(2 * 4 * 3 * 6, 2), [2, 4, 3, 6], "f32");
  const z = up(dev, randn(3 * 4 * 3 * 5, 3), [3, 4, 3, 5], "f32");
  const d = new DDIM(schedulerConfig({}));
  d.setTimesteps(50);
  assertThrows(() => d.step(y, 981, x), Error, "model output has shape [2,4,3,6]");
  assertThrows(() => d.step(x, 981, x, { eta: 0.5 }), SchedulerError, "eta > 0 needs opts.noise");
  assertThrows(() => d.step(x, 982, x), SchedulerError, "not one of");
  const e = new EulerAncestral(schedulerConfig({}));
  e.setTimesteps(5);
  assertThrows(() => e.step(x, 0, x, y), Error, "noise has shape");
  assertThrows(() => e.step(x, 5, x, x), SchedulerError, "outside [0, 4]");
  assertThrows(() => ddpmForward(x, y, 881, 941, schedulerConfig({})), Error, "eps has shape");
  assertThrows(() => cfg(z, 7.5), Error, "expected [2F, ...]");
  assertThrows(() => cfgPix2Pix(x, 7.5, 1.5), Error, "expected [3F, ...]");
  assertThrows(() => warpLatents(z, [1, 2], 12, 12), Error, "3 frames but 2 frame ids");
  assertThrows(() => warpLatents(x.view([8, 3, 5]), [1], 12, 12), Error, "expected [F, C, h, w]");
  await dev.sync();
  x.release(), y.release(), z.release();
});

/** Read and release. */
async function take(t: Tensor): Promise<Float32Array> {
  const v = await t.read();
  t.release();
  return v;
}

for (const dtype of DTYPES) {
  // The references round to the storage dtype after every step as the GPU does, so f16 differs only by rare
  // one-ulp rounding flips (well inside the project's f16 scheduler budget of rel_l2 1e-2).
  const tol = (f32: number) => dtype === "f32" ? { relL2: f32 } : { relL2: 1e-3 };

  gpuTest(`DDIM 50-step loop recorded without readback (${dtype})`, async (dev) => {
    const shape = [2, 4, 6, 5], n = 2 * 4 * 6 * 5;
    const d = new DDIM(schedulerConfig({}));
    const ts = d.setTimesteps(50);
    const x0 = quantize(randn(n, 5), dtype);
    const epsAll = Array.from(ts, (_, i) => quantize(randn(n, 100 + i), dtype));
    let x = up(dev, x0, shape, dtype);
    const eps = epsAll.map((e) => up(dev, e, shape, dtype));
    dev.flush();
    for (let i = 0; i < ts.length; i++) {
      const r = d.step(eps[i], ts[i], x);
      x.release(), r.x0.release();
      x = r.prev;
    }
    const got = await take(x);
    eps.forEach((e) => e.release());
    // float64 reference with diffusers' formulas; rounding to the storage dtype after every step like the GPU.
    const ac = d.alphasCumprod;
    let ref = Float64Array.from(x0);
    ts.forEach((t, i) => {
      const a = ac[t], p = t - 20 >= 0 ? ac[t - 20] : ac[0];
      const next = ref.map((s, k) => {
        const e = epsAll[i][k];
        return Math.sqrt(p) * ((s - Math.sqrt(1 - a) * e) / Math.sqrt(a)) + Math.sqrt(1 - p) * e;
      });
      ref = Float64Array.from(quantize(Float32Array.from(next), dtype));
    });
    assertClose(got, ref, tol(2e-6), `DDIM loop ${dtype}`);
  });

  gpuTest(`Euler-ancestral 20-step loop recorded without readback (${dtype})`, async (dev) => {
    const shape = [3, 4, 5, 7], n = 3 * 4 * 5 * 7;
    const e = new EulerAncestral(schedulerConfig({}));
    e.setTimesteps(20);
    const init = quantize(randn(n, 9), dtype);
    const epsAll = Array.from({ length: 20 }, (_, i) => quantize(randn(n, 200 + i), dtype));
    const noiseAll = Array.from({ length: 20 }, (_, i) => quantize(randn(n, 300 + i), dtype));
    const eps = epsAll.map((v) => up(dev, v, shape, dtype)), noise = noiseAll.map((v) => up(dev, v, shape, dtype));
    const n0 = up(dev, init, shape, dtype);
    let x = e.scaleInitNoise(n0);
    n0.release();
    let scaledSum: Tensor | null = null;
    for (let i = 0; i < 20; i++) {
      const s = e.scaleModelInput(x, i);
      if (i === 10) scaledSum = s;
      else s.release();
      const next = e.step(eps[i], i, x, noise[i]);
      x.release();
      x = next;
    }
    const got = await take(x), gotScaled = await take(scaledSum!);
    eps.forEach((t) => t.release()), noise.forEach((t) => t.release());
    const q = (v: Float64Array) => Float64Array.from(quantize(Float32Array.from(v), dtype));
    let ref = q(Float64Array.from(init, (v) => v * e.initNoiseSigma));
    let refScaled = new Float64Array(n);
    for (let i = 0; i < 20; i++) {
      const s = e.sigmas[i], to = e.sigmas[i + 1];
      if (i === 10) refScaled = q(ref.map((v) => v / Math.sqrt(s * s + 1)));
      const upS = Math.sqrt(to ** 2 * (s ** 2 - to ** 2) / s ** 2), down = Math.sqrt(to ** 2 - upS ** 2);
      ref = q(ref.map((v, k) => {
        const x0 = v - s * epsAll[i][k];
        return v + (v - x0) / s * (down - s) + noiseAll[i][k] * upS;
      }));
    }
    assertClose(got, ref, tol(2e-6), `Euler loop ${dtype}`);
    assertClose(gotScaled, refScaled, tol(2e-6), `Euler scale_model_input ${dtype}`);
  });

  gpuTest(`Text2Video-Zero latent chain: warp one latent, DDPM forward, CFG (${dtype})`, async (dev) => {
    const [C, h, w] = [4, 64, 64], F = 3, n = C * h * w;
    const c = schedulerConfig({});
    const lat = quantize(randn(n, 11), dtype), eps = quantize(randn(F * n, 12), dtype);
    const uc = quantize(randn(2 * F * n, 13), dtype);
    const tl = up(dev, lat, [1, C, h, w], dtype), te = up(dev, eps, [F, C, h, w], dtype);
    const stacked = up(dev, uc, [2 * F, C, h, w], dtype);
    const warped = warpLatents(tl, [0, 2, 7], 12, 12);
    const xt1 = ddpmForward(warped, te, 881, 941, c);
    const guided = cfg(stacked, 7.5);
    const gotW = await take(warped), gotX = await take(xt1), gotG = await take(guided);
    tl.release(), te.release(), stacked.release();
    // METHOD §1.3 at 64x64 with strength 12: frame id k reads (x, y) + rne(1.5k - 1/16) away from the edges, so
    // id 0 is the identity, id 2 reads +3 and id 7 reads +10 (positive strength moves content up-left).
    [0, 3, 10].forEach((off, f) => {
      for (let ch = 0; ch < C; ch++) {
        for (let y = 0; y + off < h; y++) {
          for (let x = 0; x + off < w - 1; x++) {
            const got = gotW[((f * C + ch) * h + y) * w + x], want = lat[(ch * h + y + off) * w + x + off];
            if (got !== want) throw new Error(`warp frame ${f} (${ch},${y},${x}): ${got} != ${want}`);
          }
        }
      }
    });
    const A = forwardAlphaVec(881, 941, c);
    const wantX = Float32Array.from(gotW, (v, i) => Math.sqrt(A) * v + Math.sqrt(1 - A) * eps[i]);
    assertClose(gotX, quantize(wantX, dtype), tol(1e-6), `ddpm forward ${dtype}`);
    const wantG = Float32Array.from({ length: F * n }, (_, i) => uc[i] + 7.5 * (uc[F * n + i] - uc[i]));
    assertClose(gotG, quantize(wantG, dtype), tol(1e-6), `cfg ${dtype}`);
  });
}
