// LoRAs, embeddings, live previews and PNG frames through the HTTP API on the real pipeline (tiny models): the
// model list shows the files by kind, a job names them, its event stream carries `preview` events, the result of
// format png is a zip of the frames, and every finished job has a poster frame.
import { join } from "node:path";
import { assert, assertEquals } from "../fixtures/asserts.ts";
import { encodeSafetensors, f32 } from "../fixtures/safetensors_writer.ts";
import { previewAsProgress, runJob } from "../pipeline/job/run.ts";
import { validateRequest } from "../pipeline/job/validate.ts";
import { decodeVideo } from "../pipeline/media/decode.ts";
import { zipEntries } from "../pipeline/media/zip.ts";
import { ModelCache } from "../pipeline/model_cache.ts";
import { openServer } from "../routes/server.ts";
import { kohyaFile, makePairs, TINY } from "./lora_files.ts";
import { randn, testDevice } from "./util.ts";

interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

async function readEvents(base: string, id: string): Promise<SseEvent[]> {
  const res = await fetch(`${base}/v1/jobs/${id}/events`);
  assertEquals(res.status, 200);
  const out: SseEvent[] = [];
  let buf = "";
  for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) out.push({ event, data: JSON.parse(data) });
    }
  }
  return out;
}

/** A model root: tiny-sd, a LoRA in a subfolder, an embedding, and a .safetensors that is neither. */
async function root(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "zerovid-adapter-models-" });
  await Deno.symlink(TINY, join(dir, "tiny-sd"));
  await Deno.mkdir(join(dir, "styles"));
  await Deno.writeFile(join(dir, "styles", "anime.safetensors"), kohyaFile(await makePairs(600, 4, 2)));
  await Deno.writeFile(
    join(dir, "mystyle.safetensors"),
    encodeSafetensors({ emb_params: f32(randn(2 * 32, 4, 0.5), [2, 32]) }),
  );
  await Deno.writeFile(join(dir, "vae-part.safetensors"), encodeSafetensors({ "a.weight": f32(randn(4, 1), [2, 2]) }));
  return dir;
}

Deno.test({
  name: "server (GPU): LoRA + embedding job with preview events, PNG frames as a zip, poster frames",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const models = await root();
    const dev = await testDevice();
    const env = { dev, models: new ModelCache(dev), modelRoots: [models] };
    const dataDir = await Deno.makeTempDir({ prefix: "zerovid-adapter-server-" });
    const srv = await openServer({
      // As the GPU worker runs jobs: previews as progress events.
      runner: (req, hooks) => runJob(env, req, { ...hooks, onPreview: previewAsProgress(hooks.onProgress) }),
      validate: (r, limits, video) => validateRequest(r, dev, limits, video),
      dataDir,
      modelRoots: [models],
      log: () => {},
    });
    const ac = new AbortController();
    const http = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} }, srv.app.fetch);
    const base = `http://127.0.0.1:${http.addr.port}`;
    const post = (body: unknown) =>
      fetch(`${base}/v1/jobs`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    try {
      const list = (await (await fetch(`${base}/v1/models`)).json()).models as Record<string, unknown>[];
      const byName = Object.fromEntries(list.map((m) => [m.name, m]));
      assertEquals(byName["styles/anime.safetensors"]?.kind, "lora");
      assertEquals([byName["mystyle.safetensors"]?.kind, byName["mystyle.safetensors"]?.token], [
        "embedding",
        "mystyle",
      ]);
      assert(!("vae-part.safetensors" in byName), "a component's weights listed as a model");

      const t2v = { mode: "text2video", model: "tiny-sd", videoLength: 3, width: 64, height: 64, steps: 4, seed: 2 };
      const res = await post({
        ...t2v,
        prompt: "a mystyle cat",
        loras: [{ name: "styles/anime.safetensors", scale: 0.8 }],
        embeddings: ["mystyle.safetensors"],
        previewEvery: 2,
        format: "png",
      });
      const { id } = await res.json();
      assertEquals(res.status, 202);
      const events = await readEvents(base, id);
      assertEquals(events.at(-1)!.event, "done", JSON.stringify(events.at(-1)));
      const previews = events.filter((e) => e.event === "preview").map((e) => e.data);
      assert(previews.length >= 2, `${previews.length} preview events`);
      const last = previews.at(-1)!;
      assertEquals([last.frames, last.width, last.height, last.step], [3, 8, 8, last.total]);
      assert(String(last.image).startsWith("data:image/png;base64,"));
      // Previews are events only: the job's progress is a step, not a picture.
      const job = await (await fetch(`${base}/v1/jobs/${id}`)).json();
      assert(!JSON.stringify(job).includes("base64"), "a preview image stored in the job");
      assertEquals(job.params.loras, [{ name: "styles/anime.safetensors", scale: 0.8 }]);
      assertEquals(job.params.embeddings, ["mystyle.safetensors"]);
      assert(!JSON.stringify(job).includes(models), "the job shows a server path");

      const result = await fetch(`${base}/v1/jobs/${id}/result`);
      assertEquals(result.headers.get("content-type"), "application/zip");
      assert(/filename="zerovid-[0-9a-f]{8}\.zip"/.test(result.headers.get("content-disposition")!));
      const entries = zipEntries(new Uint8Array(await result.arrayBuffer()));
      assertEquals(entries.map((e) => e.name), ["frame_0001.png", "frame_0002.png", "frame_0003.png"]);

      const mp4 = await post({ ...t2v, prompt: "a dog", steps: 2 });
      const mp4Id = (await mp4.json()).id;
      await readEvents(base, mp4Id);
      for (const jid of [id, mp4Id]) {
        const poster = await fetch(`${base}/v1/jobs/${jid}/poster`);
        assertEquals([poster.status, poster.headers.get("content-type")], [200, "image/png"]);
        const f = await decodeVideo(new Uint8Array(await poster.arrayBuffer()), {}, "poster.png");
        assertEquals([f.width, f.height], [64, 64]);
      }

      // A model of another kind named as a LoRA, and an unknown embedding: 400 naming the field.
      for (
        const [body, field] of [[{ loras: [{ name: "tiny-sd" }] }, "loras"], [{ embeddings: ["x.st"] }, "embeddings"]]
      ) {
        const bad = await post({ ...t2v, prompt: "x", ...body as object });
        const err = await bad.json();
        assertEquals([bad.status, err.field], [400, field], JSON.stringify(err));
      }
      const unknownPoster = await fetch(`${base}/v1/jobs/nope/poster`);
      assertEquals(unknownPoster.status, 404);
      await unknownPoster.body?.cancel();
    } finally {
      await srv.close();
      ac.abort();
      await http.finished;
      env.models.dispose();
      await Deno.remove(models, { recursive: true });
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});
