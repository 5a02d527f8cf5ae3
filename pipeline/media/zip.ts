// A zip archive of already-compressed files (PNG frames): entries stored as they are (method 0) with their CRC-32,
// a central directory, no zip64 (under 4 GiB and 65535 entries).
import { crc32 } from "./png.ts";

export interface ZipEntry {
  name: string;
  data: Uint8Array;
}

export function zipStore(entries: readonly ZipEntry[]): Uint8Array {
  const enc = new TextEncoder();
  const locals: Uint8Array[] = [], centrals: Uint8Array[] = [];
  let offset = 0;
  // 1980-01-01 00:00 in DOS format: the frames have no meaningful time.
  const dosTime = 0, dosDate = (0 << 9) | (1 << 5) | 1;
  for (const e of entries) {
    const name = enc.encode(e.name);
    const crc = crc32(e.data), size = e.data.length;
    const local = new Uint8Array(30 + name.length + size);
    const l = new DataView(local.buffer);
    l.setUint32(0, 0x04034b50, true);
    l.setUint16(4, 20, true); // version needed
    l.setUint16(6, 0x0800, true); // UTF-8 names
    l.setUint16(8, 0, true); // stored
    l.setUint16(10, dosTime, true);
    l.setUint16(12, dosDate, true);
    l.setUint32(14, crc, true);
    l.setUint32(18, size, true);
    l.setUint32(22, size, true);
    l.setUint16(26, name.length, true);
    local.set(name, 30);
    local.set(e.data, 30 + name.length);
    const central = new Uint8Array(46 + name.length);
    const c = new DataView(central.buffer);
    c.setUint32(0, 0x02014b50, true);
    c.setUint16(4, 20, true); // version made by
    c.setUint16(6, 20, true);
    c.setUint16(8, 0x0800, true);
    c.setUint16(10, 0, true);
    c.setUint16(12, dosTime, true);
    c.setUint16(14, dosDate, true);
    c.setUint32(16, crc, true);
    c.setUint32(20, size, true);
    c.setUint32(24, size, true);
    c.setUint16(28, name.length, true);
    c.setUint32(42, offset, true);
    central.set(name, 46);
    locals.push(local), centrals.push(central);
    offset += local.length;
  }
  const dirSize = centrals.reduce((s, c) => s + c.length, 0);
  if (offset + dirSize > 0xffffffff || entries.length > 0xffff) throw new RangeError("zip: too large (no zip64)");
  const end = new Uint8Array(22);
  const d = new DataView(end.buffer);
  d.setUint32(0, 0x06054b50, true);
  d.setUint16(8, entries.length, true);
  d.setUint16(10, entries.length, true);
  d.setUint32(12, dirSize, true);
  d.setUint32(16, offset, true);
  const out = new Uint8Array(offset + dirSize + 22);
  let o = 0;
  for (const p of [...locals, ...centrals, end]) out.set(p, o), o += p.length;
  return out;
}

/** The entries of a zip this module wrote (stored, no zip64), in order. */
export function zipEntries(zip: Uint8Array): ZipEntry[] {
  const dv = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const end = zip.length - 22;
  if (end < 0 || dv.getUint32(end, true) !== 0x06054b50) throw new RangeError("zip: no end of central directory");
  const count = dv.getUint16(end + 10, true);
  let p = dv.getUint32(end + 16, true);
  const dec = new TextDecoder();
  const out: ZipEntry[] = [];
  for (let i = 0; i < count; i++) {
    if (dv.getUint32(p, true) !== 0x02014b50) throw new RangeError("zip: bad central directory");
    const method = dv.getUint16(p + 10, true), size = dv.getUint32(p + 20, true);
    const nameLen = dv.getUint16(p + 28, true), extra = dv.getUint16(p + 30, true), note = dv.getUint16(p + 32, true);
    const local = dv.getUint32(p + 42, true);
    if (method !== 0) throw new RangeError("zip: only stored entries are read");
    const start = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
    out.push({ name: dec.decode(zip.subarray(p + 46, p + 46 + nameLen)), data: zip.subarray(start, start + size) });
    p += 46 + nameLen + extra + note;
  }
  return out;
}
