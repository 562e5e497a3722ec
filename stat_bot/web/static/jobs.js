/* The jobs page: re-read /api/jobs every 2 s and redraw the tables (text only, no HTML). */
"use strict";

(function () {
  const root = document.getElementById("jobs");
  const live = document.getElementById("live");
  if (!root) return;
  const api = root.dataset.api + window.location.search;
  const { el } = window.statBot;
  const EVERY = 2000;

  function row(job) {
    const tr = el("tr", null, "status-" + job.status);
    tr.dataset.jobId = job.id;
    const link = el("a", "#" + job.id);
    link.href = job.url;
    const first = el("td");
    first.appendChild(link);
    tr.appendChild(first);
    tr.appendChild(el("td", job.job));
    tr.appendChild(el("td", job.args_text, "args"));
    const status = el("td");
    status.appendChild(el("span", job.status_text, "status s-" + job.status));
    tr.appendChild(status);
    const created = el("td", job.created_ago);
    created.title = job.created_text;
    tr.appendChild(created);
    tr.appendChild(el("td", job.duration_text));
    tr.appendChild(el("td", job.source_text));
    tr.appendChild(el("td", job.report_text));
    return tr;
  }

  function draw(sections) {
    for (const [name, jobs] of Object.entries(sections)) {
      const section = root.querySelector('[data-section="' + name + '"]');
      if (!section) continue;
      const body = section.querySelector("tbody");
      const rows = jobs.map(row);
      if (!rows.length) {
        const empty = el("tr", null, "empty");
        const cell = el("td", "none");
        cell.colSpan = 8;
        empty.appendChild(cell);
        rows.push(empty);
      }
      body.replaceChildren(...rows);
      section.querySelector(".count").textContent = jobs.length;
    }
  }

  async function refresh() {
    if (!document.hidden) {
      try {
        const { status, body } = await window.statBot.call(api);
        if (status === 200) {
          draw(body.sections);
          live.textContent = "Updated " + new Date().toLocaleTimeString() + "; updates by itself every 2 s.";
          live.classList.remove("stale");
        } else if (status === 401) {
          live.textContent = "Your session has ended: reload the page to log in again.";
          live.classList.add("stale");
          return;
        } else {
          live.textContent = "Could not update: " + (body.error || "HTTP " + status);
          live.classList.add("stale");
        }
      } catch (error) {
        live.textContent = "Could not reach the server; retrying.";
        live.classList.add("stale");
      }
    }
    window.setTimeout(refresh, EVERY);
  }

  window.setTimeout(refresh, EVERY);
})();
