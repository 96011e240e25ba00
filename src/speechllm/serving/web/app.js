// speechllm web page: upload or record a clip, send it to POST v1/understand, show the answer.
//
// Plain browser JavaScript (no build step, no libraries: the page must work offline). Every
// string that comes from the model or the server is put into the page with textContent or
// createTextNode, never innerHTML, so a transcript cannot inject markup.
//
// A recording longer than 30 s comes back split into pieces (`pieces`: start, end and the answers
// of each; `entities`: [tag, phrase, start, end]); the page then also lists the entities with
// their times and shows a table of the pieces.
//
// window.speechllm exposes render(), locateEntities() and encodeWav() for tests and for use
// from the console.
"use strict";

(() => {
  // SLUE's 7 combined tags (speechllm.labels.SLUE_TAGS): each has its own colour class.
  const TAGS = ["PLACE", "QUANT", "ORG", "WHEN", "NORP", "PERSON", "LAW"];

  // How long a recording may get: the server's limits from /healthz (the longest recording it
  // takes, and the upload size, which a WAV at the microphone's rate reaches first); 30 s until
  // /healthz has answered (the server splits longer recordings into pieces).
  const limits = { maxSeconds: 30, maxUploadBytes: Infinity };

  const TIMING_LABELS = {
    decode_s: "decode upload",
    encode_s: "encode audio (batch)",
    generate_s: "generate answers (batch)",
    total_s: "total, queueing included",
  };

  // What each refusal of the server means, in words (the JSON `detail` says the specifics).
  const STATUS_TEXT = {
    413: "Upload or audio too long",
    422: "Not usable audio or request",
    429: "Server busy",
    504: "No answer in time",
  };

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ entity placement

  // Python's re `\w` is Unicode-aware; JavaScript's is ASCII-only, so spell it out.
  const WORD = "[\\p{L}\\p{N}_]";

  function escapeRegExp(text) {
    // Only the syntax characters: under the `u` flag any other escaped character is an error.
    return text.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
  }

  /**
   * Place entity phrases in a transcript, as speechllm.prompts.format_ner does: in list order,
   * each phrase claims its first whole-word occurrence that no earlier entity claimed.
   * Returns {spans: [{start, end, tag, index}] sorted left to right, unplaced: [{tag, phrase,
   * index}]}; `index` is the entity's position in the list.
   */
  function locateEntities(text, entities) {
    const spans = [];
    const unplaced = [];
    entities.forEach(([tag, phrase], index) => {
      if (phrase) {
        const re = new RegExp(`(?<!${WORD})${escapeRegExp(phrase)}(?!${WORD})`, "gu");
        for (const m of text.matchAll(re)) {
          const start = m.index;
          const end = start + m[0].length;
          if (spans.every((s) => end <= s.start || start >= s.end)) {
            spans.push({ start, end, tag, index });
            return;
          }
        }
      }
      unplaced.push({ tag, phrase, index });
    });
    spans.sort((a, b) => a.start - b.start);
    return { spans, unplaced };
  }

  function entityMark(tag, text, index, placed) {
    const mark = document.createElement("mark");
    mark.className = `entity tag-${TAGS.includes(tag) ? tag : "other"}`;
    mark.dataset.tag = tag;
    mark.dataset.index = String(index);
    mark.dataset.placed = String(placed);
    mark.title = tag;
    mark.textContent = text;
    return mark;
  }

  // ------------------------------------------------------------------ rendering

  function show(id, visible) {
    $(id).hidden = !visible;
  }

  function formatSeconds(s) {
    return s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`;
  }

  /** A time in a recording as m:ss.s (1:05.3). */
  function formatClock(s) {
    const t = Math.max(0, Number(s) || 0);
    const minutes = Math.floor(t / 60);
    const seconds = (t - minutes * 60).toFixed(1).padStart(4, "0");
    return `${minutes}:${seconds}`;
  }

  function formatSpan(start, end) {
    return `${formatClock(start)}–${formatClock(end)}`;
  }

  function cell(row, text) {
    const td = row.insertCell();
    td.textContent = text;
    return td;
  }

  /** A tag as a coloured chip (not an entity mark: it is not the entity's text). */
  function tagChip(tag) {
    const chip = document.createElement("mark");
    chip.className = `tag-chip tag-${TAGS.includes(tag) ? tag : "other"}`;
    chip.textContent = tag;
    return chip;
  }

  /** The table of a long recording's pieces: time, and the answers the task asked for. */
  function renderPieces(pieces) {
    const columns = [["time", (p) => formatSpan(p.start, p.end)]];
    if (pieces.some((p) => "sentiment" in p)) {
      columns.push(["sentiment", (p) => p.sentiment ?? "(none)"]);
    }
    if (pieces.some((p) => "transcript" in p)) {
      columns.push(["transcript", (p) => (typeof p.transcript === "string" ? p.transcript : "")]);
    }
    if (pieces.some((p) => Array.isArray(p.entities))) {
      columns.push(["entities", (p) => String((p.entities ?? []).length)]);
    }
    const table = $("pieces");
    const head = table.tHead.rows[0];
    head.replaceChildren();
    for (const name of ["#", ...columns.map(([n]) => n)]) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = name;
      head.append(th);
    }
    const body = table.tBodies[0];
    body.replaceChildren();
    pieces.forEach((piece, i) => {
      const row = body.insertRow();
      row.dataset.start = String(piece.start);
      row.dataset.end = String(piece.end);
      cell(row, String(i + 1));
      for (const [name, value] of columns) cell(row, value(piece)).className = `col-${name}`;
    });
    const n = pieces.length;
    $("pieces-summary").textContent =
      n === 0
        ? "No speech was found in this recording."
        : `The recording was split at its pauses into ${n} piece${n === 1 ? "" : "s"}, ` +
          "each answered on its own.";
  }

  /** Show one /v1/understand response ({transcript, entities, sentiment, timings, ...}). */
  function render(result) {
    const transcript = typeof result.transcript === "string" ? result.transcript : null;
    const entities = Array.isArray(result.entities) ? result.entities : null;
    // A long recording: its pieces (entities then carry the times of their piece).
    const pieces = Array.isArray(result.pieces) ? result.pieces : null;

    const box = $("transcript");
    box.replaceChildren();
    const { spans, unplaced } = locateEntities(transcript ?? "", entities ?? []);
    if (transcript !== null) {
      // The box's text is exactly the transcript: the marks wrap slices of it, nothing added.
      const text = (a, b) => {
        if (b > a) box.append(document.createTextNode(transcript.slice(a, b)));
      };
      let pos = 0;
      for (const s of spans) {
        text(pos, s.start);
        box.append(entityMark(s.tag, transcript.slice(s.start, s.end), s.index, true));
        pos = s.end;
      }
      text(pos, transcript.length);
    }
    show("transcript-box", transcript !== null);

    const list = $("unplaced");
    list.replaceChildren();
    for (const u of unplaced) {
      const item = document.createElement("li");
      item.append(entityMark(u.tag, u.phrase, u.index, false));
      list.append(item);
    }
    show("unplaced-box", unplaced.length > 0);
    if (entities !== null) {
      const n = entities.length;
      let summary = n === 0 ? "No entities found." : `${n} entit${n === 1 ? "y" : "ies"}`;
      if (n > 0 && unplaced.length > 0) summary += `, ${unplaced.length} not in the transcript`;
      $("entity-summary").textContent = n > 0 ? `${summary}.` : summary;
    }
    const times = $("entity-times").tBodies[0];
    times.replaceChildren();
    const timed = pieces !== null && entities !== null;
    if (timed) {
      for (const [tag, phrase, start, end] of entities) {
        const row = times.insertRow();
        cell(row, formatSpan(start, end)).className = "col-time";
        row.insertCell().append(tagChip(String(tag)));
        cell(row, String(phrase)).className = "col-phrase";
      }
    }
    show("entity-times-box", timed && entities.length > 0);
    show("entities-box", entities !== null);

    // null is both "not asked" (task asr/ner) and "asked, but the answer named no class".
    const hasSentiment = typeof result.sentiment === "string" || result.raw?.sa !== undefined;
    const hasPieceSentiment = pieces !== null && pieces.some((p) => "sentiment" in p);
    $("sentiment-title").textContent = pieces !== null ? "Overall sentiment" : "Sentiment";
    $("sentiment").textContent = result.sentiment ?? "(no sentiment in the model's answer)";
    $("sentiment-note").textContent = hasPieceSentiment
      ? "The sentiment most of the recording's time was judged to have (a tie is Neutral); " +
        "each piece's is in the table of pieces."
      : "";
    show("sentiment-note", hasPieceSentiment);
    show("sentiment-box", hasSentiment || hasPieceSentiment);

    if (pieces !== null) renderPieces(pieces);
    show("pieces-box", pieces !== null);

    const failures = Array.isArray(result.parse_failures) ? result.parse_failures : [];
    $("parse-failures").textContent = failures.length
      ? `The model's answer could not be fully parsed for: ${failures.join(", ")}.`
      : "";
    show("parse-failures", failures.length > 0);

    const body = $("timings").tBodies[0];
    body.replaceChildren();
    for (const [key, value] of Object.entries(result.timings ?? {})) {
      const row = body.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent =
        key === "decode_s" && pieces !== null
          ? "decode upload, find pieces"
          : (TIMING_LABELS[key] ?? key);
      row.append(th);
      row.insertCell().textContent = typeof value === "number" ? formatSeconds(value) : String(value);
    }

    const raw =
      pieces !== null && result.raw === undefined
        ? pieces.map((p) => ({ start: p.start, end: p.end, raw: p.raw }))
        : (result.raw ?? {});
    $("raw").textContent = JSON.stringify(raw, null, 2);
    show("result", true);
  }

  // ------------------------------------------------------------------ errors

  function showError(message) {
    $("error").textContent = message;
    show("error", Boolean(message));
  }

  /** A readable message from an error response (FastAPI: {"detail": string | [{loc, msg}]}). */
  async function errorMessage(response) {
    let detail = "";
    try {
      const body = await response.json();
      detail = body.detail ?? "";
      if (Array.isArray(detail)) {
        // Request validation errors: a list of {loc: ["body", "task"], msg: "..."}.
        detail = detail
          .map((d) => `${(d.loc ?? []).filter((p) => p !== "body").join(".")}: ${d.msg}`)
          .join("; ");
      } else if (typeof detail !== "string") {
        detail = JSON.stringify(detail);
      }
    } catch {
      detail = response.statusText; // not JSON: a proxy's page, say
    }
    const what = STATUS_TEXT[response.status] ?? "Request failed";
    return `${what} (HTTP ${response.status}): ${detail || "no detail given"}`;
  }

  // ------------------------------------------------------------------ WAV encoding

  /**
   * 16-bit PCM mono WAV bytes of float samples in [-1, 1] (clipped) at `sampleRate` Hz.
   * The server decodes uploads with soundfile, which reads WAV but not the webm/opus that
   * MediaRecorder would produce, so recordings are encoded here.
   */
  function encodeWav(samples, sampleRate) {
    const buffer = new ArrayBuffer(44 + samples.length * 2);
    const view = new DataView(buffer);
    const ascii = (offset, text) => {
      for (let i = 0; i < text.length; i++) view.setUint8(offset + i, text.charCodeAt(i));
    };
    ascii(0, "RIFF");
    view.setUint32(4, 36 + samples.length * 2, true);
    ascii(8, "WAVE");
    ascii(12, "fmt ");
    view.setUint32(16, 16, true); // fmt chunk size
    view.setUint16(20, 1, true); // PCM
    view.setUint16(22, 1, true); // mono
    view.setUint32(24, sampleRate, true);
    view.setUint32(28, sampleRate * 2, true); // byte rate
    view.setUint16(32, 2, true); // block align
    view.setUint16(34, 16, true); // bits per sample
    ascii(36, "data");
    view.setUint32(40, samples.length * 2, true);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
    return new Uint8Array(buffer);
  }

  // ------------------------------------------------------------------ audio source

  // The clip to send: the chosen file or the latest recording, whichever came last.
  let clip = null; // {blob, name}
  let previewUrl = null;
  let recorder = null; // {stream, context, node, chunks, length, timer}

  function setClip(blob, name) {
    clip = blob ? { blob, name } : null;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = blob ? URL.createObjectURL(blob) : null;
    const preview = $("preview");
    if (previewUrl) preview.src = previewUrl;
    else preview.removeAttribute("src");
    show("preview", Boolean(blob));
    $("submit").disabled = !clip || recorder !== null;
  }

  async function startRecording() {
    if (!navigator.mediaDevices?.getUserMedia) {
      showError("This browser cannot record here (recording needs https or localhost).");
      return;
    }
    let stream;
    try {
      // Raw audio: browser voice processing (echo cancelling, gain) is not what the model saw.
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (err) {
      showError(`Cannot use the microphone: ${err.message || err.name}`);
      return;
    }
    const context = new AudioContext();
    await context.resume();
    const source = context.createMediaStreamSource(stream);
    // ScriptProcessorNode is deprecated but works in every current browser and needs no
    // separate AudioWorklet module file; minutes of speech are well within its reach.
    const node = context.createScriptProcessor(4096, 1, 1);
    const rec = { stream, context, node, chunks: [], length: 0, timer: null };
    node.onaudioprocess = (event) => {
      if (recorder !== rec) return;
      const chunk = new Float32Array(event.inputBuffer.getChannelData(0));
      rec.chunks.push(chunk);
      rec.length += chunk.length;
      const seconds = rec.length / context.sampleRate;
      $("rec-status").textContent = `recording… ${seconds.toFixed(1)} s`;
      if (seconds >= maxRecordSeconds(context.sampleRate)) stopRecording();
    };
    source.connect(node);
    // The node only runs while connected to the output; it writes nothing, so this is silent.
    node.connect(context.destination);
    recorder = rec;
    showError("");
    $("record").textContent = "Stop";
    $("record").classList.add("recording");
    $("submit").disabled = true;
    $("rec-status").textContent = "recording…";
  }

  function stopRecording() {
    const rec = recorder;
    if (!rec) return;
    recorder = null;
    rec.node.disconnect();
    for (const track of rec.stream.getTracks()) track.stop();
    const samples = new Float32Array(rec.length);
    let offset = 0;
    for (const chunk of rec.chunks) {
      samples.set(chunk, offset);
      offset += chunk.length;
    }
    const rate = rec.context.sampleRate;
    rec.context.close();
    $("record").textContent = "Record";
    $("record").classList.remove("recording");
    // The server resamples to 16 kHz itself, so the WAV keeps the microphone's rate.
    const wav = encodeWav(samples, rate);
    $("rec-status").textContent = `recorded ${(samples.length / rate).toFixed(1)} s`;
    $("file").value = "";
    setClip(new Blob([wav], { type: "audio/wav" }), "recording.wav");
  }

  // ------------------------------------------------------------------ submitting

  async function submit(event) {
    event.preventDefault();
    if (!clip) return;
    const form = new FormData();
    form.append("audio", clip.blob, clip.name);
    form.append("task", $("task").value);
    showError("");
    show("result", false);
    $("submit").disabled = true;
    const started = performance.now();
    const busy = $("busy");
    busy.textContent = "working…";
    show("busy", true);
    const tick = setInterval(() => {
      busy.textContent = `working… ${((performance.now() - started) / 1000).toFixed(0)} s`;
    }, 1000);
    try {
      const response = await fetch("v1/understand", { method: "POST", body: form });
      if (response.ok) render(await response.json());
      else showError(await errorMessage(response));
    } catch (err) {
      showError(`Could not reach the server: ${err.message || err}`);
    } finally {
      clearInterval(tick);
      show("busy", false);
      $("submit").disabled = !clip || recorder !== null;
    }
  }

  /** The longest recording at `rate` Hz the server takes: its length and its upload limits. */
  function maxRecordSeconds(rate) {
    // 16-bit mono WAV: 2 bytes a sample after a 44-byte header.
    return Math.min(limits.maxSeconds, (limits.maxUploadBytes - 44) / (2 * rate));
  }

  async function checkHealth() {
    try {
      const response = await fetch("healthz");
      const body = await response.json();
      $("health").textContent = `model: ${body.model}`;
      if (typeof body.max_minutes === "number" && body.max_minutes > 0) {
        limits.maxSeconds = body.max_minutes * 60;
      }
      if (typeof body.max_upload_mb === "number" && body.max_upload_mb > 0) {
        limits.maxUploadBytes = body.max_upload_mb * 2 ** 20;
      }
    } catch {
      $("health").textContent = "the server does not answer /healthz";
    }
  }

  function init() {
    $("file").addEventListener("change", () => {
      const file = $("file").files[0];
      if (file) $("rec-status").textContent = "";
      setClip(file ?? null, file?.name ?? "");
    });
    $("record").addEventListener("click", () => (recorder ? stopRecording() : startRecording()));
    $("form").addEventListener("submit", submit);
    checkHealth();
  }

  window.speechllm = { render, locateEntities, encodeWav, limits };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
