// The one kind of user error: "the request is wrong". The CLI prints it (exit 2), the server answers 400
// {error, field}. Everything else that fails is ours (exit 1, HTTP 500).
//
// Request validation (pipeline/job/validate.ts) raises it with the field at fault. The readers of user-supplied
// files raise subclasses without a field (WeightError here; TokenizerError, SchedulerError, HubError, OnnxError in
// their modules): they cannot know which request field named the file, so the job blames the field it was loading
// (`blame`). No code tells user errors apart by name or message text: `instanceof RequestError` is the test.

export class RequestError extends Error {
  /** What is wrong, without the field. */
  readonly detail: string;

  constructor(readonly field: string | null, detail: string, options?: ErrorOptions) {
    super(field ? `${field}: ${detail}` : detail, options);
    this.detail = detail;
    this.name = "RequestError";
  }

  /** This error attributed to `field` (itself when it already names one). */
  blame(field: string): RequestError {
    return this.field ? this : new RequestError(field, this.detail, { cause: this });
  }
}

/** An error that says a user file (`field`'s) is unusable: user errors get the field, anything else passes. */
export function blameOn(field: string): (e: unknown) => never {
  return (e) => {
    throw e instanceof RequestError ? e.blame(field) : e;
  };
}

/**
 * A weight file or folder that cannot be used: missing, truncated or corrupt safetensors, missing tensors, wrong
 * shapes, bad config JSON. The one weight error of the project (safetensors reader, weight sources, layers).
 */
export class WeightError extends RequestError {
  constructor(message: string) {
    super(null, message);
    this.name = "WeightError";
  }
}
