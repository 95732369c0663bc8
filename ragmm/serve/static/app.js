// The ragmm page: POST /ask, read its NDJSON stream (text pieces, then the answer with its
// evidence and trace), show the evidence beside the answer. No build step, no libraries.
"use strict";

const $ = (id) => document.getElementById(id);
const tokenInput = $("token");

function token() { return tokenInput.value.trim(); }

tokenInput.value = localStorage.getItem("ragmm_token") || "";
tokenInput.addEventListener("change", () => {
  localStorage.setItem("ragmm_token", token());
  setCookie();
  loadCorpora();
});

// <img> and <video> send no Authorization header: media reads carry the token as a cookie.
function setCookie() {
  document.cookie = "ragmm_token=" + encodeURIComponent(token()) + "; path=/; SameSite=Strict";
}

function headers() {
  const h = { "Content-Type": "application/json" };
  if (token()) h["Authorization"] = "Bearer " + token();
  return h;
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return (body.error && body.error.message) || JSON.stringify(body);
  } catch (e) {
    return "HTTP " + response.status;
  }
}

async function loadCorpora() {
  const r = await fetch("/corpora", { headers: headers() });
  if (!r.ok) { $("corpora").textContent = await errorText(r); return; }
  const list = await r.json();
  $("corpora").textContent = list.length
    ? list.map((c) => `${c.name} (${c.items})`).join(" · ")
    : "nothing indexed yet: run ragmm index PATH";
}

function fmt(x) { return typeof x === "number" ? x.toFixed(3) : "–"; }

function clock(s) {
  s = Math.floor(s);
  const m = Math.floor(s / 60), r = s % 60;
  return String(m).padStart(2, "0") + ":" + String(r).padStart(2, "0");
}

// The route probability of each corpus, and each candidate's relevancy, from the trace.
function traceIndex(trace) {
  const routes = {}, relevancy = {};
  for (const step of (trace && trace.steps) || []) {
    if (step.kind === "route") for (const [corpus, p] of step.routes) routes[corpus] = p;
    if (step.kind === "search") for (const c of step.candidates) {
      relevancy[c.corpus + "|" + c.source + "|" + c.locator] = c;
    }
  }
  return { routes, relevancy };
}

function renderTrace(trace) {
  const list = $("trace");
  list.replaceChildren();
  for (const step of (trace && trace.steps) || []) {
    let line = step.kind;
    if (step.kind === "route") line = "route: " + (step.routes.map(([c, p]) => `${c} ${p.toFixed(2)}`).join(", ") || "none");
    if (step.kind === "search") line = `search ${step.corpora.join(", ")}: ${step.candidates.length} candidates, ${step.candidates.filter((c) => c.kept).length} kept`;
    if (step.kind === "rewrite") line = "rewrite: " + step.query;
    if (step.kind === "stop") line = "stop: " + step.note;
    list.append(el("li", {}, line));
  }
}

function startSecond(hit) {
  const m = hit.metadata && hit.metadata.matched;
  if (m && typeof m.t_start === "number") return m.t_start;
  return (hit.locator && hit.locator.t_start) || 0;
}

function renderEvidence(answer) {
  const box = $("evidence");
  box.replaceChildren();
  const cited = new Set(answer.citations.map((c) => c.n));
  const { routes, relevancy } = traceIndex(answer.trace);
  answer.evidence.forEach((hit, i) => {
    const n = i + 1;
    const card = el("div", { class: "card" + (cited.has(n) ? " cited" : ""), id: "ev-" + n, "data-modality": hit.modality });
    const head = el("div", { class: "head" });
    head.append(el("span", { class: "n" }, `[${n}]`), el("span", { class: "corpus" }, hit.corpus), el("span", { class: "source" }, hit.source));
    let where = hit.modality === "image" ? "image" : hit.locator_text;
    const m = hit.metadata && hit.metadata.matched;
    if (m && m.modality) where += ` (${m.modality}${typeof m.t_start === "number" ? " @ " + clock(m.t_start) + "-" + clock(m.t_end) : ""})`;
    head.append(el("span", { class: "locator dim" }, where));
    const cand = relevancy[hit.corpus + "|" + hit.source + "|" + hit.locator_text];
    const route = routes[hit.corpus];
    const scores = `relevancy ${fmt(cand && cand.relevancy !== null ? cand.relevancy : hit.score)}` +
      ` · retrieval ${fmt(hit.scores.retrieval !== undefined ? hit.scores.retrieval : (cand && cand.retrieval))}` +
      ` · route ${hit.corpus} ${route === undefined ? "–" : route.toFixed(2)}`;
    head.append(el("span", { class: "scores" }, scores));
    card.append(head);
    if (hit.media && hit.modality === "image") {
      card.append(el("img", { src: hit.media, alt: hit.source, loading: "lazy" }));
    } else if (hit.media) {
      const video = el("video", { src: hit.media + "#t=" + startSecond(hit).toFixed(1), controls: "", preload: "metadata" });
      card.append(video);
    }
    card.append(el("p", { class: "snippet" }, hit.text));
    box.append(card);
  });
}

// The answer with [n] as links to evidence card n.
function renderAnswer(text, count) {
  const out = $("answer");
  out.replaceChildren();
  let last = 0;
  for (const match of text.matchAll(/\[(\d+)\]/g)) {
    const n = Number(match[1]);
    out.append(document.createTextNode(text.slice(last, match.index)));
    out.append(n >= 1 && n <= count ? el("a", { href: "#ev-" + n }, match[0]) : document.createTextNode(match[0]));
    last = match.index + match[0].length;
  }
  out.append(document.createTextNode(text.slice(last)));
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  const out = $("answer");
  out.className = "";
  out.textContent = "";
  $("evidence").replaceChildren();
  $("trace").replaceChildren();
  $("go").disabled = true;
  $("status").textContent = "searching…";
  document.body.dataset.state = "asking";
  const t0 = performance.now();
  try {
    const r = await fetch("/ask", { method: "POST", headers: headers(), body: JSON.stringify({ question, k: Number($("k").value) || null }) });
    if (!r.ok) throw new Error(await errorText(r));
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line);
        if (msg.type === "text") {
          $("status").textContent = "answering…";
          out.append(document.createTextNode(msg.text));
        } else if (msg.type === "answer") {
          const a = msg.answer;
          renderAnswer(a.answer, a.evidence.length);
          renderEvidence(a);
          renderTrace(a.trace);
          const ms = (performance.now() - t0).toFixed(0);
          $("status").textContent = `${a.generator} · ${a.evidence.length} evidence · ${ms} ms`;
        } else if (msg.type === "error") {
          throw new Error(msg.message);
        }
      }
    }
    document.body.dataset.state = "done";
  } catch (e) {
    out.className = "error";
    out.textContent = e.message;
    $("status").textContent = "";
    document.body.dataset.state = "error";
  } finally {
    $("go").disabled = false;
  }
}

$("ask").addEventListener("submit", ask);
setCookie();
loadCorpora();
