// The page with LoRAs, embeddings and live previews in a real browser (headless Chromium, phone screen): the user
// picks a LoRA with a scale and an embedding from the server's model list, asks for PNG frames, watches the preview
// strip replace the spinner while the job denoises, and sees the poster frame in the result and the recent-jobs
// list. Chromium must be installed (see tests/browser_test.ts).
import { join } from "node:path";
import { chromium } from "playwright-core";
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { encodeSafetensors, f32 } from "../fixtures/safetensors_writer.ts";
import { previewAsProgress, runJob } from "../pipeline/job/run.ts";
import { validateRequest } from "../pipeline/job/validate.ts";
import { ModelCache } from "../pipeline/model_cache.ts";
import { openServer } from "../routes/server.ts";
import { kohyaFile, makePairs, TINY } from "./lora_files.ts";
import { randn, testDevice } from "./util.ts";

async function findChromium(): Promise<string> {
  const env = Deno.env.get("CHROMIUM_PATH");
  const candidates = env ? [env] : ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];
  for (const c of candidates) {
    if ((await Deno.stat(c).catch(() => null))?.isFile) return c;
  }
  throw new Error(`Chromium not found (looked at ${candidates.join(", ")}): install it or set CHROMIUM_PATH`);
}

Deno.test({
  name: "browser: pick a LoRA with a scale and an embedding, watch the preview strip, PNG frames and poster frames",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const executablePath = await findChromium();
    const root = await Deno.makeTempDir({ prefix: "zerovid-browser-models-" });
    await Deno.symlink(TINY, join(root, "tiny-sd"));
    await Deno.writeFile(join(root, "watercolor.safetensors"), kohyaFile(await makePairs(700, 4, 4)));
    await Deno.writeFile(
      join(root, "mystyle.safetensors"),
      encodeSafetensors({ emb_params: f32(randn(32, 3, 0.5), [1, 32]) }),
    );
    const dev = await testDevice();
    const models = new ModelCache(dev);
    const dir = await Deno.makeTempDir({ prefix: "zerovid-browser-" });
    const srv = await openServer({
      dataDir: dir,
      modelRoots: [root],
      // As the GPU worker runs jobs: previews as progress events.
      runner: (req, hooks) =>
        runJob({ dev, models, modelRoots: [root] }, req, { ...hooks, onPreview: previewAsProgress(hooks.onProgress) }),
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
      args: ["--no-sandbox", "--disable-dev-shm-usage"],
      timeout: 60_000,
    });
    try {
      const page = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
      await page.goto(`${base}/`);
      await page.waitForSelector("#tabs button");
      const form = page.locator("#panel form");
      await form.locator("textarea[name=prompt]").fill("a mystyle panda");

      // The pickers list the server's files: the LoRA with a scale, the embedding with its word.
      const lora = form.locator("fieldset[data-list=loras] label.pick", { hasText: "watercolor.safetensors" });
      await lora.locator("input[type=checkbox]").check();
      await lora.locator("input.scale").fill("0.6");
      const emb = form.locator("fieldset[data-list=embeddings] label.pick", { hasText: "mystyle.safetensors" });
      assert((await emb.textContent())!.includes("“mystyle”"), "the embedding's word is not shown");
      await emb.locator("input[type=checkbox]").check();
      const overflow = await page.evaluate<number>("document.documentElement.scrollWidth - innerWidth");
      assert(overflow <= 0, `the page is ${overflow}px wider than a phone screen`);

      await form.locator("summary").click();
      for (const [name, value] of [["videoLength", "3"], ["width", "64"], ["height", "64"], ["steps", "8"]]) {
        await form.locator(`input[name=${name}]`).fill(value);
      }
      await form.locator("input[name=previewEvery]").fill("1");
      await form.locator("select[name=format]").selectOption("png");
      // Record every preview the page shows and whether the spinner was hidden then.
      await page.evaluate(`(() => {
        const img = document.querySelector("#preview"), spin = document.querySelector("#spinner");
        globalThis.__previews = [];
        new MutationObserver(() => {
          if (img.src.startsWith("data:image/png")) {
            globalThis.__previews.push({ step: img.dataset.step, hidden: img.hidden, spinner: spin.hidden });
          }
        }).observe(img, { attributes: true, attributeFilter: ["src"] });
      })()`);
      await form.locator("button[type=submit]").click();
      await page.waitForFunction("globalThis.__previews.length > 0", undefined, { timeout: 120_000 });
      await page.waitForFunction(
        "(() => { const s = document.querySelector('#job-status').textContent; return /^(done|failed)/.test(s); })()",
        undefined,
        { timeout: 180_000 },
      );
      assert(/^done in/.test(await page.locator("#job-status").textContent() ?? ""), "the job did not succeed");
      const previews = await page.evaluate<{ step: string; spinner: boolean }[]>("globalThis.__previews");
      console.log(`  previews shown at steps ${previews.map((p) => p.step).join(", ")}`);
      assert(previews.length >= 2, `${previews.length} previews`);
      assert(previews.every((p) => p.spinner), "the spinner stayed beside the preview");
      const steps = previews.map((p) => Number(p.step));
      assert(steps.every((s, i) => i === 0 || s > steps[i - 1]), `preview steps ${steps}`);

      // The request carried the picks; the result is the frames (zip) with the poster shown.
      const jobs = (await (await fetch(`${base}/v1/jobs`)).json()).jobs;
      assertEquals(jobs[0].params.loras, [{ name: "watercolor.safetensors", scale: 0.6 }]);
      assertEquals(jobs[0].params.embeddings, ["mystyle.safetensors"]);
      assertEquals(jobs[0].result.format, "png");
      const posterLoaded = (sel: string) =>
        page.waitForFunction(
          `(() => { const i = document.querySelector(${JSON.stringify(sel)}); return !!i && i.naturalWidth > 0; })()`,
          undefined,
          { timeout: 30_000 },
        );
      await posterLoaded("#result-img");
      assert((await page.locator("#result-img").getAttribute("src"))!.includes("/poster"));
      assert((await page.locator("#download").getAttribute("download"))!.endsWith(".zip"));
      await posterLoaded("#jobs li img.poster");
      assertEquals(errors, []);
    } finally {
      await browser.close();
      await srv.close();
      ac.abort();
      await http.finished;
      models.dispose();
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(root, { recursive: true });
    }
  },
});
