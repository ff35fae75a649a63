// The migration view: polls the migration's numbers and moves the bar without a reload.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const panel = document.getElementById("progress");
  if (!panel) return;
  const FINAL = ["completed", "failed", "cancelled"];
  const LABELS = {
    pending: ["Pending", "draft"], in_progress: ["Running", "canary"], paused: ["Paused", "canary"],
    completed: ["Completed", "current"], failed: ["Failed", "breaking"], cancelled: ["Cancelled", "retired"],
  };
  const fmt = new Intl.NumberFormat("en-US");
  let status = panel.dataset.status;

  function show(m) {
    const done = m.migrated + m.skipped + m.failed;
    const pct = m.total ? Math.floor((done * 100) / m.total) : (m.status === "completed" ? 100 : 0);
    const bar = document.getElementById("bar");
    bar.querySelector("span").style.width = pct + "%";
    bar.setAttribute("aria-valuenow", String(pct));
    bar.classList.toggle("done", m.status === "completed");
    document.getElementById("pct").textContent = pct + " %";
    const counts = document.getElementById("counts");
    counts.replaceChildren();
    const moved = document.createElement("span");
    moved.className = "live";
    moved.textContent = fmt.format(m.migrated);
    counts.append(moved, " / " + fmt.format(m.total) + " moved · " + fmt.format(m.skipped) +
      " skipped · " + fmt.format(m.failed) + " failed");
    const reason = document.getElementById("reason");
    reason.hidden = !m.status_reason;
    reason.textContent = m.status_reason || "";
    if (m.status !== status) {
      status = m.status;
      panel.dataset.status = status;
      const [label, css] = LABELS[status] || [status, "draft"];
      document.getElementById("status-badge").innerHTML =
        '<span class="badge badge-' + css + '">' + label + "</span>";
      const shown = {
        pause: ["pending", "in_progress"].includes(status),
        resume: status === "paused",
        cancel: ["pending", "in_progress", "paused"].includes(status),
        revert: ["paused", "completed", "cancelled", "failed"].includes(status) && m.migrated > 0,
      };
      document.querySelectorAll("#controls form[data-action]").forEach(function (form) {
        form.hidden = !shown[form.dataset.action];
      });
    }
  }

  function poll() {
    fetch("/ui/migrations/" + panel.dataset.id + "/progress", {
      headers: { Accept: "application/json" }, credentials: "same-origin",
    })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error(String(r.status))); })
      .then(function (m) {
        show(m);
        if (!FINAL.includes(m.status)) setTimeout(poll, 700);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  if (!FINAL.includes(status)) setTimeout(poll, 500);
});
