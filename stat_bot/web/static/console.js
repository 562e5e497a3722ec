/* The chat console page: post as a local Slack user, draw the workspace's feed as text, and
   use a message's buttons and selects (built with DOM APIs, labels as text). */
"use strict";

(function () {
  const feed = document.getElementById("feed");
  const form = document.getElementById("chat");
  const error = document.getElementById("chat-error");
  if (!feed || !form) return;
  const { el } = window.statBot;
  let cursor = 0;

  /* Slack's inline mrkdwn (`code`, *bold*, _italic_) as elements, the rest as text. */
  function inline(tag, text, className) {
    const node = el(tag, null, className);
    for (const piece of String(text).split(/(`[^`\n]+`|\*[^*\n]+\*|\b_[^_\n]+_\b)/)) {
      if (!piece) continue;
      if (piece.length > 2 && piece[0] === "`" && piece.endsWith("`")) {
        node.appendChild(el("code", piece.slice(1, -1)));
      } else if (piece.length > 2 && piece[0] === "*" && piece.endsWith("*")) {
        node.appendChild(el("strong", piece.slice(1, -1)));
      } else if (piece.length > 2 && piece[0] === "_" && piece.endsWith("_")) {
        node.appendChild(el("em", piece.slice(1, -1)));
      } else {
        node.appendChild(document.createTextNode(piece));
      }
    }
    return node;
  }

  function body(parts) {
    const box = el("div", null, "body");
    for (const part of parts || []) {
      if (part.type === "code") {
        box.appendChild(el("pre", part.text, "code"));
      } else if (part.type === "fields") {
        if (part.text) box.appendChild(inline("p", part.text, "text"));
        const grid = el("div", null, "fields");
        for (const field of part.fields) grid.appendChild(inline("div", field, "field"));
        box.appendChild(grid);
      } else if (part.type === "file") {
        const file = el("div", null, "file");
        file.appendChild(el("div", "📄 " + part.name + " (" + Number(part.size).toLocaleString() + " bytes)", "file-name"));
        if (part.preview) file.appendChild(el("pre", part.preview, "code"));
        if (part.more_lines) file.appendChild(el("div", "… " + part.more_lines + " more lines", "muted"));
        box.appendChild(file);
      } else {
        box.appendChild(inline("p", part.text, "text"));
      }
    }
    return box;
  }

  async function use(event, control, choice) {
    error.textContent = "";
    const payload = {
      channel: event.channel,
      ts: event.ts,
      action_id: control.action_id,
      user: form.elements.user.value,
    };
    if (control.type === "button") payload.value = control.value;
    else payload.option = choice;
    try {
      const { status, body: answer } = await window.statBot.call(feed.dataset.click, "POST", payload);
      if (status !== 200) error.textContent = answer.error || "HTTP " + status;
    } catch (failure) {
      error.textContent = "Could not reach the server; nothing was clicked.";
    }
  }

  function controls(event) {
    const box = el("div", null, "controls");
    for (const control of event.controls || []) {
      if (control.type === "button") {
        const button = el("button", control.text || control.action_id, control.style ? control.style : null);
        button.type = "button";
        button.dataset.actionId = control.action_id;
        button.addEventListener("click", () => use(event, control));
        box.appendChild(button);
      } else if (control.type === "static_select") {
        const select = el("select");
        select.dataset.actionId = control.action_id;
        select.setAttribute("aria-label", control.placeholder);
        const placeholder = el("option", control.placeholder);
        placeholder.value = "";
        placeholder.disabled = true;
        placeholder.selected = true;
        select.appendChild(placeholder);
        for (const option of control.options) {
          const item = el("option", option.text);
          item.value = option.value;
          select.appendChild(item);
        }
        select.addEventListener("change", () => use(event, control, select.value));
        box.appendChild(select);
      }
    }
    return box;
  }

  function find(event) {
    return feed.querySelector('[data-channel="' + CSS.escape(event.channel) + '"][data-ts="' + CSS.escape(String(event.ts)) + '"]');
  }

  function draw(event) {
    if (event.kind === "reaction") {
      const target = find(event);
      const note = el("span", ":" + event.reaction + ": " + event.reactor, "reaction");
      if (target) {
        target.querySelector(".reactions").appendChild(note);
      } else {
        const line = el("div", null, "message reaction-line");
        line.appendChild(el("span", event.where + " ", "where"));
        line.appendChild(note);
        feed.appendChild(line);
      }
      return;
    }
    if (event.note !== undefined) {
      const line = el("div", null, "message note-line");
      line.appendChild(el("span", event.where + " ", "where"));
      line.appendChild(el("span", event.note, "note"));
      feed.appendChild(line);
      return;
    }
    const existing = event.kind === "edit" ? find(event) : null;
    if (existing) {
      existing.querySelector(".body").replaceWith(body(event.parts));
      existing.querySelector(".controls").replaceWith(controls(event));
      existing.querySelector(".edited").textContent = " (edited)";
      return;
    }
    const kinds = (event.bot ? " from-bot" : "") + (event.in_thread ? " in-thread" : "") + (event.ephemeral_to ? " ephemeral" : "");
    const message = el("div", null, "message" + kinds);
    message.dataset.channel = event.channel;
    message.dataset.ts = event.ts;
    const head = el("div", null, "head");
    head.appendChild(el("span", event.where, "where"));
    if (event.in_thread) head.appendChild(el("span", " ↳", "thread"));
    head.appendChild(el("span", " " + event.who, "who"));
    head.appendChild(el("span", event.kind === "edit" ? " (edited)" : "", "edited"));
    if (event.ephemeral_to) head.appendChild(el("span", " (only visible to " + event.ephemeral_to + ")", "ephemeral-to"));
    message.appendChild(head);
    message.appendChild(body(event.parts));
    message.appendChild(controls(event));
    message.appendChild(el("div", null, "reactions"));
    feed.appendChild(message);
  }

  async function poll() {
    try {
      const { status, body: answer } = await window.statBot.call(feed.dataset.api + "?cursor=" + cursor);
      if (status === 200) {
        const atBottom = feed.scrollTop + feed.clientHeight >= feed.scrollHeight - 40;
        for (const event of answer.events) draw(event);
        cursor = answer.cursor;
        if (answer.events.length && atBottom) feed.scrollTop = feed.scrollHeight;
        feed.classList.remove("stale");
      } else {
        feed.classList.add("stale");
        error.textContent = answer.error || "HTTP " + status;
      }
    } catch (failure) {
      feed.classList.add("stale");
    }
    window.setTimeout(poll, 700);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const text = form.elements.text.value.trim();
    if (!text) return;
    const payload = { text, user: form.elements.user.value, channel: form.elements.channel.value };
    try {
      const { status, body: answer } = await window.statBot.call(form.dataset.api, "POST", payload);
      if (status === 200) {
        form.elements.text.value = "";
      } else {
        error.textContent = answer.error || "HTTP " + status;
      }
    } catch (failure) {
      error.textContent = "Could not reach the server; the message was not sent.";
    }
    form.elements.text.focus();
  });

  poll();
})();
