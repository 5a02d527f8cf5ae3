// The server's GPU: a device and its model cache, reopened when the device is lost (a driver reset, say), so the
// job that saw the loss fails and the next one runs on a fresh device with its models reloaded.
import { Device, type DeviceOptions } from "../pipeline/gpu/device.ts";
import { ModelCache } from "../pipeline/model_cache.ts";

export interface GpuEnv {
  dev: Device;
  models: ModelCache;
  modelRoots?: string[];
  /** GPU memory one job may hold (--max-gpu-mb), bytes. */
  maxGpuBytes?: number;
}

export class GpuContext {
  private constructor(private env: GpuEnv, private open: () => Promise<GpuEnv>, readonly onReopen?: () => void) {}

  static async create(
    opts: {
      device?: DeviceOptions;
      cacheBytes?: number;
      modelRoots?: string[];
      maxGpuBytes?: number;
      onReopen?: () => void;
    } = {},
  ): Promise<GpuContext> {
    const open = async (): Promise<GpuEnv> => {
      const dev = await Device.open(opts.device);
      const models = new ModelCache(dev, { maxBytes: opts.cacheBytes });
      return { dev, models, modelRoots: opts.modelRoots, maxGpuBytes: opts.maxGpuBytes };
    };
    return new GpuContext(await open(), open, opts.onReopen);
  }

  /** The device as it is now (possibly lost); for health reports and request validation. */
  get now(): GpuEnv {
    return this.env;
  }

  /** A live device: reopens it first when it was lost. */
  async current(): Promise<GpuEnv> {
    if (this.env.dev.isLost) {
      this.onReopen?.();
      this.env = await this.open();
    }
    return this.env;
  }

  dispose(): void {
    this.env.models.dispose();
  }
}
