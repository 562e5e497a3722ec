/* A job page whose job has not finished: reload once its status changes (new output, times). */
"use strict";

(function () {
  const badge = document.getElementById("job-status");
  if (!badge) return;
  const shown = badge.dataset.status;

  async function check() {
    try {
      const { status, body } = await window.statBot.call(badge.dataset.api);
      if (status === 200 && body.status !== shown) {
        window.location.reload();
        return;
      }
    } catch (error) {
      /* try again later */
    }
    window.setTimeout(check, 2000);
  }

  window.setTimeout(check, 2000);
})();
