// riffusion playground: endless music that morphs from prompt to prompt.
//
// Schedule (the original web app's): the first clip is the prompt and seed alone (alpha 0);
// then each transition runs 4 clips at alpha 0.25, 0.5, 0.75, 1.0 from the current prompt to
// the target: the "up next" prompt if one was typed, else the same prompt with seed + 1.
// Clips are scheduled back to back on the Web Audio clock, with up to BUFFER_AHEAD clips
// generated ahead of the one playing.
"use strict";

const BUFFER_AHEAD = 3;
const STEPS_PER_TRANSITION = 4;
const TIMELINE_SECONDS = 24;
const PLAYHEAD_FRACTION = 0.3;

const $ = (id) => document.getElementById(id);

const state = {
  ctx: null,
  playing: false,
  pumping: false,
  startedOnce: false,  // the clock has run; later gaps show as "falling behind"
  from: null,          // prompt input now at alpha 0
  to: null,            // target prompt input of the running transition
  alphaIndex: 0,       // 1..4 within the transition
  upNext: null,        // typed prompt waiting for the next transition
  counter: 0,
  results: [],         // every clip: {counter, alpha, start, end, startTime, duration, ...}
  nextStartTime: 0,
  underruns: 0,
  pendingRecipe: null, // from ?recipe=: rendered exactly as the first clip
  lastError: null,
  health: null,
};
window.playground = state;  // for the browser test and for curious users

// ------------------------------------------------------------------------------ settings
function denoising() {
  const chosen = document.querySelector('input[name="denoising"]:checked').value;
  const value = chosen === "custom" ? Number($("denoising-custom").value) : Number(chosen);
  return Math.min(1, Math.max(0, value));
}

function promptInput(prompt, seed) {
  return { prompt, seed, denoising: denoising(), guidance: Number($("guidance").value) };
}

function requestOptions() {
  return {
    num_inference_steps: Math.max(1, Math.round(Number($("steps").value) || 50)),
    seed_image_id: $("seed-image").value || "og_beat",
    mask_image_id: null,
    scheduler: $("scheduler").value || "default",
  };
}

// ------------------------------------------------------------------------------ schedule
function nextRequest() {
  if (state.pendingRecipe) {
    const recipe = state.pendingRecipe;
    state.pendingRecipe = null;
    return { body: { recipe } };
  }
  if (!state.from) {
    const prompt = (state.upNext || $("prompt").value || "").trim() || "lo-fi beat";
    consumeUpNext();
    state.from = promptInput(prompt, Math.max(0, Math.round(Number($("seed").value) || 0)));
    return { body: { start: state.from, end: null, alpha: 0, ...requestOptions() } };
  }
  if (!state.to || state.alphaIndex >= STEPS_PER_TRANSITION) {
    if (state.to) state.from = state.to;
    const seed = state.from.seed + 1;
    if (state.upNext && state.upNext !== state.from.prompt) {
      state.to = promptInput(state.upNext, seed);
    } else {
      state.to = { ...state.from, seed };
    }
    consumeUpNext();
    state.alphaIndex = 0;
  }
  state.alphaIndex += 1;
  const alpha = state.alphaIndex / STEPS_PER_TRANSITION;
  return { body: { start: state.from, end: state.to, alpha, ...requestOptions() } };
}

function consumeUpNext() {
  if (state.upNext) $("up-next").textContent = `Transitioning to: ${state.upNext}`;
  state.upNext = null;
}

function adoptRecipe(recipe) {
  // Continue the schedule from a clip rendered from a recipe.
  const start = { ...recipe.start };
  const end = recipe.end ? { ...recipe.end } : null;
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

// ------------------------------------------------------------------------------ network
async function fetchJSON(url, options) {
  const response = await fetch(url, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(`${response.status}: ${data.error || response.statusText}`);
    error.status = response.status;
    error.retryAfter = Number(response.headers.get("Retry-After") || 0);
    throw error;
  }
  return data;
}

async function generate(request) {
  for (;;) {
    try {
      return await fetchJSON("/api/clip", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(request.body),
      });
    } catch (error) {
      if (error.status !== 503) throw error;
      setStatus(`server busy; retrying in ${error.retryAfter || 1} s`, false);
      await sleep(1000 * (error.retryAfter || 1));
    }
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

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
  return state.results.filter((r) => r.startTime !== undefined && r.startTime > now).length;
}

async function pump() {
  if (state.pumping) return;
  state.pumping = true;
  try {
    for (;;) {
      if (bufferedAhead() >= BUFFER_AHEAD || (!state.playing && bufferedAhead() >= 1)) {
        await sleep(150);
        continue;
      }
      const request = nextRequest();
      setStatus(`generating clip ${state.counter + 1}…`, isBehind());
      let clip;
      try {
        clip = await generate(request);
      } catch (error) {
        state.lastError = String(error);
        setStatus(`error: ${error.message}`, true);
        await sleep(2000);
        continue;
      }
      if (request.body.recipe) adoptRecipe(clip.recipe);
      await schedule(clip, request);
    }
  } finally {
    state.pumping = false;
  }
}

async function schedule(clip, request) {
  const ctx = ensureContext();
  const wav = await (await fetch(clip.files.wav)).arrayBuffer();
  const buffer = await ctx.decodeAudioData(wav);
  const image = new Image();
  image.src = clip.image;
  let startTime = state.nextStartTime;
  if (startTime < ctx.currentTime + 0.05) {
    if (state.results.some((r) => r.startTime !== undefined)) state.underruns += 1;
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
    seedImage: recipe.seed_image,
    timings: clip.debug.timings_s,
    device: clip.device,
    files: clip.files,
    recipeUrl: clip.recipe_url,
    image,
    startTime,
    duration: buffer.duration,
  };
  state.nextStartTime = startTime + buffer.duration;
  state.results.push(result);
  addResultRow(result);
  startClockIfBuffered();
}

async function togglePlay() {
  const ctx = ensureContext();
  state.playing = !state.playing;
  const button = $("play");
  button.setAttribute("aria-pressed", String(state.playing));
  button.textContent = state.playing ? "⏸ Pause" : "▶ Play";
  button.setAttribute("aria-label", state.playing ? "Pause" : "Play");
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
  element.textContent = text;
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
  const stages = [t.text_encoder, t.unet, t.vae_encode + t.vae_decode, t.audio_decode, t.encode, t.queue]
    .map((v) => (v || 0).toFixed(2)).join(" / ");
  for (const text of [
    result.counter, result.alpha.toFixed(2), describe(result.start), describe(result.end),
    result.steps, stages, (t.total || 0).toFixed(2), result.device,
  ]) {
    const cell = document.createElement("td");
    cell.textContent = String(text);
    row.appendChild(cell);
  }
  $("results").querySelector("tbody").appendChild(row);
}

function shareLinks(result) {
  const input = result.alpha >= 1 && result.end ? result.end : result.start;
  const params = new URLSearchParams({
    prompt: input.prompt,
    seed: String(input.seed),
    denoising: String(input.denoising),
    seedImageId: $("seed-image").value || "og_beat",
  });
  const origin = window.location.origin;
  return [`${origin}/?${params}`, `${origin}/?recipe=${encodeURIComponent(result.recipeUrl)}`];
}

let shownCounter = null;
function refresh() {
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
  if (state.playing && state.results.length) {
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
  $("slots").textContent =
    `Prompt slots: from ${describe(state.from)} → to ${describe(state.to)} ` +
    `(step ${state.alphaIndex}/${STEPS_PER_TRANSITION}); up next: ${state.upNext || "—"}`;
  drawTimeline();
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
    g.fillStyle = "rgba(255,255,255,0.8)";
    g.font = "12px system-ui";
    g.fillText(`#${r.counter} α${r.alpha.toFixed(2)}`, x + 4, 14);
    g.fillRect(x, 0, 1, height);
  }
  g.fillStyle = "#b388ff";
  g.fillRect(playhead - 1, 0, 2, height);
}

// ------------------------------------------------------------------------------ setup
async function loadSeedImages(selected) {
  const items = await fetchJSON("/seed_images");
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
  setStatus(`turning ${file.name} into a seed image…`, false);
  try {
    const answer = await fetchJSON("/api/seed_image", { method: "POST", body: file });
    await loadSeedImages(answer.id);
    setStatus(`seed image ${answer.id} ready (from ${file.name})`, false);
  } catch (error) {
    setStatus(`upload failed: ${error.message}`, true);
  }
}

async function pollHealth() {
  try {
    const h = await fetchJSON("/health");
    state.health = h;
    $("health").textContent =
      `Server: ${h.status}, riffusion ${h.version}, model ${h.model} on ${h.device} (${h.dtype}), ` +
      `scheduler ${h.scheduler}, queue ${h.queue_depth}/${h.max_queue}, ` +
      `${h.seconds_per_clip} s per clip`;
    const select = $("scheduler");
    if (select.options.length <= 1) {
      select.innerHTML = "";
      for (const name of h.schedulers) {
        const option = document.createElement("option");
        option.value = option.textContent = name;
        select.appendChild(option);
      }
    }
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
  return query.get("seedImageId");
}

function setUpNext(prompt) {
  const text = prompt.trim();
  if (!text) return;
  state.upNext = text;
  $("up-next").textContent = `Up next: ${text}`;
}

function init() {
  const seedImage = applyQuery();
  if (state.upNext) $("up-next").textContent = `Up next: ${state.upNext}`;
  loadSeedImages(seedImage).catch((error) => setStatus(`seed images: ${error.message}`, true));
  pollHealth();
  setInterval(pollHealth, 5000);
  $("prompt-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setUpNext($("prompt").value);
  });
  $("random-prompt").addEventListener("click", async () => {
    const { prompt } = await fetchJSON("/random_prompt");
    $("prompt").value = prompt;
    setUpNext(prompt);
  });
  $("play").addEventListener("click", () => {
    if (!state.from && !state.pendingRecipe && $("prompt").value.trim()) setUpNext($("prompt").value);
    togglePlay();
  });
  $("seed-image").addEventListener("change", showSeed);
  $("seed-upload").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) uploadSeed(file);
  });
  $("denoising-custom").addEventListener("input", () => {
    document.querySelector('input[name="denoising"][value="custom"]').checked = true;
  });
  for (const [button, input] of [["copy-share", "share-link"], ["copy-exact", "exact-link"]]) {
    $(button).addEventListener("click", () => {
      $(input).select();
      if (navigator.clipboard) navigator.clipboard.writeText($(input).value).catch(() => {});
    });
  }
  document.addEventListener("keydown", (event) => {
    const tag = (event.target.tagName || "").toLowerCase();
    const typing = ["input", "textarea", "select", "button"].includes(tag);
    if (event.code === "Space" && !typing) {
      event.preventDefault();
      $("play").click();
    }
  });
  requestAnimationFrame(refresh);
}

init();
