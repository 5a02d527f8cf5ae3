// The cost of live previews: the same text-to-video run (tiny model) without previews and with them, alternated
// (and which goes first, too) so a busy machine slows both alike; the medians give the overhead (budget: 5 %).
import type { Device, DType } from "../../pipeline/gpu/device.ts";
import { StableDiffusion } from "../../pipeline/models/sd.ts";
import { type Preview, SeededNoise } from "../../pipeline/modes/common.ts";
import { text2video } from "../../pipeline/modes/text2video.ts";

export interface PreviewRow {
  dtype: DType;
  frames: number;
  size: number;
  steps: number;
  /** Previews per run (the default: about 10). */
  previews: number;
  runs: number;
  /** Median seconds per run without and with previews. */
  plainS: number;
  previewS: number;
  overheadPct: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function benchPreviews(
  dev: Device,
  dtype: DType,
  o: { dir: string; frames: number; size: number; steps: number; runs: number; log: (l: string) => void },
): Promise<PreviewRow> {
  const sd = await StableDiffusion.load(dev, o.dir, { dtype });
  try {
    const p = {
      prompt: "a panda",
      videoLength: o.frames,
      width: o.size,
      height: o.size,
      steps: o.steps,
      guidanceScale: 7.5,
      motionX: 4,
      motionY: 4,
    };
    let shown = 0;
    const run = async (previews: boolean) => {
      const t = performance.now();
      shown = 0;
      await text2video(sd, p, new SeededNoise(1), previews ? { preview: { onPreview: (_: Preview) => shown++ } } : {});
      return (performance.now() - t) / 1000;
    };
    await run(true); // warm-up: pipelines, buffers
    const plain: number[] = [], withPreviews: number[] = [];
    let previews = 0;
    for (let i = 0; i < o.runs; i++) {
      // Which goes first alternates too: the first run of a pair has been seen to pay for the one before it.
      if (i % 2) withPreviews.push(await run(true)), previews = shown, plain.push(await run(false));
      else plain.push(await run(false)), withPreviews.push(await run(true)), previews = shown;
      o.log(
        `previews ${dtype} run ${i + 1}/${o.runs}: ${plain.at(-1)!.toFixed(2)} s, with ${previews}: ` +
          `${withPreviews.at(-1)!.toFixed(2)} s`,
      );
    }
    const plainS = median(plain), previewS = median(withPreviews);
    return {
      dtype,
      frames: o.frames,
      size: o.size,
      steps: o.steps,
      previews,
      runs: o.runs,
      plainS,
      previewS,
      overheadPct: 100 * (previewS - plainS) / plainS,
    };
  } finally {
    sd.dispose();
  }
}
