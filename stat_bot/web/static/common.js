/* Shared by the dashboard's scripts: the CSRF token and JSON calls. */
"use strict";

window.statBot = {
  csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  },

  /* fetch JSON; resolves to {status, body} whatever the status (body {} if not JSON). */
  async call(url, method, payload) {
    const options = { method: method || "GET", headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (payload !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRFToken"] = this.csrfToken();
      options.body = JSON.stringify(payload);
    }
    const response = await fetch(url, options);
    let body = {};
    try {
      body = await response.json();
    } catch (error) {
      body = {};
    }
    return { status: response.status, body };
  },

  /* An element with text (never HTML) and optional class. */
  el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  },
};
