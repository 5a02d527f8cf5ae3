// The web page in a real browser: headless Chromium (playwright-core, the system's chromium binary) on a
// phone-sized screen submits a tiny-model text-to-video job, watches the progress bar move, and sees the result
// load in the <video> element. Chromium must be installed (Debian/Ubuntu: apt-get install -y chromium) or named by
// $CHROMIUM_PATH; without it this test fails and says so.
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { chromium } from "playwright-core";
import { testDevice } from "./util.ts";
import { ModelCache } from "../pipeline/model_cache.ts";
import { runJob } from "../pipeline/job/run.ts";
import { validateRequest } from "../pipeline/job/validate.ts";
import { openServer } from "../routes/server.ts";
import { GOLDEN_MODELS } from "../fixtures/paths.ts";

const GOLDEN = GOLDEN_MODELS;

async function findChromium(): Promise<string> {
  const env = Deno.env.get("CHROMIUM_PATH");
  const candidates = env ? [env] : [
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
    "/usr/bin/google-chrome-stable",
    "/snap/bin/chromium",
  ];
  for (const c of candidates) {
    if ((await Deno.stat(c).catch(() => null))?.isFile) return c;
  }
  throw new Error(
    `Chromium not found (looked at ${candidates.join(", ")}): the browser test needs it. Install it ` +
      "(Debian/Ubuntu: apt-get install -y chromium) or set CHROMIUM_PATH to a Chromium/Chrome binary.",
  );
}

Deno.test({
  name: "browser: the page submits a tiny text-to-video job, shows progress, and plays the result (phone screen)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const executablePath = await findChromium();
    const dev = await testDevice();
    const models = new ModelCache(dev);
    const dir = await Deno.makeTempDir({ prefix: "zerovid-browser-" });
    const srv = await openServer({
      dataDir: dir,
      modelRoots: [GOLDEN],
      runner: (req, hooks) => runJob({ dev, models, modelRoots: [GOLDEN] }, req, hooks),
      validate: (r, limits, video) => validateRequest(r, dev, limits, video),
      health: () => ({ adapter: dev.adapterName, ok: true }),
      log: () => {},
    });
    const ac = new AbortController();
    const http = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} }, srv.app.fetch);
    const base = `http://127.0.0.1:${http.addr.port}`;
    const browser = await chromium.launch({
      executablePath,
      headless: true,
      args: ["--no-sandbox", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"],
      timeout: 60_000,
    });
    try {
      const page = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
      await page.goto(`${base}/`);
      await page.waitForSelector("#tabs button");
      const tabs = await page.locator("#tabs button").allTextContents();
      assertEquals(tabs, ["Text to video", "Video editing", "Pose", "Edges", "Depth", "Edges + custom model"]);
      // Every tab has its form, with the video upload where the mode needs one.
      for (const [i, name] of tabs.entries()) {
        await page.locator("#tabs button").nth(i).click();
        const hasVideo = await page.locator("#panel input[type=file][name=video]").count();
        assertEquals([name, hasVideo], [name, name === "Text to video" ? 0 : 1]);
      }
      // The page fits a phone screen: nothing wider than the viewport.
      const overflow = await page.evaluate<number>("document.documentElement.scrollWidth - innerWidth");
      assert(overflow <= 0, `the page is ${overflow}px wider than a phone screen`);

      await page.locator("#tabs button", { hasText: "Text to video" }).click();
      const form = page.locator("#panel form");
      await form.locator("textarea[name=prompt]").fill("a tiny panda");
      await form.locator("summary").click();
      // Every option input is the server's field registry (GET /v1/fields): its range, step and default.
      const fieldsRes = await fetch(`${base}/v1/fields`);
      const registry = (await fieldsRes.json()).fields.text2video as {
        name: string;
        kind: string;
        min?: number;
        max?: number;
      }[];
      const inputs = await form.locator("details input[type=number]").evaluateAll((els) =>
        els.map((e) => {
          const i = e as unknown as { name: string; min: string; max: string };
          return {
            name: i.name,
            min: i.min === "" ? undefined : Number(i.min),
            max: i.max === "" ? undefined : Number(i.max),
          };
        })
      );
      const numeric = registry.filter((f) => f.kind === "int" || f.kind === "number").map(({ name, min, max }) => ({
        name,
        min,
        max,
      }));
      assertEquals(inputs, numeric);
      for (const [name, value] of [["videoLength", "2"], ["width", "64"], ["height", "64"], ["steps", "3"]]) {
        await form.locator(`input[name=${name}]`).fill(value);
      }
      await form.locator("select[name=format]").selectOption("mp4");
      // Watch the bar: the page records every value it shows (a MutationObserver, so no step is missed).
      await page.evaluate(`(() => {
        const bar = document.querySelector("#progress"), stage = document.querySelector("#job-stage");
        globalThis.__seen = [];
        const note = () => globalThis.__seen.push(bar.value + "/" + bar.max + " " + stage.textContent);
        new MutationObserver(note).observe(bar, { attributes: true });
        new MutationObserver(note).observe(stage, { childList: true, characterData: true, subtree: true });
      })()`);
      const t0 = performance.now();
      await form.locator("button[type=submit]").click();

      const video = page.locator("#result-video");
      await video.waitFor({ state: "attached", timeout: 120_000 });
      await page.waitForFunction(
        "(() => { const v = document.querySelector('#result-video'); return !!v && (v.readyState >= 2 || !!v.error); })()",
        undefined,
        { timeout: 30_000 },
      );
      const state = await page.evaluate<{
        readyState: number;
        error: string | null;
        width: number;
        height: number;
        duration: number;
        src: string;
      }>(`(() => {
        const v = document.querySelector("#result-video");
        return { readyState: v.readyState, error: v.error ? v.error.code + " " + v.error.message : null,
          width: v.videoWidth, height: v.videoHeight, duration: v.duration, src: v.currentSrc };
      })()`);
      console.log(
        `  result loaded ${((performance.now() - t0) / 1000).toFixed(1)} s after submit: ${JSON.stringify(state)}`,
      );
      assertEquals(state.error, null, "the browser could not decode the result");
      assert(state.readyState >= 2, `readyState ${state.readyState}`);
      assertEquals([state.width, state.height], [64, 64]);
      assert(state.duration > 0.4 && state.duration < 0.6, `duration ${state.duration}`); // 2 frames at 4 fps

      // The bar moved through the job (denoising steps seen partway, not just empty and full).
      const values = await page.evaluate<string[]>("globalThis.__seen");
      console.log(`  progress seen: ${values.filter((v, i) => v !== values[i - 1]).join(" | ")}`);
      assert(values.some((v) => /denoise \d+\/\d+/.test(v)), "no denoising step shown");
      assert(
        values.some((v) => {
          const [val, max] = v.split(" ")[0].split("/").map(Number);
          return val > 0 && val < max;
        }),
        "the bar never showed partial progress",
      );
      assert(/^done in/.test(await page.locator("#job-status").textContent() ?? ""));
      const download = await page.locator("#download").getAttribute("href");
      assert(download?.includes("download=1"), String(download));
      // The recent jobs list shows it.
      await page.waitForSelector("#jobs li .badge.succeeded");
      assertEquals(errors, []);
    } finally {
      await browser.close();
      await srv.close();
      ac.abort();
      await http.finished;
      models.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
