// The event listeners of this process, by job: both queue backends deliver a job's events through one of these
// (SQLite from its own worker, Redis from the pub/sub channel every node reads).
import type { JobEvent } from "./types.ts";

export type Listener = (ev: JobEvent) => void;

/** An error as one line for logs and job records. */
export function errorText(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}

export class Listeners {
  private byJob = new Map<string, Set<Listener>>();

  /** A listener that throws is logged and the others still hear the event. */
  constructor(private log: (line: string) => void) {}

  get size(): number {
    return this.byJob.size;
  }

  has(id: string): boolean {
    return this.byJob.has(id);
  }

  /** The jobs someone listens to. */
  ids(): string[] {
    return [...this.byJob.keys()];
  }

  /** Adds `fn` for job `id`; returns its removal. */
  add(id: string, fn: Listener): () => void {
    let set = this.byJob.get(id);
    if (!set) this.byJob.set(id, set = new Set());
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.byJob.get(id) === set) this.byJob.delete(id);
    };
  }

  emit(id: string, ev: JobEvent): void {
    for (const fn of this.byJob.get(id) ?? []) {
      try {
        fn(ev);
      } catch (e) {
        this.log(`job ${id}: event listener failed: ${errorText(e)}`);
      }
    }
  }

  /** Tells every listener `ev` (the queue is closing) and forgets them all. */
  closeAll(ev: JobEvent): void {
    for (const id of this.ids()) this.emit(id, ev);
    this.byJob.clear();
  }
}
