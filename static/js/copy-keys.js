// Copy buttons and the chat's keyboard shortcuts.
//
// Every message has a Copy button (server-rendered, [data-copy-message]) that copies its raw
// text: the Markdown source of a reply, as the model wrote it, kept in the message's
// <template class="msg-raw"> (inert, escaped by the template), or the live text of a reply
// still streaming. Every code block of a rendered reply gets a Copy button here (the
// server's HTML and the streaming view alike, so the swap at a reply's end adds nothing).
//
// Shortcuts (listed by the composer's "?" popover): Enter sends and Shift+Enter makes a new
// line (app.js), Esc stops the running reply, Alt+R (Option+R on a Mac) regenerates the
// last reply. Alt+R is not taken by Chromium, Firefox or Safari, unlike Ctrl/Cmd+Shift+R
// (hard reload); it is matched by physical key so a Mac's Option+R ("®") works too.
(function () {
  "use strict";

  // --- Copy ---------------------------------------------------------------------------
  var announcer = null;
  function announce(text) {
    if (!announcer) {
      announcer = document.createElement("span");
      announcer.className = "sr-only";
      announcer.setAttribute("aria-live", "polite");
      document.body.appendChild(announcer);
    }
    announcer.textContent = "";
    setTimeout(function () { announcer.textContent = text; }, 50);
  }

  // navigator.clipboard exists in secure contexts (https, and http://127.0.0.1 / localhost);
  // elsewhere (plain http on a LAN address) the old execCommand path on a scratch textarea.
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return legacyCopy(text); });
    }
    return legacyCopy(text);
  }
  function legacyCopy(text) {
    return new Promise(function (resolve, reject) {
      var back = document.activeElement;
      var area = document.createElement("textarea");
      area.className = "copy-scratch";
      area.setAttribute("readonly", "");
      area.setAttribute("aria-hidden", "true");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      area.remove();
      if (back && back.focus) back.focus({ preventScroll: true });
      if (ok) resolve(); else reject(new Error("copy refused"));
    });
  }

  function flash(button, text) {
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    button.textContent = text;
    button.classList.toggle("copied", text === "Copied");
    clearTimeout(button._copyTimer);
    button._copyTimer = setTimeout(function () { button.textContent = label; button.classList.remove("copied"); }, 1600);
    announce(text);
  }

  function messageText(msg) {
    var raw = msg.querySelector("template.msg-raw");
    if (raw) return raw.content.textContent;
    var live = msg.querySelector(".msg-body.live");
    return live ? live.textContent : "";
  }

  function codeText(block) {
    var code = block.querySelector("pre code") || block.querySelector("pre");
    return code ? code.textContent.replace(/\n$/, "") : "";
  }

  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest("[data-copy-message], [data-copy-code]");
    if (!button) return;
    var text = button.hasAttribute("data-copy-code")
      ? codeText(button.closest(".code-block"))
      : messageText(button.closest("article.msg"));
    copyText(text).then(function () { flash(button, "Copied"); }, function () { flash(button, "Copy failed: select and press Ctrl+C"); });
  });

  // A Copy button on every code block of a rendered reply, in a wrapper it is positioned in
  // (absolutely: it takes no room, so adding it moves nothing).
  function decorate(root) {
    if (!root || !root.querySelectorAll) return;
    var pres = root.matches && root.matches(".md pre") ? [root] : root.querySelectorAll(".md pre");
    Array.prototype.forEach.call(pres, function (pre) {
      if (pre.parentElement.classList.contains("code-block")) return;
      var block = document.createElement("div");
      block.className = "code-block";
      pre.before(block);
      var button = document.createElement("button");
      button.type = "button";
      button.className = "copy-code small quiet";
      button.setAttribute("data-copy-code", "");
      button.setAttribute("aria-label", "Copy code");
      button.textContent = "Copy";
      block.appendChild(button);
      block.appendChild(pre);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { decorate(document.body); });
  document.addEventListener("htmx:load", function (evt) { decorate(evt.detail.elt); });
  document.addEventListener("htmx:oobAfterSwap", function (evt) { decorate(evt.detail.target); });
  document.addEventListener("playground:rendered", function (evt) { decorate(evt.detail.view); });

  // --- Shortcuts ----------------------------------------------------------------------
  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }
  function lastOf(list) { return list.length ? list[list.length - 1] : null; }

  document.addEventListener("keydown", function (evt) {
    if (evt.defaultPrevented || evt.isComposing) return;
    var thread = document.querySelector("[data-thread]");
    if (!thread) return;
    if (evt.key === "Escape") {
      // An open popover or menu closes first; otherwise Esc stops the running reply.
      var open = document.querySelector("details.shortcuts[open], .branch-bar details[open]");
      if (open) { open.removeAttribute("open"); evt.preventDefault(); return; }
      var stops = thread.querySelectorAll("[data-stop]:not(:disabled)");
      if (stops.length) {
        evt.preventDefault();
        Array.prototype.forEach.call(stops, function (button) { button.click(); });
      }
      return;
    }
    if (evt.code === "KeyR" && evt.altKey && !evt.ctrlKey && !evt.metaKey && !evt.shiftKey) {
      var last = lastOf(thread.querySelectorAll("article.msg"));
      var regen = last && last.classList.contains("msg-assistant") && last.querySelector("button[hx-post$='/regenerate/']");
      evt.preventDefault();
      if (regen) regen.click();
      else announce("Nothing to regenerate: the last reply is still running or there is none.");
      return;
    }
    if (evt.key === "?" && !typing(evt.target) && !evt.ctrlKey && !evt.metaKey && !evt.altKey) {
      var help = document.querySelector("details.shortcuts");
      if (help) { evt.preventDefault(); help.open = !help.open; if (help.open) help.querySelector("summary").focus(); }
    }
  });
})();
