// Vulkan drivers (Mesa's WSI through libwayland) print "error: XDG_RUNTIME_DIR is invalid or not set in the
// environment." on the first WebGPU use when XDG_RUNTIME_DIR is unset or not an absolute path, which is the normal
// state in containers, services and ssh sessions. Compute needs no display, so before the first adapter request we
// point it at a private directory (0700, owned by us) and the commands start silently.
import { join } from "node:path";
import { tmpdir } from "node:os";

let done = false;

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** A directory only we can use: exists, is ours, mode 0700. */
function isPrivateDir(path: string): boolean {
  try {
    const st = Deno.lstatSync(path);
    const uid = Deno.uid();
    return st.isDirectory && (uid === null || st.uid === uid) && ((st.mode ?? 0) & 0o777) === 0o700;
  } catch {
    return false;
  }
}

/**
 * Sets XDG_RUNTIME_DIR to a private directory when it is unset, relative, or not a directory. Returns the value it
 * set, or null when the environment was already fine (or cannot be changed). Runs its check once per process.
 */
export function ensureRuntimeDir(): string | null {
  if (done) return null;
  done = true;
  const cur = env("XDG_RUNTIME_DIR");
  if (cur && cur.startsWith("/")) {
    try {
      if (Deno.statSync(cur).isDirectory) return null;
    } catch { /* missing: replace it */ }
  }
  try {
    // One directory per user, reused by every run, so nothing piles up in /tmp; a fresh one if that name is taken.
    const uid = Deno.uid();
    let dir = join(tmpdir(), `zerovid-runtime-${uid ?? "user"}`);
    try {
      Deno.mkdirSync(dir, { mode: 0o700 });
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    if (!isPrivateDir(dir)) dir = Deno.makeTempDirSync({ prefix: "zerovid-runtime-" });
    Deno.chmodSync(dir, 0o700);
    Deno.env.set("XDG_RUNTIME_DIR", dir);
    return dir;
  } catch {
    return null; // no env or write permission: the driver's warning is the only cost
  }
}
