/* The STAT ticket form: POST JSON to /slack-proxy; show a refusal next to the field at fault. */
"use strict";

(function () {
  const form = document.getElementById("ticket");
  const result = document.getElementById("ticket-result");
  if (!form) return;
  const FIELDS = ["summary", "type", "priority", "xname", "action"];

  function clear() {
    for (const name of FIELDS) {
      document.getElementById("error-" + name).textContent = "";
      form.elements[name].removeAttribute("aria-invalid");
    }
    result.textContent = "";
    result.className = "result";
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear();
    const payload = {};
    for (const name of FIELDS) payload[name] = form.elements[name].value.trim();
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      const { status, body } = await window.statBot.call(form.dataset.api, "POST", payload);
      if (status === 200) {
        result.textContent = "Posted to " + body.channel + ".";
        result.className = "result ok";
        form.elements.summary.value = "";
        form.elements.xname.value = "";
      } else if (body.field && FIELDS.includes(body.field)) {
        // Every field at fault at once (`errors`), the first one focused.
        const errors = body.errors || { [body.field]: body.error };
        const marked = FIELDS.filter((name) => errors[name]);
        for (const name of marked) {
          document.getElementById("error-" + name).textContent = errors[name];
          form.elements[name].setAttribute("aria-invalid", "true");
        }
        form.elements[marked[0] || body.field].focus();
        result.textContent =
          marked.length > 1
            ? "Please correct the " + marked.length + " fields marked above."
            : "Please correct the field marked above.";
        result.className = "result error";
      } else {
        result.textContent = body.error || "The server answered HTTP " + status + "; try again.";
        result.className = "result error";
      }
    } catch (error) {
      result.textContent = "Could not reach the server; nothing was posted.";
      result.className = "result error";
    } finally {
      button.disabled = false;
    }
  });
})();
