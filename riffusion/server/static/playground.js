// riffusion playground: endless music that morphs from prompt to prompt.
//
// Schedule (the original web app's): the first clip is the prompt and seed alone (alpha 0);
// then each transition runs 4 clips at alpha 0.25, 0.5, 0.75, 1.0 from the current prompt to
// the target: the "up next" prompt if one was typed, else the same prompt with seed + 1.
// Clips are scheduled back to back on the Web Audio clock, with up to BUFFER_AHEAD clips
// generated ahead of the one playing.
//
// Live changes: the settings (denoising, guidance, steps, seed image, scheduler) are read for
// every request, and a new prompt or setting discards the clips made ahead that have not
// started (and cancels the one being made), so the next clip played already follows it.
//
// Every URL is relative to the page, so the page works wherever the app is mounted.
"use strict";

const BUFFER_AHEAD = 3;
const STEPS_PER_TRANSITION = 4;
const TIMELINE_SECONDS = 24;
const PLAYHEAD_FRACTION = 0.3;
const MAX_ROWS = 20;        // clips listed in the debug table (the newest)
const MAX_RESULTS = 64;     // clips kept in memory (played ones are dropped beyond)
const HISTORY_SHOWN = 5;    // earlier prompts on the stage

const $ = (id) => document.getElementById(id);
const BASE = new URL(".", window.location.href);  // the page's folder: "/" or "/riff/"
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");

// Names of the request fields as the settings call them (the server's 400s name the field).
const FIELD_LABELS = {
  num_inference_steps: "Steps",
  seed_image_id: "Seed image",
  mask_image_id: "Mask",
  scheduler: "Scheduler",
  denoising: "Denoising",
  guidance: "Guidance",
  seed: "Seed",
  prompt: "Prompt",
  negative_prompt: "Negative prompt",
  alpha: "Alpha",
  recipe: "Exact link",
};

const state = {
  ctx: null,
  playing: false,
  pumping: false,
  startedOnce: false,  // the clock has run; later gaps show as "falling behind"
  from: null,          // {prompt, seed} now at alpha 0
  to: null,            // {prompt, seed}: target of the running transition
  alphaIndex: 0,       // 1..4 within the transition
  upNext: null,        // typed prompt waiting for the next transition
  nextSeed: null,      // seed typed while playing: the next transition goes to it
  counter: 0,
  results: [],         // clips kept: {counter, alpha, start, end, startTime, duration, ...}
  history: [],         // prompts played, oldest first
  nextStartTime: 0,
  underruns: 0,
  discarded: 0,        // clips made ahead and dropped because something changed
  epoch: 0,            // bumped by every change; answers of an older epoch are dropped
  abort: null,         // AbortController of the request in flight
  inFlight: null,      // the schedule before the request in flight
  pendingRecipe: null, // from ?recipe=: rendered exactly as the first clip
  lastError: null,
  error: null,         // {field, message} shown until dismissed or the next success
  health: null,
  requests: [],        // bodies sent to /api/clip (the newest 50), for the curious
};
window.playground = state;  // for the browser test and for curious users

// ------------------------------------------------------------------------------ URLs
function pageUrl(path) {
  return new URL(path, BASE).href;
}

// ------------------------------------------------------------------------------ settings
function denoising() {
  const chosen = document.querySelector('input[name="denoising"]:checked').value;
  return chosen === "custom" ? Number($("denoising-custom").value) : Number(chosen);
}

function promptInput(slot) {
  // Denoising and guidance are read now: a change applies from the next request.
  return {
    prompt: slot.prompt, seed: slot.seed, denoising: denoising(), guidance: Number($("guidance").value),
  };
}

function requestOptions() {
  const options = {
    num_inference_steps: Number($("steps").value),
    seed_image_id: $("seed-image").value || "og_beat",
    mask_image_id: null,
  };
  // Only a scheduler the user picked: otherwise the server's default (DPM++ on a CPU) stands.
  if ($("scheduler").value) options.scheduler = $("scheduler").value;
  return options;
}

function limits() {
  return (state.health && state.health.limits) || { max_num_inference_steps: 200, max_prompt_chars: 1000 };
}

function validate() {
  // The checks the server makes, made before sending, with the settings' names.
  const steps = $("steps").value;
  const maxSteps = limits().max_num_inference_steps;
  if (!/^\s*\d+\s*$/.test(steps) || Number(steps) < 1 || Number(steps) > maxSteps) {
    return { field: "Steps", message: `${steps || "(empty)"} must be an integer in [1, ${maxSteps}]` };
  }
  const d = denoising();
  if (!Number.isFinite(d) || d < 0 || d > 1) {
    return { field: "Denoising", message: `${$("denoising-custom").value || "(empty)"} must be in [0, 1]` };
  }
  const g = $("guidance").value;
  if (g.trim() === "" || !Number.isFinite(Number(g))) {
    return { field: "Guidance", message: `${g || "(empty)"} must be a number` };
  }
  const seed = $("seed").value;
  if (!/^\s*\d+\s*$/.test(seed)) {
    return { field: "Seed", message: `${seed || "(empty)"} must be a whole number ≥ 0` };
  }
  const maxChars = limits().max_prompt_chars;
  for (const text of [$("prompt").value, state.upNext || ""]) {
    if (text.length > maxChars) {
      return { field: "Prompt", message: `is ${text.length} characters long; at most ${maxChars}` };
    }
  }
  return null;
}

function typedSeed() {
  return Math.max(0, Math.round(Number($("seed").value) || 0));
}

// ------------------------------------------------------------------------------ schedule
function snapshot() {
  return {
    from: state.from, to: state.to, alphaIndex: state.alphaIndex,
    upNext: state.upNext, nextSeed: state.nextSeed, pendingRecipe: state.pendingRecipe,
  };
}

function restore(saved) {
  // What was typed since is kept: it applies from the next clip.
  const typed = { upNext: state.upNext, nextSeed: state.nextSeed !== null ? state.nextSeed : saved.nextSeed };
  Object.assign(state, saved, typed);
}

function nextRequest() {
  if (state.pendingRecipe) {
    const recipe = state.pendingRecipe;
    state.pendingRecipe = null;
    return { body: { recipe } };
  }
  if (!state.from) {
    const prompt = (state.upNext || $("prompt").value || "").trim() || "lo-fi beat";
    state.upNext = prompt;
    state.nextSeed = null;
    state.from = { prompt, seed: typedSeed() };
    state.to = null;
    state.alphaIndex = 0;
    return { body: { start: promptInput(state.from), end: null, alpha: 0, ...requestOptions() } };
  }
  // state.upNext is the prompt asked for last; it stays until another is typed.
  const target = state.to || state.from;
  const wanted = state.upNext && state.upNext !== target.prompt ? state.upNext : null;
  if (!state.to || state.alphaIndex >= STEPS_PER_TRANSITION || wanted || state.nextSeed !== null) {
    // A new transition: from where the music is (the nearer end of a running transition).
    if (state.to && state.alphaIndex >= STEPS_PER_TRANSITION / 2) state.from = state.to;
    const prompt = wanted || state.from.prompt;
    const seed = state.nextSeed !== null ? state.nextSeed : state.from.seed + 1;
    state.to = { prompt, seed };
    state.nextSeed = null;
    state.alphaIndex = 0;
  }
  state.alphaIndex += 1;
  const alpha = state.alphaIndex / STEPS_PER_TRANSITION;
  return { body: { start: promptInput(state.from), end: promptInput(state.to), alpha, ...requestOptions() } };
}

function adoptRecipe(recipe) {
  // Continue the schedule from a clip rendered from a recipe.
  const start = { prompt: recipe.start.prompt, seed: recipe.start.seed };
  const end = recipe.end ? { prompt: recipe.end.prompt, seed: recipe.end.seed } : null;
  const quarters = Math.round(recipe.alpha * STEPS_PER_TRANSITION);
  if (end && Math.abs(quarters / STEPS_PER_TRANSITION - recipe.alpha) < 1e-9 && quarters > 0) {
    state.from = start;
    state.to = end;
    state.alphaIndex = quarters;
  } else {
    state.from = end && recipe.alpha >= 1 ? end : start;
    state.to = null;
  }
  $("prompt").value = state.from.prompt;
  $("seed").value = state.from.seed;
}

// A change of prompt or setting: drop what was made ahead and has not started, cancel the
// request in flight, and continue the schedule from the clip playing now.
function remakeAhead() {
  state.epoch += 1;
  if (state.abort) state.abort.abort();
  state.abort = null;
  const now = state.ctx ? state.ctx.currentTime : 0;
  const keep = (r) => state.startedOnce && r.startTime <= now + 0.05;
  const dropped = state.results.filter((r) => !keep(r));
  for (const r of dropped) {
    try { r.source.stop(); } catch (error) { /* never started */ }
    r.source.disconnect();
    const row = $("results").querySelector(`tbody tr[data-counter="${r.counter}"]`);
    if (row) row.remove();
  }
  state.discarded += dropped.length;
  state.results = state.results.filter(keep);
  const last = state.results[state.results.length - 1];
  state.nextStartTime = last ? last.startTime + last.duration : 0;
  // The schedule continues after the clip playing now (or from the start).
  const saved = last ? last.schedule : dropped.length ? dropped[0].before : state.inFlight;
  if (saved) restore(saved);
}

function onSettingChanged() {
  if (state.playing || state.results.length) remakeAhead();
}

// ------------------------------------------------------------------------------ network
async function fetchJSON(url, options) {
  const response = await fetch(pageUrl(url), options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error || response.statusText || `HTTP ${response.status}`);
    error.status = response.status;
    error.field = data.field || null;
    error.retryAfter = Number(response.headers.get("Retry-After") || 0);
    throw error;
  }
  return data;
}

async function generate(request, signal) {
  state.requests.push(request.body);
  if (state.requests.length > 50) state.requests.shift();
  for (;;) {
    try {
      return await fetchJSON("api/clip", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(request.body),
        signal,
      });
    } catch (error) {
      if (error.status !== 503) throw error;
      setStatus(`server busy; retrying in ${error.retryAfter || 1} s`, false);
      await sleep(1000 * (error.retryAfter || 1));
      if (signal.aborted) throw error;
    }
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------------------ errors
function fieldLabel(field) {
  if (!field) return null;
  const last = String(field).split(".").pop();
  return FIELD_LABELS[last] || last;
}

function showError(field, message) {
  state.error = { field, message };
  $("error-text").textContent = field ? `${field}: ${message}` : message;
  $("error").hidden = false;
}

function clearError() {
  state.error = null;
  $("error").hidden = true;
  $("error-text").textContent = "";
}

function notify(text) {
  // Stays until the next notice (never overwritten by the playback status).
  $("notice").textContent = text;
}

// ------------------------------------------------------------------------------ playback
function ensureContext() {
  if (!state.ctx) {
    const Context = window.AudioContext || window.webkitAudioContext;
    state.ctx = new Context({ sampleRate: 44100, latencyHint: "playback" });
    state.ctx.suspend();  // the clock starts once enough clips are buffered (see prebuffer())
  }
  return state.ctx;
}

function prebuffer() {
  return Math.min(BUFFER_AHEAD, Math.max(1, Math.round(Number($("prebuffer").value) || 1)));
}

function startClockIfBuffered() {
  const ctx = state.ctx;
  if (!state.playing || ctx.state !== "suspended") return;
  if (state.results.length >= prebuffer() || state.startedOnce) {
    state.startedOnce = true;
    ctx.resume();
  } else {
    setStatus(`buffering ${state.results.length}/${prebuffer()} clips before playing…`, false);
  }
}

function bufferedAhead() {
  const now = state.ctx ? state.ctx.currentTime : 0;
  return state.results.filter((r) => r.startTime > now).length;
}

async function pump() {
  if (state.pumping) return;
  state.pumping = true;
  try {
    for (;;) {
      if (bufferedAhead() >= BUFFER_AHEAD || (!state.playing && bufferedAhead() >= 1)) {
        await sleep(100);
        continue;
      }
      const problem = validate();
      if (problem) {
        if (!state.error || state.error.field !== problem.field || state.error.message !== problem.message) {
          showError(problem.field, problem.message);
        }
        setStatus("waiting for a valid setting", true);
        await sleep(250);
        continue;
      }
      const epoch = state.epoch;
      const before = snapshot();
      state.inFlight = before;
      const request = nextRequest();
      const controller = new AbortController();
      state.abort = controller;
      setStatus(`generating clip ${state.counter + 1}…`, isBehind());
      let clip;
      try {
        clip = await generate(request, controller.signal);
      } catch (error) {
        if (epoch !== state.epoch) continue;  // cancelled by a change
        restore(before);  // the same clip is asked for again
        state.lastError = String(error);
        showError(fieldLabel(error.field), error.message);
        await sleep(2000);
        continue;
      }
      if (epoch !== state.epoch) continue;
      if (request.body.recipe) adoptRecipe(clip.recipe);
      clearError();
      try {
        await schedule(clip, request, epoch, before);
      } catch (error) {
        if (epoch !== state.epoch) continue;
        restore(before);
        state.lastError = String(error);
        showError("Audio", `could not play the clip: ${error.message}`);
        await sleep(2000);
      } finally {
        state.inFlight = null;
      }
    }
  } finally {
    state.pumping = false;
  }
}

async function schedule(clip, request, epoch, before) {
  const ctx = ensureContext();
  const after = snapshot();
  const response = await fetch(clip.files.wav)  /* the server's links carry the mount point */;
  if (!response.ok) throw new Error(`${clip.files.wav} answered ${response.status}`);
  const wav = await response.arrayBuffer();
  const buffer = await ctx.decodeAudioData(wav);
  if (epoch !== state.epoch) return;  // something changed while it downloaded
  const image = new Image();
  image.src = clip.image;
  let startTime = state.nextStartTime;
  if (startTime < ctx.currentTime + 0.05) {
    if (state.results.length) state.underruns += 1;
    startTime = ctx.currentTime + 0.1;
  }
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(ctx.destination);
  source.start(startTime);
  state.counter += 1;
  const recipe = clip.recipe;
  const result = {
    counter: state.counter,
    alpha: recipe.alpha,
    start: recipe.start,
    end: recipe.end,
    steps: recipe.num_inference_steps,
    seedImage: request.body.seed_image_id || recipe.seed_image || "",
    denoising: recipe.start.denoising,
    timings: clip.debug.timings_s,
    device: clip.device,
    files: clip.files,
    recipeUrl: clip.recipe_url,
    image,
    source,
    startTime,
    duration: buffer.duration,
    before,           // the schedule before this clip was asked for
    schedule: after,  // and after
  };
  state.nextStartTime = startTime + buffer.duration;
  state.results.push(result);
  forgetOldClips();
  addResultRow(result);
  startClockIfBuffered();
}

function forgetOldClips() {
  const now = state.ctx ? state.ctx.currentTime : 0;
  while (state.results.length > MAX_RESULTS && state.results[0].startTime + state.results[0].duration < now) {
    state.results.shift();
  }
}

async function togglePlay() {
  const ctx = ensureContext();
  state.playing = !state.playing;
  const button = $("play");
  button.setAttribute("aria-pressed", String(state.playing));
  button.setAttribute("aria-label", state.playing ? "Pause" : "Play");
  button.querySelector(".play-text").textContent = state.playing ? "Pause" : "Play";
  if (state.playing) {
    startClockIfBuffered();
    pump();
  } else {
    await ctx.suspend();
    setStatus("paused", false);
  }
}

// ------------------------------------------------------------------------------ display
function isBehind() {
  return (
    state.playing &&
    state.ctx !== null &&
    state.results.length > 0 &&
    state.ctx.currentTime >= state.nextStartTime
  );
}

function setStatus(text, behind) {
  const element = $("buffer-status");
  if (element.textContent !== text) element.textContent = text;
  element.classList.toggle("behind", Boolean(behind));
}

function secondsPerClip() {
  const recent = state.results.slice(-4);
  if (!recent.length) return null;
  return recent.reduce((sum, r) => sum + (r.timings.total || 0) + (r.timings.encode || 0), 0) /
    recent.length;
}

function nowPlaying() {
  if (!state.ctx) return null;
  const now = state.ctx.currentTime;
  return state.results.find((r) => r.startTime <= now && now < r.startTime + r.duration) || null;
}

function describe(input) {
  return input ? `${input.prompt} (${input.seed})` : "—";
}

function addResultRow(result) {
  const row = document.createElement("tr");
  row.dataset.counter = String(result.counter);
  row.dataset.alpha = String(result.alpha);
  const t = result.timings;
  const stages = [t.text_encoder, t.unet, (t.vae_encode || 0) + (t.vae_decode || 0), t.audio_decode, t.encode, t.queue]
    .map((v) => (v || 0).toFixed(2)).join(" / ");
  for (const text of [
    result.counter, result.alpha.toFixed(2), describe(result.start), describe(result.end),
    result.steps, stages, (t.total || 0).toFixed(2), result.device, result.seedImage,
    Number(result.denoising).toFixed(2),
  ]) {
    const cell = document.createElement("td");
    cell.textContent = String(text);
    row.appendChild(cell);
  }
  const body = $("results").querySelector("tbody");
  body.appendChild(row);
  while (body.rows.length > MAX_ROWS) body.rows[0].remove();
  $("clip-count").textContent =
    `Clips: ${state.counter} made, ${state.discarded} made ahead and discarded after a change; ` +
    `the last ${MAX_ROWS} are listed`;
}

function shareLinks(result) {
  const input = result.alpha >= 1 && result.end ? result.end : result.start;
  const params = new URLSearchParams({
    prompt: input.prompt,
    seed: String(input.seed),
    denoising: String(input.denoising),
    seedImageId: result.seedImage || $("seed-image").value || "og_beat",
  });
  return [`${BASE.href}?${params}`, `${BASE.href}?recipe=${encodeURIComponent(result.recipeUrl)}`];
}

function playingPrompt(result) {
  return result.alpha >= 1 && result.end ? result.end.prompt : result.start.prompt;
}

function showHistory(prompt) {
  if (state.history[state.history.length - 1] === prompt) return;
  state.history.push(prompt);
  const list = $("history");
  list.innerHTML = "";
  for (const earlier of state.history.slice(-HISTORY_SHOWN - 1, -1)) {
    const item = document.createElement("li");
    item.textContent = earlier;
    list.appendChild(item);
  }
  $("now-prompt").textContent = prompt;
}

function upNextText(playing) {
  const transitioning =
    playing && playing.end && playing.alpha < 1 && playing.end.prompt !== playing.start.prompt
      ? playing.end.prompt : null;
  const now = playing ? playingPrompt(playing) : null;
  let waiting = state.upNext && state.upNext !== now && state.upNext !== transitioning ? state.upNext : null;
  if (!waiting && state.to && state.to.prompt !== now && state.to.prompt !== transitioning) {
    waiting = state.to.prompt;
  }
  if (transitioning && waiting && waiting !== transitioning) {
    return `Transitioning to: ${transitioning} · up next: ${waiting}`;
  }
  if (transitioning) return `Transitioning to: ${transitioning}`;
  if (waiting) return `Up next: ${waiting}`;
  return state.playing ? "Up next: type a prompt" : "Up next: nothing yet";
}

let shownCounter = null;
let lastDraw = 0;
function refresh(time) {
  const playing = nowPlaying();
  const counter = playing ? playing.counter : null;
  if (counter !== shownCounter) {
    shownCounter = counter;
    for (const row of $("results").querySelectorAll("tbody tr")) {
      const current = row.dataset.counter === String(counter);
      row.classList.toggle("playing", current);
      if (current) row.setAttribute("aria-current", "true");
      else row.removeAttribute("aria-current");
    }
    if (playing) {
      showHistory(playingPrompt(playing));
      $("now-playing").textContent =
        `Now playing: #${playing.counter} ${describe(playing.start)} → ${describe(playing.end)} ` +
        `at alpha ${playing.alpha.toFixed(2)}`;
      const [share, exact] = shareLinks(playing);
      $("share-link").value = share;
      $("exact-link").value = exact;
      for (const [id, key] of [["download-wav", "wav"], ["download-mp3", "mp3"], ["download-png", "png"]]) {
        const link = $(id);
        link.href = playing.files[key];
        link.setAttribute("aria-disabled", "false");
      }
    }
  }
  const upNext = upNextText(playing);
  if ($("up-next").textContent !== upNext) $("up-next").textContent = upNext;
  if (state.playing && state.results.length && !validate()) {
    const perClip = secondsPerClip();
    const clipSeconds = state.results[state.results.length - 1].duration;
    if (isBehind()) {
      setStatus(
        `falling behind: generating takes ${perClip.toFixed(1)} s per ${clipSeconds.toFixed(2)} s ` +
        `clip on ${state.results[0].device}; playback waits for the next clip`, true);
    } else {
      setStatus(`playing; ${bufferedAhead()} clip(s) buffered ahead ` +
        `(${perClip.toFixed(1)} s to generate a ${clipSeconds.toFixed(2)} s clip)`, false);
    }
  }
  const slots =
    `Prompt slots: from ${describe(state.from)} → to ${describe(state.to)} ` +
    `(step ${state.alphaIndex}/${STEPS_PER_TRANSITION}); up next: ${state.upNext || "—"}`;
  if ($("slots").textContent !== slots) $("slots").textContent = slots;
  // With reduced motion the picture changes once a second instead of scrolling.
  if (!reducedMotion.matches || time - lastDraw > 1000) {
    lastDraw = time;
    drawTimeline();
  }
  requestAnimationFrame(refresh);
}

function drawTimeline() {
  const canvas = $("timeline");
  const g = canvas.getContext("2d");
  const width = canvas.width;
  const height = canvas.height;
  g.fillStyle = "#000";
  g.fillRect(0, 0, width, height);
  const now = state.ctx ? state.ctx.currentTime : 0;
  const pixelsPerSecond = width / TIMELINE_SECONDS;
  const playhead = width * PLAYHEAD_FRACTION;
  for (const r of state.results) {
    const x = playhead + (r.startTime - now) * pixelsPerSecond;
    const w = r.duration * pixelsPerSecond;
    if (x + w < 0 || x > width) continue;
    if (r.image.complete && r.image.naturalWidth) g.drawImage(r.image, x, 0, w, height);
    g.fillStyle = "rgba(255,255,255,0.85)";
    g.font = "16px system-ui";
    if (w > 90) g.fillText(`#${r.counter} α${r.alpha.toFixed(2)}`, x + 4, 18);
    g.fillRect(x, 0, 1, height);
  }
  // Played part dimmed, the playhead bright.
  g.fillStyle = "rgba(18,15,24,0.45)";
  g.fillRect(0, 0, playhead, height);
  g.fillStyle = "#c3a3ff";
  g.fillRect(playhead - 1.5, 0, 3, height);
}

// ------------------------------------------------------------------------------ setup
async function loadSeedImages(selected) {
  const items = await fetchJSON("seed_images");
  const select = $("seed-image");
  select.innerHTML = "";
  for (const item of items) {
    const option = document.createElement("option");
    option.value = item.id;
    option.textContent = item.id;
    option.dataset.description = item.description;
    option.dataset.thumbnail = item.thumbnail;
    select.appendChild(option);
  }
  // The web app's default id (og_beat, served through the library's alias table) unless the
  // link names another one, so share links stay compatible with the original app.
  const wanted = selected || "og_beat";
  if (items.some((item) => item.id === wanted)) select.value = wanted;
  showSeed();
}

function showSeed() {
  const option = $("seed-image").selectedOptions[0];
  if (!option) return;
  $("seed-description").textContent = option.dataset.description || "";
  $("seed-thumbnail").src = option.dataset.thumbnail || "";
  $("seed-thumbnail").alt = `spectrogram of ${option.value}`;
}

async function uploadSeed(file) {
  notify(`turning ${file.name} into a seed image…`);
  try {
    const answer = await fetchJSON("api/seed_image", { method: "POST", body: file });
    await loadSeedImages(answer.id);
    notify(`seed image ${answer.id} ready (from ${file.name}); it plays from the next clip`);
    onSettingChanged();
  } catch (error) {
    notify("");
    showError("Seed upload", error.message);
  }
}

async function pollHealth() {
  try {
    const h = await fetchJSON("health");
    state.health = h;
    $("health").textContent =
      `Server: ${h.status}, riffusion ${h.version}, model ${h.model} on ${h.device} (${h.dtype}), ` +
      `scheduler ${h.scheduler}, queue ${h.queue_depth}/${h.max_queue}, ` +
      `${h.seconds_per_clip} s per clip`;
    const select = $("scheduler");
    select.options[0].textContent = `server default (${h.scheduler})`;
    if (select.options.length <= 1) {
      for (const name of h.schedulers || []) {
        const option = document.createElement("option");
        option.value = option.textContent = name;
        select.appendChild(option);
      }
      if (state.wantedScheduler) select.value = state.wantedScheduler;
    }
    const max = h.limits && h.limits.max_num_inference_steps;
    if (max) $("steps").max = String(max);
  } catch (error) {
    $("health").textContent = `Server: unreachable (${error.message})`;
  }
}

function applyQuery() {
  const query = new URLSearchParams(window.location.search);
  if (query.get("recipe")) state.pendingRecipe = query.get("recipe");
  if (query.get("prompt")) {
    $("prompt").value = query.get("prompt");
    state.upNext = query.get("prompt");
  }
  if (query.get("seed") && Number.isFinite(Number(query.get("seed")))) {
    $("seed").value = String(Math.max(0, Math.round(Number(query.get("seed")))));
  }
  const d = query.get("denoising");
  if (d && Number.isFinite(Number(d))) {
    const preset = document.querySelector(`input[name="denoising"][value="${Number(d)}"]`);
    if (preset) preset.checked = true;
    else {
      document.querySelector('input[name="denoising"][value="custom"]').checked = true;
      $("denoising-custom").value = d;
    }
  }
  if (query.get("guidance")) $("guidance").value = query.get("guidance");
  if (query.get("steps")) $("steps").value = query.get("steps");
  if (query.get("prebuffer")) $("prebuffer").value = query.get("prebuffer");
  if (query.get("scheduler")) state.wantedScheduler = query.get("scheduler");
  return query.get("seedImageId");
}

function setUpNext(prompt) {
  const text = prompt.trim();
  if (!text || text === state.upNext) return;
  state.upNext = text;
  onSettingChanged();
}

async function randomPrompt() {
  try {
    const { prompt } = await fetchJSON("random_prompt");
    $("prompt").value = prompt;
    setUpNext(prompt);
  } catch (error) {
    showError("Random prompt", error.message);
  }
}

// ------------------------------------------------------------------------------ panels
function togglePanel(id, open) {
  const panel = $(id);
  const show = open === undefined ? panel.hidden : open;
  panel.hidden = !show;
  for (const button of document.querySelectorAll(`[aria-controls="${id}"]`)) {
    button.setAttribute("aria-expanded", String(show));
  }
  if (show) {
    for (const other of ["settings", "debug"]) if (other !== id) togglePanel(other, false);
    const first = panel.querySelector("button, input, select");
    if (first) first.focus();
  }
}

function openDialog(id) {
  const dialog = $(id);
  if (!dialog.open) dialog.showModal();
}

function init() {
  const seedImage = applyQuery();
  loadSeedImages(seedImage).catch((error) => showError("Seed images", error.message));
  pollHealth();
  setInterval(pollHealth, 5000);
  $("prompt-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setUpNext($("prompt").value);
  });
  $("random-prompt").addEventListener("click", randomPrompt);
  $("play").addEventListener("click", () => {
    if (!state.from && !state.pendingRecipe && $("prompt").value.trim()) setUpNext($("prompt").value);
    togglePlay();
  });
  $("seed-image").addEventListener("change", () => {
    showSeed();
    onSettingChanged();
  });
  $("seed-upload").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) uploadSeed(file);
  });
  $("denoising-custom").addEventListener("input", () => {
    document.querySelector('input[name="denoising"][value="custom"]').checked = true;
  });
  for (const id of ["denoising-custom", "guidance", "steps", "scheduler"]) {
    $(id).addEventListener("change", onSettingChanged);
  }
  for (const radio of document.querySelectorAll('input[name="denoising"]')) {
    radio.addEventListener("change", onSettingChanged);
  }
  $("seed").addEventListener("change", () => {
    if (!state.from) return;  // read when the first clip is asked for
    state.nextSeed = typedSeed();
    onSettingChanged();
  });
  $("dismiss-error").addEventListener("click", clearError);
  for (const [button, input] of [["copy-share", "share-link"], ["copy-exact", "exact-link"]]) {
    $(button).addEventListener("click", () => {
      $(input).select();
      if (navigator.clipboard) navigator.clipboard.writeText($(input).value).catch(() => {});
    });
  }
  $("open-settings").addEventListener("click", () => togglePanel("settings"));
  $("open-debug").addEventListener("click", () => togglePanel("debug"));
  $("column-settings").addEventListener("click", () => togglePanel("settings"));
  for (const button of document.querySelectorAll(".close-panel")) {
    button.addEventListener("click", () => {
      togglePanel(button.dataset.panel, false);
      $(`open-${button.dataset.panel}`).focus();
    });
  }
  $("open-share").addEventListener("click", () => openDialog("share-dialog"));
  $("open-help").addEventListener("click", () => openDialog("help-dialog"));
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = (event.target.tagName || "").toLowerCase();
    const typing = ["input", "textarea", "select"].includes(tag);
    if (event.key === "Escape") {
      for (const id of ["settings", "debug"]) if (!$(id).hidden) togglePanel(id, false);
      return;
    }
    if (typing || document.querySelector("dialog[open]")) return;
    const actions = {
      " ": () => $("play").click(),
      r: randomPrompt,
      s: () => openDialog("share-dialog"),
      "?": () => openDialog("help-dialog"),
      ",": () => togglePanel("settings"),
      d: () => togglePanel("debug"),
      "/": () => $("prompt").focus(),
    };
    // Space on a focused button presses that button, as everywhere.
    if (event.key === " " && tag === "button") return;
    const action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });
  requestAnimationFrame(refresh);
}

init();
