// /v1/jobs: submit (JSON, or multipart/form-data with a `video` file), list, read one, cancel / delete.
import { Hono } from "hono";
import type { Context } from "hono";
import { validator } from "hono/validator";
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import type { JobRequest } from "../../pipeline/job/types.ts";
import type { ProbedVideo } from "../../pipeline/job/validate.ts";
import { type Mode, VIDEO_MODES } from "../../pipeline/job/modes.ts";
import { RequestError } from "../../pipeline/errors.ts";
import { probeFile, type VideoInfo } from "../../pipeline/media/probe.ts";
import { sampleIndices } from "../../pipeline/media/decode.ts";
import { QueueFullError } from "../queue/types.ts";
import type { JobBody } from "../schema.ts";
import { errorJson, jobView, type SubAppDeps, unknownJob } from "./context.ts";
import { bodyIntake } from "./intake.ts";
import { releaseWasm } from "./gc.ts";
import type { UploadedFile } from "./multipart.ts";

/** The frame count a video request will produce, as runJob samples it (for the frames limit). */
function sampledFrames(info: VideoInfo, body: JobBody): number {
  const start = (body.start as number | undefined) ?? 0, end = body.end as number | undefined;
  if (end !== undefined && end !== -1 && end <= start) {
    throw new RequestError("end", `must be after start (${start} s), got ${end} s`);
  }
  const fps = body.fps as number | undefined ?? (body.mode === "pix2pix" ? -1 : undefined);
  // A window the clip cannot give is a RequestError naming start, end or fps.
  return sampleIndices(info.frames, info.fps, {
    start: body.start as number | undefined,
    end: body.end as number | undefined,
    fps,
  }).indices.length;
}

export function jobsApp(deps: SubAppDeps): Hono {
  const { queue, models, limits, schema } = deps;
  const app = new Hono();

  // ---- Submit
  const isJson = (c: Context) =>
    /^application\/([\w.-]+\+)?json$/i.test((c.req.header("Content-Type") ?? "").split(";")[0].trim());
  const isForm = (c: Context) =>
    /^(multipart\/form-data|application\/x-www-form-urlencoded)$/i.test(
      (c.req.header("Content-Type") ?? "").split(";")[0].trim(),
    );

  app.post(
    "/",
    async (c, next) => {
      if (!isJson(c) && !isForm(c)) {
        return errorJson(
          c,
          415,
          `send application/json or multipart/form-data (got ${c.req.header("Content-Type") ?? "no Content-Type"})`,
          "body",
        );
      }
      await next();
    },
    bodyIntake({ queue, maxUploadBytes: limits.maxUploadMb * 2 ** 20, ...deps.intake }),
    validator("json", (v, c) => isJson(c) ? { body: schema.parse(v), video: null as UploadedFile | null } : null),
    async (c) => {
      const form = c.get("form"); // set by the intake for both form types
      const input = c.req.valid("json") ??
        (form ? ((f) => ({ body: schema.parse(f.body), video: f.video }))(schema.fromForm(form)) : null);
      if (!input) throw new RequestError("body", "empty request");
      const body = { ...input.body } as JobBody;
      const mode = body.mode as Mode;
      const notices: string[] = [];

      // The input video: present for the video modes only, a real video, within the frame limit.
      let videoPath: string | undefined;
      let probed: ProbedVideo | undefined;
      if (input.video) {
        if (!VIDEO_MODES.includes(mode)) throw new RequestError("video", `mode ${mode} takes no input video`);
        const { path, size } = input.video;
        if (size === 0) throw new RequestError("video", "the uploaded file is empty (0 bytes)");
        if (!path) throw new RequestError("video", "given more than once");
        const name = (body.videoName as string | undefined) ?? (input.video.name || "video");
        body.videoName = name;
        let info: VideoInfo;
        try {
          info = await probeFile(path, name);
        } catch (e) {
          throw new RequestError("video", `not a video the server can read: ${(e as Error).message}`);
        } finally {
          releaseWasm(); // each probe leaves a dead FFmpeg instance; see gc.ts
        }
        const sampled = sampledFrames(info, body);
        probed = { width: info.width, height: info.height, frames: sampled };
        const n = Math.min(sampled, (body.videoLength as number | undefined) ?? Infinity);
        if (n > limits.maxFrames) {
          body.videoLength = limits.maxFrames;
          notices.push(`the video gives ${n} frames; the first ${limits.maxFrames} are used (the server's limit)`);
        }
        videoPath = path; // the queue copies it from disk: the upload is never held whole in memory
      } else if (VIDEO_MODES.includes(mode)) {
        throw new RequestError(
          "video",
          `mode ${mode} needs an input video: send multipart/form-data with a video file`,
        );
      }
      // Model names -> paths inside the roots, then the pipeline's own checks and defaults (seed included; a
      // default that would break a limit is brought inside it).
      const { paths, byPath } = await models.resolveRequest(body as unknown as JobRequest);
      // With the probe, a video request is planned here too: one that cannot fit this GPU is refused now, unqueued.
      const full = await deps.validate(paths as JobRequest, limits, probed);
      const stored = models.namesOf(full, byPath);
      try {
        const job = await queue.submit(stored as JobRequest, videoPath);
        c.header("Location", `/v1/jobs/${job.id}`);
        // The job may have started already: a place in line only while it waits.
        const position = await queue.position(job.id);
        const status = position > 0 ? "queued" : (await queue.get(job.id))?.status ?? job.status;
        return c.json({
          id: job.id,
          status,
          position: status === "queued" ? position : null,
          ...(notices.length ? { notice: notices.join("; ") } : {}),
        }, 202);
      } catch (e) {
        if (e instanceof QueueFullError) {
          return errorJson(c, 429, e.message, null, { "Retry-After": String(e.retryAfter) });
        }
        throw e;
      }
    },
  );

  // ---- Read
  app.get(
    "/",
    zValidator("query", z.object({ limit: z.coerce.number().int().min(1).max(200).optional() }), (r, c) => {
      if (!r.success) return errorJson(c, 400, "limit: expected an integer in [1, 200]", "limit");
    }),
    async (c) => {
      const limit = c.req.valid("query").limit ?? 50;
      const jobs = await queue.list(limit);
      return c.json({ jobs: await Promise.all(jobs.map((j) => jobView(j, queue))) });
    },
  );

  app.get("/:id", async (c) => {
    const job = await queue.get(c.req.param("id"));
    return job ? c.json(await jobView(job, queue)) : unknownJob(c);
  });

  app.delete("/:id", async (c) => {
    const id = c.req.param("id");
    const what = await queue.cancel(id);
    if (!what) return unknownJob(c);
    if (what === "deleted") return c.json({ id, deleted: true });
    const job = await queue.get(id);
    if (!job) return c.json({ id, deleted: true });
    return c.json(await jobView(job, queue), what === "cancelling" ? 202 : 200);
  });

  return app;
}
