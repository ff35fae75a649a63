// The editor: checks and draws the text as you type, auto-saves it to your working draft a few
// seconds after each change (and at least every 30 s while unsaved), never overwrites a newer
// save from another tab without asking, and creates a version.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const root = document.getElementById("editor");
  if (!root) return;
  const workflow = root.dataset.workflow;
  const area = document.getElementById("definition");
  const state = document.getElementById("save-state");
  const problemsBox = document.getElementById("problems");
  const preview = document.querySelector("#preview figure.graph");
  const stale = document.getElementById("stale");
  const SAVE_AFTER_MS = 2000;
  const SAVE_AT_LEAST_MS = 30000;
  const CHECK_AFTER_MS = 350;

  let revision = root.dataset.revision ? Number(root.dataset.revision) : null;
  const base = root.dataset.base ? Number(root.dataset.base) : null;
  let savedText = area.value;
  let dirtySince = null;
  let saving = false;
  let blocked = false; // a newer save from another tab is waiting for the user's choice
  let saveTimer = null;
  let checkTimer = null;
  let otherDraft = null;

  function api(method, url, body) {
    return fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRF-Token": window.revflow.csrf(),
      },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().then(function (data) { return { status: response.status, data: data }; },
        function () { return { status: response.status, data: {} }; });
    });
  }

  function clock(iso) {
    const when = iso ? new Date(iso) : new Date();
    return when.toLocaleTimeString("en-GB", { hour12: false });
  }

  function setState(text, css) {
    state.textContent = text;
    state.className = "save-state " + (css || "");
  }

  function goToLine(line) {
    const lines = area.value.split("\n");
    let start = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
    const end = start + (lines[line - 1] || "").length;
    area.focus();
    area.setSelectionRange(start, end);
    const lineHeight = parseFloat(getComputedStyle(area).lineHeight) || 20;
    area.scrollTop = Math.max(0, (line - 3) * lineHeight);
  }

  function showProblems(problems, warnings) {
    problemsBox.replaceChildren();
    if (!problems.length) {
      const ok = document.createElement("p");
      ok.className = "ok-text";
      ok.textContent = "✓ Valid";
      problemsBox.appendChild(ok);
    }
    const list = document.createElement("ul");
    list.className = "problems";
    problems.concat(warnings.map(function (w) { return Object.assign({ warning: true }, w); }))
      .forEach(function (p) {
        const item = document.createElement("li");
        if (p.warning) item.className = "warning";
        if (p.line) {
          const jump = document.createElement("button");
          jump.type = "button";
          jump.textContent = "line " + p.line;
          jump.setAttribute("aria-label", "Go to line " + p.line);
          jump.addEventListener("click", function () { goToLine(p.line); });
          item.appendChild(jump);
        }
        const pointer = document.createElement("code");
        pointer.textContent = p.pointer || "/";
        item.append(pointer, " " + (p.warning ? "warning: " : "") + p.message);
        list.appendChild(item);
      });
    problemsBox.appendChild(list);
  }

  function showChecked(result) {
    showProblems(result.problems || [], result.warnings || []);
    if (result.dot) window.revflow.drawGraph(preview, result.dot);
  }

  function check() {
    api("POST", "/ui/workflows/" + workflow + "/edit/check", { text: area.value }).then(function (r) {
      if (r.status === 200) showChecked(r.data);
    });
  }

  function save() {
    if (saving || blocked || dirtySince === null) return;
    saving = true;
    const text = area.value;
    setState("Saving…");
    api("PUT", "/ui/workflows/" + workflow + "/draft", { text: text, base_version: base, revision: revision })
      .then(function (r) {
        if (r.status === 200) {
          revision = r.data.revision;
          savedText = text;
          if (area.value === text) dirtySince = null;
          setState("Saved " + clock(r.data.saved_at), "saved");
          root.dataset.revision = String(revision);
        } else if (r.status === 409 && r.data.code === "stale_draft") {
          blocked = true;
          otherDraft = r.data.draft;
          const when = otherDraft ? clock(otherDraft.saved_at) : "?";
          document.getElementById("stale-text").textContent =
            "This draft was saved in another tab or window at " + when +
            (otherDraft ? " (revision " + otherDraft.revision + ")" : "") +
            ". Your changes here are not saved until you choose.";
          stale.hidden = false;
          setState("Not saved — newer draft elsewhere", "failed");
        } else {
          setState("Not saved — retry soon", "failed");
        }
      })
      .catch(function () { setState("Not saved — retry soon", "failed"); })
      .finally(function () {
        saving = false;
        if (dirtySince !== null && !blocked) schedule();
      });
  }

  function schedule() {
    clearTimeout(saveTimer);
    saveTimer = setTimeout(save, SAVE_AFTER_MS);
  }

  area.addEventListener("input", function () {
    if (area.value === savedText) {
      dirtySince = null;
    } else if (dirtySince === null) {
      dirtySince = Date.now();
      if (!blocked) setState("Unsaved changes");
    }
    schedule();
    clearTimeout(checkTimer);
    checkTimer = setTimeout(check, CHECK_AFTER_MS);
  });

  // While someone keeps typing, the debounce above never fires: save at least every 30 s.
  setInterval(function () {
    if (dirtySince !== null && Date.now() - dirtySince >= SAVE_AT_LEAST_MS) save();
  }, 1000);

  document.getElementById("stale-load").addEventListener("click", function () {
    if (!otherDraft) return;
    const definition = otherDraft.definition;
    area.value = typeof definition === "string" ? definition : JSON.stringify(definition, null, 2);
    revision = otherDraft.revision;
    savedText = area.value;
    dirtySince = null;
    blocked = false;
    stale.hidden = true;
    setState("Loaded the draft saved at " + clock(otherDraft.saved_at), "saved");
    check();
  });
  document.getElementById("stale-keep").addEventListener("click", function () {
    if (otherDraft) revision = otherDraft.revision;
    blocked = false;
    stale.hidden = true;
    if (dirtySince === null) dirtySince = Date.now();
    save();
  });

  window.addEventListener("beforeunload", function (event) {
    if (dirtySince !== null) event.preventDefault();
  });

  const form = document.getElementById("create-form");
  const createProblem = document.getElementById("create-problem");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const button = document.getElementById("create-button");
    button.disabled = true;
    createProblem.hidden = true;
    api("POST", "/ui/workflows/" + workflow + "/versions", {
      text: area.value,
      base_version: base,
      change_summary: document.getElementById("change_summary").value,
    }).then(function (r) {
      if (r.status === 201) {
        dirtySince = null;
        window.location.assign(r.data.url);
        return;
      }
      button.disabled = false;
      createProblem.replaceChildren();
      const text = document.createElement("p");
      text.textContent = (r.data.title ? r.data.title + ". " : "") + (r.data.detail || "The version was not created.");
      createProblem.appendChild(text);
      if (r.data.code === "stale_base" && r.data.latest_version) {
        const link = document.createElement("a");
        link.className = "button small";
        link.href = "/ui/workflows/" + workflow + "/compare?from=" + (base || r.data.latest_version) +
          "&to=" + r.data.latest_version;
        link.textContent = "Compare v" + (base || "?") + " with the newer v" + r.data.latest_version;
        createProblem.appendChild(link);
      }
      if (Array.isArray(r.data.errors) && r.data.code === "invalid_definition") {
        showProblems(r.data.errors, []);
      }
      createProblem.hidden = false;
      createProblem.focus();
    }).catch(function () {
      button.disabled = false;
    });
  });
  createProblem.tabIndex = -1;
});
