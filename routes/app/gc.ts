// Each probe of an upload runs in a fresh FFmpeg WebAssembly instance (a reused one corrupts its memory), and a
// dead instance keeps its heap's touched pages (~5 MB) resident until V8 collects it. V8 does not count that memory
// as pressure, so under a stream of uploads dead instances pile up (measured: a 1001-request barrage took the server
// from ~200 to ~475 MB). A full collection shortly after the probes settle returns it; it is batched so that a
// burst of uploads costs one collection, not one each.
import v8 from "node:v8";
import vm from "node:vm";

let collect: (() => void) | null | undefined;

/** V8's gc(), exposed at run time (no --expose-gc on the command line, which a compiled binary cannot take). */
function gcFunction(): (() => void) | null {
  if (collect === undefined) {
    try {
      v8.setFlagsFromString("--expose-gc");
      collect = vm.runInNewContext("gc") as () => void;
    } catch {
      collect = null; // no way to force it: V8 collects at its own pace
    }
  }
  return collect;
}

const DELAY_MS = 50;
/** Instances released since the last collection; past this many, collect now rather than after DELAY_MS. */
const BATCH = 8;
let pending = 0;
let timer: ReturnType<typeof setTimeout> | null = null;

function run(): void {
  if (timer) clearTimeout(timer);
  timer = null;
  pending = 0;
  gcFunction()?.();
}

/** Says that a WebAssembly instance just became garbage; a full collection follows soon. */
export function releaseWasm(): void {
  if (++pending >= BATCH) return run();
  if (!timer) {
    timer = setTimeout(run, DELAY_MS);
    Deno.unrefTimer(timer); // never keeps the process alive
  }
}
