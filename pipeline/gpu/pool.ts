// Reuse GPU buffers between tensors of similar size. Sizes are rounded up to one of 4 classes per power of two,
// so a model call's activations come back to the same buffers every step (and their bind groups stay cached).
const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

export function sizeClass(bytes: number): number {
  const b = Math.max(256, bytes);
  const p = 2 ** Math.floor(Math.log2(b));
  const step = Math.max(256, p / 4);
  return Math.ceil(b / step) * step;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  /** Bytes held by live pooled buffers (in use + free). */
  allocated = 0;
  /** Bytes currently handed out. */
  inUse = 0;
  peakInUse = 0;

  constructor(private gpu: GPUDevice, private onDestroy: () => void) {}

  acquire(bytes: number): GPUBuffer {
    const size = sizeClass(bytes);
    const list = this.free.get(size);
    let buf = list?.pop();
    if (!buf) {
      buf = this.gpu.createBuffer({ size, usage: USAGE });
      this.allocated += size;
    }
    this.inUse += size;
    this.peakInUse = Math.max(this.peakInUse, this.inUse);
    return buf;
  }

  release(buf: GPUBuffer): void {
    const size = buf.size;
    this.inUse -= size;
    let list = this.free.get(size);
    if (!list) this.free.set(size, list = []);
    list.push(buf);
  }

  /** Destroy the free buffers (e.g. after a job, to give memory back). Recorded work must be submitted first. */
  trim(): void {
    let any = false;
    for (const list of this.free.values()) {
      for (const b of list) {
        this.allocated -= b.size;
        b.destroy();
        any = true;
      }
    }
    this.free.clear();
    if (any) this.onDestroy();
  }

  destroy(): void {
    this.trim();
  }
}
