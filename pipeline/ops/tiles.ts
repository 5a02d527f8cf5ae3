// Per-adapter tile choices for the GEMM kernels (linear and conv2d's implicit GEMM). A table, not code: entries are
// picked by adapter name, and `deno task gpu-check` measures an adapter's kernels to fill or correct its entry.
//
// Format (one entry per adapter family; the first whose `match` is a case-insensitive substring of the adapter's
// description wins, then "cpu" for software/fallback adapters, then "default"):
//   fill       workgroups that keep the adapter busy; tiles that leave it emptier score lower
//   blocking   relative speed by outputs per thread (TM * TN: 64, 32, 16)
//   tiles      optional: the candidate tiles (default: every tile in TILES)
//   shapes     optional: measured winners by GEMM shape "MxNxK" (linear: rows x out x in; conv2d: Cout x
//              images*Ho*Wo x Cin*kh*kw), used before any scoring
//   directConv optional: conv2d runs shaders/conv2d_direct.wgsl (a thread per output, no tiles) when an image's
//              output has at most `maxPixels` pixels; absent: never
import type { GemmTile } from "./matmul.ts";

export interface AdapterTiles {
  match: string;
  fill: number;
  blocking: Record<number, number>;
  tiles?: GemmTile[];
  shapes?: Record<string, GemmTile>;
  directConv?: { maxPixels: number };
}

export const TILE_TABLE: Record<string, AdapterTiles> = {
  // A large GPU: ~132 SMs x 2 resident 256-thread groups; blocking estimated (bigger blocks reuse shared loads).
  default: { match: "", fill: 256, blocking: { 64: 1, 32: 0.85, 16: 0.7 } },
  // Mesa llvmpipe (2 cores here): per-invocation overhead dominates, so 8x8 blocks run ~1.6x faster than 8x4
  // (measured); a few workgroups fill it.
  // Direct conv up to 2x2 outputs: tiny UNet call 19% faster (paired A/B, 20 calls; 4x4 and up: slower).
  llvmpipe: { match: "llvmpipe", fill: 4, blocking: { 64: 1, 32: 0.62, 16: 0.5 }, directConv: { maxPixels: 4 } },
  // Other software/fallback adapters: like llvmpipe until measured.
  cpu: { match: "", fill: 4, blocking: { 64: 1, 32: 0.62, 16: 0.5 } },
};

/** The table entry for an adapter. */
export function tilesFor(adapterName: string, isFallback: boolean): AdapterTiles {
  const name = adapterName.toLowerCase();
  for (const [key, e] of Object.entries(TILE_TABLE)) {
    if (e.match && name.includes(e.match.toLowerCase())) return TILE_TABLE[key];
  }
  return isFallback ? TILE_TABLE.cpu : TILE_TABLE.default;
}
