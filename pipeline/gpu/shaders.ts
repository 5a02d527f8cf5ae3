// Specialise a WGSL kernel: the storage type `T` (f32 or f16) and compile-time constants are prepended, so
// each `shaders/*.wgsl` file is written once and compiled per dtype and shape class.
import type { DType } from "./device.ts";

/** Compile-time constants; `{ type }` declares a type alias (e.g. a kernel's output type that differs from T). */
export type Consts = Record<string, number | boolean | string | { type: string }>;

export function shaderSource(body: string, consts: Consts, dtype: DType): string {
  const lines: string[] = [];
  if (dtype === "f16" || body.includes("f16")) lines.push("enable f16;");
  lines.push(`alias T = ${dtype};`, `alias T4 = vec4<${dtype}>;`);
  for (const [name, v] of Object.entries(consts)) {
    if (typeof v === "object") lines.push(`alias ${name} = ${v.type};`);
    else if (typeof v === "boolean") lines.push(`const ${name}: bool = ${v};`);
    else if (typeof v === "string") lines.push(`const ${name} = ${v};`);
    else if (Number.isInteger(v)) lines.push(`const ${name}: u32 = ${v}u;`);
    else lines.push(`const ${name}: f32 = ${v};`);
  }
  return lines.join("\n") + "\n" + body;
}
