// On/off switches from the environment ($ZEROVID_SUBGROUPS, $ZEROVID_GEMM_F16): one parser, one set of spellings.

/** true for on/1/true, false for off/0/false, null when unset, "auto" or unreadable (no --allow-env); anything else
 *  is an error naming the variable. */
export function envSwitch(name: string): boolean | null {
  let v: string | undefined;
  try {
    v = Deno.env.get(name)?.toLowerCase();
  } catch {
    return null; // no --allow-env: the defaults
  }
  if (!v || v === "auto") return null;
  if (["on", "1", "true"].includes(v)) return true;
  if (["off", "0", "false"].includes(v)) return false;
  throw new Error(`${name}=${v}: expected on, off or auto`);
}
