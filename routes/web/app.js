// The zerovid page: one tab per mode, each a form built from the server's field registry (GET /v1/fields); a job is
// submitted to POST /v1/jobs, followed through its server-sent events (progress bar, live preview strip, cancel),
// and its result plays inline. LoRAs (with a scale each) and embeddings are picked from the server's model list.
// No build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const el = (tag, props = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k in e && typeof v !== "string") e[k] = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
  return e;
};

// ---------------------------------------------------------------------------------------------------------------
// Server access (optional bearer token, kept in localStorage)

let token = localStorage.getItem("zerovid-token") || "";
const headers = () => (token ? { Authorization: `Bearer ${token}` } : {});
/** A URL for places that cannot send headers (EventSource, <video src>, links): the token goes in the query. */
function withToken(path, extra = {}) {
  const u = new URL(path, location.href);
  for (const [k, v] of Object.entries(extra)) u.searchParams.set(k, v);
  if (token) u.searchParams.set("token", token);
  return u.pathname + u.search;
}

async function api(path, init = {}) {
  const res = await fetch(path, { ...init, headers: { ...headers(), ...(init.headers || {}) } });
  let body = null;
  try {
    body = await res.json();
  } catch { /* not JSON */ }
  if (res.status === 401) {
    $("#token-form").hidden = false;
    $("#token").focus();
  }
  return { res, body };
}

// ---------------------------------------------------------------------------------------------------------------
// The tabs and their options: every option input is built from GET /v1/fields (the server's field registry, ranges
// narrowed by its limits, defaults per mode), so the page holds no bound or default of its own.

/** The server's limits (GET /healthz): the upload size, for the file input's hint. */
let limits = {};
let models = [];
let demo = false;
/** mode -> [{name, kind, label, help, min, max, step, values, special, specialMeans, default, demoDefault,
 * defaultHelp}] */
let fields = {};
/** mode -> the prompt's longest length (the registry's, narrowed by the server's limits). */
let promptMax = {};

/** A registry field as the page's input description. */
function fromRegistry(f) {
  const value = demo && f.demoDefault !== undefined ? f.demoDefault : f.default;
  const empty = f.defaultHelp ? `empty: ${f.defaultHelp}` : null;
  const special = f.special !== undefined ? `${f.special}: ${f.specialMeans}` : null;
  if (f.kind === "string") {
    return { name: f.name, label: f.label, type: "textarea", value: value ?? "", maxlength: f.max };
  }
  if (f.kind === "enum") {
    return {
      name: f.name,
      label: f.label,
      type: "select",
      value,
      options: f.values,
      none: value === undefined ? (f.defaultHelp || "default") : null,
    };
  }
  if (f.kind === "bool") return { name: f.name, label: f.label, type: "checkbox", value: !!value, hint: f.help };
  return {
    name: f.name,
    label: f.label,
    type: "number",
    value: value ?? "",
    min: f.min,
    max: f.max,
    step: f.step,
    hint: [value === undefined ? empty : null, special].filter(Boolean).join("; ") || null,
  };
}

const TABS = [
  {
    id: "text2video",
    label: "Text to video",
    mode: "text2video",
    prompt: "a horse galloping on a street",
    about: "Zero-shot text-to-video: one prompt, frames linked by a global motion and cross-frame attention.",
  },
  {
    id: "pix2pix",
    label: "Video editing",
    mode: "pix2pix",
    video: true,
    prompt: "make it Van Gogh Starry Night style",
    about: "Video Instruct-Pix2Pix: edit a video by an instruction.",
  },
  {
    id: "pose",
    label: "Pose",
    mode: "pose",
    video: true,
    controlnet: true,
    prompt: "an astronaut dancing in outer space",
    about: "Pose-guided video: upload a rendered skeleton video (or pick a pose model for a raw video).",
  },
  {
    id: "canny",
    label: "Edges",
    mode: "canny",
    video: true,
    controlnet: true,
    prompt: "oil painting of a deer, a high-quality, detailed, and professional photo",
    about: "Edge-guided video: Canny edges of your video steer every frame.",
  },
  {
    id: "depth",
    label: "Depth",
    mode: "depth",
    video: true,
    controlnet: true,
    depth: true,
    prompt: "a santa claus, a high-quality, detailed, and professional photo",
    about: "Depth-guided video: a depth model (MiDaS/DPT .onnx) estimates each frame's depth.",
  },
  {
    id: "custom",
    label: "Edges + custom model",
    mode: "canny",
    video: true,
    controlnet: true,
    custom: true,
    format: "gif",
    prompt: "arcane style, a girl dancing",
    about: "Edge-guided video with your own (DreamBooth) model: diffusers folders and single-file .safetensors. " +
      "Use its trigger words in the prompt.",
  },
];

const isList = (f) => f.kind === "loras" || f.kind === "names";

/**
 * A list field as pickers of the server's files: LoRAs (kind lora) each with a checkbox and a scale, embeddings
 * (kind embedding) each with a checkbox and the word to write in the prompt. The form sends the picks as one JSON
 * list (see listValue).
 */
function picker(f) {
  const kind = f.kind === "loras" ? "lora" : "embedding";
  const files = models.filter((m) => m.kind === kind);
  const box = el("fieldset", { class: "picker wide", "data-list": f.name, "data-max": f.maxItems });
  box.append(el("legend", { text: f.label }));
  if (!files.length) {
    box.append(el("span", { class: "hint", text: `none under the server's model roots (.safetensors ${kind} files)` }));
    return box;
  }
  for (const m of files) {
    const row = el(
      "label",
      { class: "pick" },
      el("input", { type: "checkbox", value: m.name, "data-pick": f.name }),
      el("span", { text: kind === "embedding" ? `${m.name} · write “${m.token}”` : m.name }),
    );
    if (kind === "lora") {
      row.append(el("input", {
        type: "number",
        class: "scale",
        "aria-label": `scale of ${m.name}`,
        value: 1,
        min: f.min,
        max: f.max,
        step: "any",
        inputmode: "decimal",
      }));
    }
    box.append(row);
  }
  box.append(el("span", { class: "hint", text: f.help }));
  return box;
}

/** The picks of a list field as the API's value: [{name, scale}] (LoRAs) or [name] (embeddings). */
function listValue(box) {
  const picks = [...box.querySelectorAll("input[data-pick]:checked")];
  return picks.map((c) => {
    if (box.dataset.list !== "loras") return c.value;
    const scale = c.closest("label").querySelector(".scale").value.trim();
    return scale === "" ? { name: c.value } : { name: c.value, scale: Number(scale) };
  });
}

/** The advanced options of a tab: its mode's registry fields, with the tab's own preferences on top. */
function advanced(tab) {
  return (fields[tab.mode] || []).filter((f) => !isList(f)).map((f) => {
    const d = fromRegistry(f);
    if (tab.format && f.name === "format") d.value = tab.format;
    return d;
  });
}

function input(f) {
  let control;
  if (f.type === "textarea") {
    control = el("textarea", { name: f.name, rows: 2, maxlength: f.maxlength }, f.value ?? "");
  } else if (f.type === "select") {
    control = el(
      "select",
      { name: f.name },
      f.none ? el("option", { value: "" }, f.none) : null,
      f.options.map((o) => el("option", { value: o, selected: o === f.value }, o)),
    );
  } else if (f.type === "checkbox") {
    control = el("input", { type: "checkbox", name: f.name, checked: f.value });
  } else {
    control = el("input", {
      type: f.type,
      name: f.name,
      value: f.value ?? "",
      min: f.min,
      max: f.max,
      step: f.step,
      inputmode: f.type === "number" ? "decimal" : undefined,
    });
  }
  return el(
    "label",
    { class: f.type === "textarea" ? "wide" : undefined },
    el("span", { text: f.label }),
    control,
    f.hint ? el("span", { class: "hint", text: f.hint }) : null,
  );
}

function modelOptions(filter) {
  return models.filter(filter);
}

function select(name, label, entries, opts = {}) {
  const s = el(
    "select",
    { name, id: opts.id },
    opts.none ? el("option", { value: "" }, opts.none) : null,
    entries.map((m) =>
      el("option", { value: m.name }, m.kind === "demo" ? "demo (built-in)" : `${m.name} · ${m.kind}`)
    ),
  );
  return el(
    "label",
    {},
    el("span", { text: label }),
    s,
    opts.hint ? el("span", { class: "hint", text: opts.hint }) : null,
  );
}

function buildForm(tab) {
  const form = el("form", { id: `form-${tab.id}`, novalidate: true });
  form.append(el("p", { class: "muted", text: tab.about }));
  if (tab.video) {
    form.append(el(
      "label",
      {},
      el("span", { text: tab.mode === "pose" ? "Skeleton video (or any video with a pose model)" : "Video" }),
      el("input", { type: "file", name: "video", accept: "video/*,image/gif", required: true }),
      el("span", {
        class: "hint",
        text: `mp4, webm, gif, mov…${limits.maxUploadMb ? `; at most ${limits.maxUploadMb} MiB` : ""}`,
      }),
    ));
  }
  form.append(el(
    "label",
    {},
    el("span", { text: tab.mode === "pix2pix" ? "Instruction" : "Prompt" }),
    el("textarea", { name: "prompt", rows: 2, required: true, maxlength: promptMax[tab.mode] }, tab.prompt),
  ));

  const base = modelOptions((m) =>
    ["demo", "sd", "pix2pix", "single-file"].includes(m.kind) && m.modes.includes(tab.mode)
  );
  if (tab.custom) base.sort((a, b) => (b.kind === "single-file") - (a.kind === "single-file"));
  const warn = el("p", { class: "error", hidden: true });
  const grid = el("div", { class: "grid" });
  if (base.length) grid.append(select("model", tab.custom ? "Custom model" : "Model", base, { id: `model-${tab.id}` }));
  else {
    warn.hidden = false;
    warn.textContent = `No model for this mode under the server's model roots.`;
  }
  if (tab.custom) {
    const configs = modelOptions((m) => m.kind === "sd");
    const cfg = select("config", "Configs for a single file", configs, {
      none: "automatic",
      hint: "tokenizer + configs",
    });
    grid.append(cfg);
    const sync = () => {
      const chosen = models.find((m) => m.name === form.elements.model?.value);
      cfg.hidden = chosen?.kind !== "single-file";
      if (cfg.hidden) cfg.querySelector("select").value = "";
    };
    form.addEventListener("change", (e) => e.target.name === "model" && sync());
    queueMicrotask(sync);
  }
  if (tab.controlnet) {
    const cns = modelOptions((m) => (m.kind === "controlnet" || m.kind === "demo") && m.modes.includes(tab.mode));
    cns.sort((a, b) => a.modes.length - b.modes.length);
    if (cns.length) grid.append(select("controlnet", "ControlNet", cns));
    else {
      warn.hidden = false;
      warn.textContent = `No ControlNet for ${tab.mode} under the server's model roots.`;
    }
  }
  if (tab.mode === "pose") {
    const poses = modelOptions((m) => m.kind === "onnx" && m.role === "pose");
    if (poses.length) grid.append(select("poseModel", "Pose model", poses, { none: "none: the video is a skeleton" }));
  }
  if (tab.depth) {
    const depths = modelOptions((m) => m.kind === "onnx" && m.role === "depth");
    if (depths.length) grid.append(select("depthModel", "Depth model", depths));
    else {
      warn.hidden = false;
      warn.textContent = "Depth needs a depth estimator (a MiDaS/DPT .onnx file) under the server's model roots.";
    }
  }
  form.append(warn, grid);
  for (const f of (fields[tab.mode] || []).filter(isList)) form.append(picker(f));
  form.append(
    el(
      "details",
      {},
      el("summary", { text: "Advanced options" }),
      el("div", { class: "grid" }, advanced(tab).map(input)),
    ),
  );
  const error = el("p", { class: "error", hidden: true, id: `error-${tab.id}` });
  form.append(error, el("div", { class: "row" }, el("button", { type: "submit", text: "Generate" })));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit(tab, form, error);
  });
  return form;
}

let forms = {};
function showTab(id) {
  for (const b of document.querySelectorAll("#tabs button")) {
    b.setAttribute("aria-selected", String(b.dataset.tab === id));
  }
  const panel = $("#panel");
  panel.replaceChildren(forms[id]);
  history.replaceState(null, "", `#${id}`);
}

function buildTabs() {
  forms = Object.fromEntries(TABS.map((t) => [t.id, buildForm(t)]));
  $("#tabs").replaceChildren(
    ...TABS.map((t) =>
      el("button", { type: "button", role: "tab", "data-tab": t.id, onclick: () => showTab(t.id) }, t.label)
    ),
  );
  const want = location.hash.slice(1);
  showTab(TABS.some((t) => t.id === want) ? want : TABS[0].id);
}

// ---------------------------------------------------------------------------------------------------------------
// Submitting and following a job

async function submit(tab, form, error) {
  error.hidden = true;
  for (const i of form.querySelectorAll(".invalid")) i.classList.remove("invalid");
  const data = new FormData();
  data.set("mode", tab.mode);
  for (const box of form.querySelectorAll("[data-list]")) {
    const v = listValue(box);
    if (v.length > Number(box.dataset.max)) return fail(`pick at most ${box.dataset.max}`, box.dataset.list);
    if (v.length) data.set(box.dataset.list, JSON.stringify(v));
  }
  for (const c of form.elements) {
    if (!c.name || c.disabled) continue;
    if (c.type === "file") {
      if (c.files[0]) data.set(c.name, c.files[0], c.files[0].name);
    } else if (c.type === "checkbox") {
      if (c.checked) data.set(c.name, "true");
    } else if (c.value.trim() !== "" && !c.closest("[hidden]")) data.set(c.name, c.value);
  }
  if (tab.video && !data.get("video")) {
    return fail("choose a video file first", "video");
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const { res, body } = await api("/v1/jobs", { method: "POST", body: data });
    if (res.status !== 202) {
      const wait = res.headers.get("Retry-After");
      return fail((body?.error || `HTTP ${res.status}`) + (wait ? ` (retry in ${wait} s)` : ""), body?.field);
    }
    track(body.id, body.notice);
    refreshJobs();
  } catch (e) {
    fail(`could not reach the server: ${e.message}`);
  } finally {
    button.disabled = false;
  }

  function fail(message, field) {
    error.textContent = message;
    error.hidden = false;
    const bad = field && form.elements[field];
    if (bad && bad.classList) {
      bad.classList.add("invalid");
      bad.closest("details")?.setAttribute("open", "");
      bad.focus();
    }
  }
}

let current = null;

function setStatus(text) {
  $("#job-status").textContent = text;
}

function track(id, notice) {
  if (current?.es) current.es.close();
  current = { id, es: null, done: false };
  $("#job").hidden = false;
  $("#job-id").textContent = id.slice(0, 8);
  $("#result").hidden = true;
  $("#media").replaceChildren();
  $("#preview").hidden = true;
  $("#preview").removeAttribute("src");
  $("#spinner").hidden = false;
  $("#job-error").hidden = true;
  $("#job-stage").textContent = notice || "";
  $("#progress").value = 0;
  $("#progress").max = 1;
  $("#cancel").disabled = false;
  setStatus("queued");
  const me = current;
  const es = new EventSource(withToken(`/v1/jobs/${id}/events`));
  me.es = es;
  const data = (e) => JSON.parse(e.data);
  es.addEventListener("queued", (e) => setStatus(`queued: position ${data(e).position}`));
  es.addEventListener("started", () => setStatus("running"));
  // The frames as they form (latents to RGB on the GPU, no VAE), side by side, every few steps.
  es.addEventListener("preview", (e) => {
    const p = data(e);
    const img = $("#preview");
    img.src = p.image;
    img.alt = `preview at step ${p.step} of ${p.total}`;
    img.dataset.step = String(p.step);
    img.hidden = false;
    $("#spinner").hidden = true;
  });
  es.addEventListener("progress", (e) => {
    const p = data(e);
    setStatus("running");
    const bar = $("#progress");
    bar.max = Math.max(1, p.total);
    bar.value = Math.min(p.step, bar.max);
    const frames = p.frames ? ` · ${p.frames} frames` : "";
    $("#job-stage").textContent = `${p.stage.replace(/_/g, " ")} ${p.step}/${p.total}${frames}`;
  });
  const end = (e) => {
    me.done = true;
    es.close();
    finished(data(e));
    refreshJobs();
  };
  es.addEventListener("done", end);
  es.addEventListener("failed", end);
  es.addEventListener("cancelled", end);
  es.onerror = () => {
    if (!me.done && current === me) setStatus("connection lost: reconnecting…");
  };
}

function finished(job) {
  $("#cancel").disabled = true;
  $("#spinner").hidden = true;
  if (job.status === "succeeded") $("#preview").hidden = true;
  const bar = $("#progress");
  if (job.status === "succeeded") {
    bar.value = bar.max;
    setStatus(`done in ${job.timings?.total ? job.timings.total.toFixed(1) + " s" : "?"} (seed ${job.params?.seed})`);
    showResult(job);
  } else if (job.status === "failed") {
    setStatus("failed");
    $("#job-error").textContent = job.error || "failed";
    $("#job-error").hidden = false;
  } else {
    setStatus("cancelled");
  }
}

function showResult(job) {
  const r = job.result;
  if (!r || r.available === false) {
    $("#job-error").textContent = "the result is no longer kept";
    $("#job-error").hidden = false;
    return;
  }
  const src = withToken(r.url);
  // PNG frames come as a zip: the poster shows the middle frame, the link downloads them all.
  const media = r.format === "png"
    ? el("img", { id: "result-img", src: withToken(`/v1/jobs/${job.id}/poster`), alt: job.prompt || "result" })
    : r.format === "gif"
    ? el("img", { id: "result-img", src, alt: job.prompt || "result" })
    : el("video", {
      id: "result-video",
      src,
      controls: true,
      autoplay: true,
      loop: true,
      muted: true,
      playsInline: true,
    });
  if (media.tagName === "VIDEO") media.muted = true;
  $("#media").replaceChildren(media);
  $("#download").href = withToken(r.url, { download: "1" });
  $("#download").setAttribute("download", `zerovid-${job.id.slice(0, 8)}.${r.format === "png" ? "zip" : r.format}`);
  $("#download").textContent = r.format === "png" ? "Download the frames (PNG, zip)" : "Download";
  $("#result-info").textContent = `${r.frames} frames · ${r.width}×${r.height} · ${r.fps} fps · ${
    (r.bytes / 1024).toFixed(0)
  } KiB`;
  $("#result").hidden = false;
}

$("#cancel").addEventListener("click", async () => {
  if (!current) return;
  $("#cancel").disabled = true;
  const { res, body } = await api(`/v1/jobs/${current.id}`, { method: "DELETE" });
  if (res.status === 202) setStatus("stopping at the next step…");
  else if (!res.ok) setStatus(body?.error || `cancel failed (HTTP ${res.status})`);
});

// ---------------------------------------------------------------------------------------------------------------
// Recent jobs

async function refreshJobs() {
  const { res, body } = await api("/v1/jobs?limit=20");
  if (!res.ok) return;
  const list = $("#jobs");
  list.replaceChildren(...body.jobs.map((j) => {
    const when = new Date(j.createdAt).toLocaleTimeString();
    const open = el("button", { type: "button", class: "small", onclick: () => track(j.id) }, "open");
    const remove = el("button", {
      type: "button",
      class: "small",
      onclick: async () => {
        await api(`/v1/jobs/${j.id}`, { method: "DELETE" });
        refreshJobs();
      },
    }, j.status === "queued" || j.status === "running" ? "cancel" : "delete");
    const poster = j.status === "succeeded" && j.result?.available !== false
      ? el("img", {
        class: "poster",
        src: withToken(`/v1/jobs/${j.id}/poster`),
        alt: "",
        loading: "lazy",
        width: 48,
        height: 48,
      })
      : el("span", { class: "poster" });
    return el(
      "li",
      { "data-id": j.id },
      poster,
      el("span", { class: `badge ${j.status}`, text: j.status }),
      el("span", { class: "muted", text: `${j.mode} · ${when}` }),
      el("span", { class: "prompt", title: j.prompt, text: j.prompt }),
      open,
      remove,
    );
  }));
  if (!body.jobs.length) list.append(el("li", { class: "muted", text: "none yet" }));
}

$("#refresh").addEventListener("click", refreshJobs);
setInterval(() => {
  if (document.visibilityState !== "visible") return;
  refreshJobs();
  refreshHealth();
}, 10000);

// ---------------------------------------------------------------------------------------------------------------
// Start

async function refreshHealth() {
  try {
    const h = await (await fetch("/healthz")).json();
    limits = { ...limits, ...h.limits };
    $("#health").textContent =
      `GPU: ${h.adapter}${h.ok ? "" : " (unavailable: " + h.error + ")"} · queue ${h.queue.queued}` +
      (h.queue.running ? " + 1 running" : "");
    demo = !!h.demo;
    $("#demo-banner").hidden = !h.demo;
  } catch (e) {
    $("#health").textContent = `server unreachable: ${e.message}`;
  }
}

async function start() {
  await refreshHealth();
  const [m, f] = await Promise.all([api("/v1/models"), api("/v1/fields")]);
  if (m.res.ok) models = m.body.models;
  if (f.res.ok) ({ fields, prompt: promptMax } = f.body);
  buildTabs();
  refreshJobs();
}

$("#token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("#token").value.trim();
  localStorage.setItem("zerovid-token", token);
  $("#token-form").hidden = true;
  start();
});

start();
