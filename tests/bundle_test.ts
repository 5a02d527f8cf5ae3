// `deno task bundle` makes one file that runs on its own: bundle, copy it to an empty folder, generate a video
// with the built-in demo model from there, and start the server from it.
import { join } from "node:path";
import { probeVideo } from "../pipeline/media/probe.ts";

const root = new URL("..", import.meta.url).pathname;

Deno.test({
  name: "bundle: the single-file bundle generates a video and serves, from an empty folder",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "zerovid-bundle-" });
    try {
      const js = join(dir, "zerovid.js");
      const b = await new Deno.Command(Deno.execPath(), { args: ["bundle", "-q", "-o", js, "main.ts"], cwd: root })
        .output();
      if (!b.success) throw new Error(`deno bundle failed: ${new TextDecoder().decode(b.stderr)}`);
      const out = join(dir, "out.mp4");
      const env = { NO_COLOR: "1", ZEROVID_MODEL: "" };
      const run = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", js, "text2video", "--prompt", "a cat", "--video-length", "2", "--steps", "2", "--out", out],
        cwd: dir,
        env,
      }).output();
      const log = new TextDecoder().decode(run.stdout) + new TextDecoder().decode(run.stderr);
      if (!run.success) throw new Error(`bundle run failed:\n${log}`);
      if (!/demo model/.test(log)) throw new Error(`the demo model was not announced:\n${log}`);
      const info = await probeVideo(await Deno.readFile(out));
      if (info.frames !== 2 || info.width !== 64 || info.height !== 64) {
        throw new Error(`unexpected video: ${JSON.stringify(info)}`);
      }

      // The server is in the bundle too.
      const port = 20000 + Math.floor(Math.random() * 20000);
      const server = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", js, "serve", "--port", String(port), "--data-dir", join(dir, "data")],
        cwd: dir,
        env,
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      try {
        let health: Response | null = null;
        for (let i = 0; i < 100 && !health; i++) {
          await new Promise((r) => setTimeout(r, 200));
          health = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null);
        }
        if (!health?.ok) throw new Error("the bundled server did not answer /healthz");
        await health.body?.cancel();
        const page = await fetch(`http://127.0.0.1:${port}/`);
        const html = await page.text();
        if (!page.ok || !/<html/i.test(html)) throw new Error("the bundled server did not serve the page");
      } finally {
        server.kill("SIGTERM");
        await server.output();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
