import { ffmpegModule } from "../pipeline/media/ffmpeg.ts";
import { probeFile } from "../pipeline/media/probe.ts";
import v8 from "node:v8";
import vm from "node:vm";
const flags = Deno.args[0];
if (flags) v8.setFlagsFromString(flags);
v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc");
const rss = () => (Deno.memoryUsage().rss / 2 ** 20).toFixed(0);
let peak = 0;
const iv = setInterval(() => peak = Math.max(peak, Deno.memoryUsage().rss / 2 ** 20), 5);
console.log("start", rss());
await ffmpegModule();
console.log("compiled", rss(), "peak", peak.toFixed(0));
await Deno.writeFile("/tmp/g/n.bin", crypto.getRandomValues(new Uint8Array(65536)));
for (let i = 0; i < 3; i++) {
  await probeFile("/tmp/g/n.bin").catch(() => {});
  console.log("probe", i, rss(), "peak", peak.toFixed(0));
}
gc();
await new Promise((r) => setTimeout(r, 100));
console.log("gc", rss(), "peak", peak.toFixed(0));
for (let i = 0; i < 20; i++) {
  await probeFile("fixtures/media/clip_testsrc_128x96_8fps.mp4").catch(() => {});
  gc();
}
await new Promise((r) => setTimeout(r, 100));
console.log("20 more", rss(), "peak", peak.toFixed(0));
clearInterval(iv);
