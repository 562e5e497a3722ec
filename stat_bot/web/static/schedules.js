/* The active-tickets interval dropdown: POST /set-interval, then show what is in force. */
"use strict";

(function () {
  const select = document.getElementById("interval");
  const note = document.getElementById("interval-status");
  if (!select) return;
  let current = select.value;

  select.addEventListener("change", async () => {
    note.textContent = "saving…";
    note.className = "field-note";
    try {
      const { status, body } = await window.statBot.call(select.dataset.api, "POST", { interval: select.value });
      if (status === 200) {
        current = select.value;
        const row = select.closest("tr");
        const next = body.next_fire_at ? new Date(body.next_fire_at * 1000).toLocaleString() : "disabled";
        note.textContent = "Saved: next fire " + next + ".";
        note.className = "field-ok";
        note.dataset.interval = body.interval;
        if (row && body.next_fire_at) row.querySelector(".next-fire").textContent = next;
      } else {
        select.value = current;
        note.textContent = body.error || "HTTP " + status;
        note.className = "field-error";
      }
    } catch (error) {
      select.value = current;
      note.textContent = "Could not reach the server; nothing was changed.";
      note.className = "field-error";
    }
  });
})();
