// Hub downloads against fixtures/mock_hub.ts serving the golden tiny-sd folder: cache layout, selection of files,
// cache reuse and offline use, fp16 variants, resumed downloads, and auth / not-found errors.
import { join } from "node:path";
import { assert, assertEquals, assertRejects } from "../fixtures/asserts.ts";
import { filesFromDir, type MockHub, type MockRepo, startMockHub } from "../fixtures/mock_hub.ts";
import { encodeSafetensors } from "../fixtures/safetensors_writer.ts";
import { ClipTokenizer } from "../pipeline/models/tokenizer.ts";
import { loadComponent } from "../pipeline/weights/diffusers.ts";
import { HubError, HubNetworkError, repoCacheDir, resolveModel, snapshotDownload } from "../pipeline/weights/hub.ts";
import { GOLDEN_MODELS } from "../fixtures/paths.ts";

const GOLDEN = GOLDEN_MODELS + "/";
const TINY = join(GOLDEN, "tiny-sd");
const UNET = "unet/diffusion_pytorch_model.safetensors";
const PIPELINE_FILES = [
  "model_index.json",
  "scheduler/scheduler_config.json",
  "text_encoder/config.json",
  "text_encoder/model.safetensors",
  "tokenizer/merges.txt",
  "tokenizer/special_tokens_map.json",
  "tokenizer/tokenizer_config.json",
  "tokenizer/vocab.json",
  "unet/config.json",
  UNET,
  "vae/config.json",
  "vae/diffusion_pytorch_model.safetensors",
];

/** tiny-sd plus files a real repository has that the pipeline must not fetch. */
async function tinyRepo(extra: Record<string, Uint8Array<ArrayBuffer>> = {}): Promise<MockRepo> {
  const files = await filesFromDir(TINY);
  const index = JSON.parse(new TextDecoder().decode(files["model_index.json"]));
  index.safety_checker = ["stable_diffusion", "StableDiffusionSafetyChecker"];
  index.feature_extractor = ["transformers", "CLIPImageProcessor"];
  const enc = (s: string) => new TextEncoder().encode(s);
  return {
    files: {
      ...files,
      "model_index.json": enc(JSON.stringify(index)),
      "README.md": enc("# tiny"),
      "unet/diffusion_pytorch_model.bin": new Uint8Array(64),
      "safety_checker/config.json": enc("{}"),
      "safety_checker/model.safetensors": encodeSafetensors({}) as Uint8Array<ArrayBuffer>,
      "feature_extractor/preprocessor_config.json": enc("{}"),
      "tiny-sd-original.safetensors": await Deno.readFile(join(GOLDEN, "tiny-sd-original.safetensors")),
      ...extra,
    },
  };
}

async function withHub(
  repos: Record<string, MockRepo>,
  fn: (hub: MockHub, cacheDir: string) => Promise<void>,
  token?: string,
): Promise<void> {
  const hub = startMockHub({ repos, token, lifetimeMs: 60_000 });
  const cacheDir = await Deno.makeTempDir({ prefix: "zerovid-hub-" });
  try {
    // Keep the user's own hub settings and token out of the tests.
    await withEnv(CLEAN_ENV(cacheDir), () => fn(hub, cacheDir));
  } finally {
    await hub.close();
    await Deno.remove(cacheDir, { recursive: true });
  }
}

const CLEAN_ENV = (home: string) => ({
  HF_HOME: home,
  HF_TOKEN: undefined,
  HUGGING_FACE_HUB_TOKEN: undefined,
  HF_TOKEN_PATH: undefined,
  HF_ENDPOINT: undefined,
  HF_HUB_OFFLINE: undefined,
  HF_HUB_CACHE: undefined,
});

async function sameBytes(a: string, b: string): Promise<boolean> {
  const [x, y] = [await Deno.readFile(a), await Deno.readFile(b)];
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

async function withEnv(vars: Record<string, string | undefined>, fn: () => Promise<void>): Promise<void> {
  const old = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const set = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) x === undefined ? Deno.env.delete(k) : Deno.env.set(k, x);
  };
  set(vars);
  try {
    await fn();
  } finally {
    set(old);
  }
}

Deno.test("hub: fetches only the pipeline's files into the HF cache layout, then works offline", async () => {
  const repo = await tinyRepo();
  const hub = startMockHub({ repos: { "test/tiny-sd": repo } });
  const cacheDir = await Deno.makeTempDir({ prefix: "zerovid-hub-" });
  try {
    await withEnv(CLEAN_ENV(cacheDir), () => firstDownload(hub, repo, cacheDir));
  } finally {
    await hub.close();
    await Deno.remove(cacheDir, { recursive: true });
  }
});

async function firstDownload(hub: MockHub, repo: MockRepo, cacheDir: string): Promise<void> {
  const snap = await snapshotDownload("test/tiny-sd", { endpoint: hub.url, cacheDir, token: "secret" });
  assertEquals([...snap.files].sort(), PIPELINE_FILES);
  assertEquals([...snap.downloaded].sort(), PIPELINE_FILES);
  const repoDir = repoCacheDir(cacheDir, "test/tiny-sd");
  assertEquals(repoDir, join(cacheDir, "models--test--tiny-sd"));
  assertEquals((await Deno.readTextFile(join(repoDir, "refs", "main"))).trim(), snap.commit);
  assertEquals(snap.dir, join(repoDir, "snapshots", snap.commit));
  assertEquals(await Deno.readLink(join(snap.dir, UNET)), `../../../blobs/${hub.sha256("test/tiny-sd", UNET)}`);
  for (const f of PIPELINE_FILES) {
    const got = await Deno.readFile(join(snap.dir, f));
    assert(got.length === repo.files[f].length && got.every((v, i) => v === repo.files[f][i]), f);
  }
  for await (const e of Deno.readDir(join(repoDir, "blobs"))) assert(!e.name.endsWith(".incomplete"), e.name);
  // Nothing else was asked for; the token went to the hub, never to the CDN.
  const asked = hub.requests.map((r) => r.path);
  for (const p of [".bin", "safety_checker", "feature_extractor", "README", "original"]) {
    assert(!asked.some((a) => a.includes(p)), `requested ${p}`);
  }
  assert(hub.requests.filter((r) => r.server === "hub").every((r) => r.auth === "Bearer secret"));
  assert(hub.requests.filter((r) => r.server === "cdn").every((r) => r.auth === null));
  // The snapshot is a diffusers folder.
  const unet = await loadComponent(snap.dir, "unet");
  const ref = await loadComponent(TINY, "unet");
  assertEquals(unet.weights.names().sort(), ref.weights.names().sort());
  unet.weights.close();
  ref.weights.close();
  assertEquals((await ClipTokenizer.fromDir(join(snap.dir, "tokenizer"))).encode("a cat")[1], 320);

  // Everything cached: no network at all (the hub is gone).
  await hub.close();
  const again = await snapshotDownload("test/tiny-sd", { endpoint: hub.url, cacheDir });
  assertEquals(again.dir, snap.dir);
  assertEquals(again.downloaded, []);
  const loc = await resolveModel("test/tiny-sd", { endpoint: hub.url, cacheDir, offline: true });
  assertEquals(loc, { kind: "diffusers", dir: snap.dir });
}

Deno.test("hub: offline with nothing cached is a clear error (HF_HUB_OFFLINE)", async () => {
  await withHub({}, async (hub, cacheDir) => {
    await withEnv({ HF_HUB_OFFLINE: "1" }, async () => {
      await assertRejects(() => snapshotDownload("test/tiny-sd", { endpoint: hub.url, cacheDir }), HubError, "offline");
    });
    assertEquals(hub.requests.length, 0);
  });
});

Deno.test("hub: fp16 variant where the repository has one, plain weights elsewhere", async () => {
  const fp16 = await Deno.readFile(join(TINY, UNET)); // contents do not matter here
  const repo = await tinyRepo({ "unet/diffusion_pytorch_model.fp16.safetensors": fp16 });
  await withHub({ "test/tiny-sd": repo }, async (hub, cacheDir) => {
    const snap = await snapshotDownload("test/tiny-sd", { endpoint: hub.url, cacheDir, variant: "fp16" });
    assert(snap.files.includes("unet/diffusion_pytorch_model.fp16.safetensors"));
    assert(!snap.files.includes(UNET));
    assert(snap.files.includes("vae/diffusion_pytorch_model.safetensors"));
    const configs = await snapshotDownload("test/tiny-sd", { endpoint: hub.url, cacheDir, configOnly: true });
    assertEquals(configs.files.filter((f) => f.endsWith(".safetensors")), []);
    assert(configs.files.includes("unet/config.json") && configs.files.includes("tokenizer/vocab.json"));
  });
});

Deno.test("hub: an interrupted download resumes with a Range request", async () => {
  await withHub({ "test/tiny-sd": await tinyRepo() }, async (hub, cacheDir) => {
    hub.interrupt(UNET, 3_000_000, 2);
    const snap = await snapshotDownload("test/tiny-sd", { endpoint: hub.url, cacheDir, components: ["unet"] });
    assert(await sameBytes(join(snap.dir, UNET), join(TINY, UNET)));
    const sha = hub.sha256("test/tiny-sd", UNET);
    const gets = hub.requests.filter((r) => r.server === "cdn" && r.path === `/${sha}`);
    assertEquals(gets.length, 3);
    assertEquals(gets[0].range, null);
    const starts = gets.slice(1).map((r) => Number(r.range?.match(/^bytes=(\d+)-$/)?.[1]));
    assert(starts[0] > 0 && starts[0] <= 3_000_000 && starts[1] > starts[0], JSON.stringify(gets));
  });
});

Deno.test("hub: a .incomplete file from an earlier run is resumed; a corrupt one is refetched", async () => {
  await withHub({ "test/tiny-sd": await tinyRepo() }, async (hub, cacheDir) => {
    const sha = hub.sha256("test/tiny-sd", UNET);
    const blobs = join(repoCacheDir(cacheDir, "test/tiny-sd"), "blobs");
    await Deno.mkdir(blobs, { recursive: true });
    const full = await Deno.readFile(join(TINY, UNET));
    await Deno.writeFile(join(blobs, `${sha}.incomplete`), full.subarray(0, 1_000_000));
    const snap = await snapshotDownload("test/tiny-sd", { endpoint: hub.url, cacheDir, components: ["unet"] });
    assert(await sameBytes(join(snap.dir, UNET), join(TINY, UNET)));
    assertEquals(hub.requests.filter((r) => r.path === `/${sha}`).map((r) => r.range), ["bytes=1000000-"]);

    // Same again with a wrong prefix: the sha256 check catches it and the file is fetched from the start.
    await Deno.remove(join(snap.dir, UNET));
    await Deno.remove(join(blobs, sha));
    await Deno.writeFile(join(blobs, `${sha}.incomplete`), new Uint8Array(1_000_000).fill(7));
    hub.requests.length = 0;
    await snapshotDownload("test/tiny-sd", { endpoint: hub.url, cacheDir, components: ["unet"] });
    assert(await sameBytes(join(snap.dir, UNET), join(TINY, UNET)));
    assertEquals(hub.requests.filter((r) => r.path === `/${sha}`).map((r) => r.range), ["bytes=1000000-", null]);
  });
});

Deno.test("hub: private repository needs HF_TOKEN (401 says so); HF_ENDPOINT and HF_TOKEN from the environment", async () => {
  const repo = { ...await tinyRepo(), private: true };
  await withHub({ "org/private": repo }, async (hub, cacheDir) => {
    await withEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: undefined, HF_HOME: cacheDir }, async () => {
      const e = await assertRejects(() => snapshotDownload("org/private", { cacheDir }), HubError);
      assert(
        e.message.includes("org/private") && e.message.includes("HF_TOKEN") && e.message.includes("401"),
        e.message,
      );
    });
    await withEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: "tok" }, async () => {
      const snap = await snapshotDownload("org/private", { cacheDir, components: ["scheduler"] });
      assertEquals(snap.files, ["model_index.json", "scheduler/scheduler_config.json"]);
    });
  }, "tok");
});

Deno.test("hub: unknown repository, revision or file give clear errors", async () => {
  await withHub({ "test/tiny-sd": await tinyRepo() }, async (hub, cacheDir) => {
    const o = { endpoint: hub.url, cacheDir, token: null };
    await assertRejects(() => snapshotDownload("test/nope", o), HubError, "test/nope: repository not found");
    await assertRejects(
      () => snapshotDownload("test/tiny-sd", { ...o, revision: "v9" }),
      HubError,
      "revision not found",
    );
    await assertRejects(
      () => snapshotDownload("test/tiny-sd", { ...o, files: ["x.safetensors"] }),
      HubError,
      "x.safetensors",
    );
    await assertRejects(() => snapshotDownload("not a repo", o), HubError, "not a hub id");
    await assertRejects(() => snapshotDownload("test/tiny-sd", { ...o, revision: "../../x" }), HubError, "unsafe");
    const closed = { ...o, endpoint: "http://127.0.0.1:9" };
    await assertRejects(() => snapshotDownload("test/tiny-sd", closed), HubNetworkError, "cannot reach");
  });
});

Deno.test("hub: a repository with only .bin weights fails before downloading weights", async () => {
  const repo = await tinyRepo();
  delete repo.files[UNET];
  await withHub({ "test/bin": repo }, async (hub, cacheDir) => {
    const e = await assertRejects(() => snapshotDownload("test/bin", { endpoint: hub.url, cacheDir }), HubError);
    assert(e.message.includes("unet/diffusion_pytorch_model.bin") && e.message.includes("pickle"), e.message);
    assert(!hub.requests.some((r) => r.server === "cdn"));
  });
});

Deno.test("resolveModel: local folder, local single file, hub single file", async () => {
  assertEquals(await resolveModel(TINY), { kind: "diffusers", dir: TINY });
  assertEquals(await resolveModel(join(TINY, "unet")), { kind: "model", dir: join(TINY, "unet") });
  const file = join(GOLDEN, "tiny-sd-original.safetensors");
  assertEquals(await resolveModel(file), { kind: "single_file", path: file });
  await assertRejects(() => resolveModel("/no/such/dir"), HubError, "not a hub id");
  await withHub({ "test/tiny-sd": await tinyRepo() }, async (hub, cacheDir) => {
    const loc = await resolveModel("test/tiny-sd@main", {
      endpoint: hub.url,
      cacheDir,
      files: ["tiny-sd-original.safetensors"],
    });
    assert(loc.kind === "single_file" && (await sameBytes(loc.path, file)), JSON.stringify(loc));
  });
});
