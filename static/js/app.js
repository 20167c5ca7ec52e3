// Small behaviours htmx does not cover. No inline scripts: the CSP allows only our files.

// A session's events go to every tab of the session, rendered once for all of them
// (chat/publish.py), but a tab shows only part of the session: one branch's thread, or a
// fan-out's columns, with or without the cost panel. The out-of-band parts of a frame whose
// target this page does not have are not for it, and are dropped before htmx swaps (htmx
// would log each one as an error, htmx:oobErrorNoTarget). Used on the element that connects
// the socket (hx-ext="ws,page-targets"), so its frames and the requests made from inside it
// are filtered; every other response still errors on a missing target, as a bug should.
(function () {
  "use strict";
  if (!window.htmx) return;
  function selectorOf(el, frame) {
    var spec = el.getAttribute("hx-swap-oob");
    if (spec === null && frame) spec = "true";  // the ws extension swaps every part of a frame by id
    if (spec === null) return null;
    var colon = spec.indexOf(":");
    if (colon >= 0) return spec.slice(colon + 1);
    return el.id ? "#" + CSS.escape(el.id) : null;
  }
  function present(selector) {
    try { return document.querySelector(selector) !== null; } catch (e) { return true; }  // htmx reports a bad one
  }
  window.htmx.defineExtension("page-targets", {
    transformResponse: function (text, xhr) {
      var frame = !xhr;  // a WebSocket frame, not an HTTP response
      if (!frame && text.indexOf("hx-swap-oob") < 0) return text;
      var tpl = document.createElement("template");
      tpl.innerHTML = text;
      var dropped = false;
      Array.prototype.slice.call(tpl.content.children).forEach(function (el) {
        var selector = selectorOf(el, frame);
        if (selector !== null && !present(selector)) { el.remove(); dropped = true; }
      });
      return dropped ? tpl.innerHTML : text;
    }
  });
})();

(function () {
  "use strict";

  // Streaming deltas carry a sequence number. A tab that joined mid-reply got a snapshot
  // with the text up to some seq; deltas at or below it are already shown: drop them.
  // Appends marked data-dedupe skip nodes the page already has (the tab that sent a
  // message gets it both in its POST response and over the WebSocket).
  var socket = null;  // the session's WebSocket (htmx ws extension), for resync requests
  function keepSocket(evt) { if (evt.detail && evt.detail.socketWrapper) socket = evt.detail.socketWrapper; }
  document.addEventListener("htmx:wsBeforeMessage", keepSocket);
  var asked = {};
  function resync(target, force) {
    var id = parseInt((target.id || "").replace("body-", ""), 10);
    if (!socket || !id || (!force && asked[id] && Date.now() - asked[id] < 1000)) return;
    asked[id] = Date.now();
    socket.send(JSON.stringify({ resync: id }));
  }
  // The one recovery path when the socket (re)opens (and so is subscribed): every reply this
  // page shows as streaming may have moved on, or ended, while the socket was down (or
  // between the page's render and its socket's connect), and no event will say so. In order:
  // 1. ask the socket to resync each streaming body: its text so far, or the final message;
  // 2. re-read each pending or streaming message over HTTP (/messages/<id>/: its end with the
  //    cost panel if it ended, else nothing). Snapshot rules (data-seq) drop anything older.
  // 3. re-read a fan-out's pending join status the same way (/sessions/<s>/fanout/<f>/status/).
  // One listener, so the steps cannot drift apart or run in an unknown order.
  document.addEventListener("htmx:wsOpen", function (evt) {
    keepSocket(evt);
    Array.prototype.forEach.call(document.querySelectorAll(".msg-body.live[id^='body-']"), function (body) {
      resync(body, true);
    });
    if (!window.htmx) return;
    Array.prototype.forEach.call(document.querySelectorAll(".msg.status-pending, .msg.status-streaming"), function (msg) {
      var id = msg.id.replace("msg-", "");
      // From the socket's element: its page-targets extension drops what this page lacks
      // (a fan-out page has no cost panel).
      if (/^\d+$/.test(id)) window.htmx.ajax("GET", "/messages/" + id + "/", { source: evt.target, swap: "none" });
    });
    // 3. a fan-out whose join is pending may have joined meanwhile: re-read its status.
    Array.prototype.forEach.call(document.querySelectorAll(".fanout-status[data-status-url]"), function (status) {
      window.htmx.ajax("GET", status.getAttribute("data-status-url"), { source: evt.target, swap: "none" });
    });
  });

  document.addEventListener("htmx:oobBeforeSwap", function (evt) {
    var frag = evt.detail.fragment;
    var target = evt.detail.target;
    var el = frag && frag.nodeType === 1 ? frag : null;
    if (!el || !target) return;
    if (el.hasAttribute("data-seq")) {
      var seq = parseInt(el.getAttribute("data-seq"), 10);
      var have = parseInt(target.getAttribute("data-seq") || "0", 10);
      var snapshot = el.hasAttribute("data-snapshot");
      if (snapshot ? seq < have : seq <= have) {
        evt.detail.shouldSwap = false;
        return;
      }
      if (!snapshot && seq > have + 1) {
        // A delta is missing (published while Redis restarted, say): appending this one
        // would show text with a hole. Ask the server for the text so far instead.
        evt.detail.shouldSwap = false;
        resync(target);
        return;
      }
      target.setAttribute("data-seq", String(seq));
    }
    if (el.hasAttribute("data-dedupe")) {
      Array.prototype.slice.call(el.children).forEach(function (child) {
        if (child.id && document.getElementById(child.id)) child.remove();
      });
      var empty = target.querySelector(".empty");
      if (empty) empty.remove();
    }
  });

  // The first message names the session (the header's title is swapped in out of band).
  // The settings form still shows the old title: follow the new one there too, unless the
  // user has typed a title of their own that is not saved yet.
  document.addEventListener("htmx:oobAfterSwap", function (evt) {
    var target = evt.detail.target;
    if (!target || !target.id || target.id.indexOf("conv-title-") !== 0) return;
    var form = document.getElementById("settings");
    var field = form && form.querySelector("input[name=title]");
    var was = form && form.querySelector("input[name=title_was]");
    if (!field || !was || field.value !== was.value) return;
    field.value = was.value = target.textContent;
  });

  // Auto-scroll the thread while the user is at the bottom; stop when they scroll up.
  var stick = true;
  function thread() { return document.querySelector("[data-thread]"); }
  function atBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 40; }
  document.addEventListener("scroll", function (evt) {
    var t = thread();
    if (t && evt.target === t) stick = atBottom(t);
  }, true);
  // "Show earlier messages" puts a window of messages above the one the user is reading:
  // keep that message where it is on screen (rather than following to the bottom), and move
  // focus to the next "Show earlier messages" button, if any, so the keyboard can go on.
  var keep = null;
  var hadFocus = false;
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var elt = evt.detail.elt;
    if (elt && elt.closest && elt.closest("[data-earlier]")) hadFocus = document.activeElement === elt;
  });
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var control = evt.detail.target;
    if (!evt.detail.shouldSwap || !control || !control.matches || !control.matches("[data-earlier]")) return;
    var below = control.nextElementSibling;
    if (!below) return;
    var mine = keep = { below: below, top: below.getBoundingClientRect().top, above: control.previousElementSibling,
                        parent: control.parentElement, focus: hadFocus };
    setTimeout(function () { if (keep === mine) keep = null; }, 1000);  // an empty answer settles nothing
  });
  function follow() {
    var t = thread();
    if (keep) {
      if (t) t.scrollTop += keep.below.getBoundingClientRect().top - keep.top;
      return;
    }
    if (t && stick) t.scrollTop = t.scrollHeight;
  }
  document.addEventListener("htmx:afterSettle", function () {
    if (!keep) return;
    var done = keep;
    follow();
    keep = null;
    var first = done.above ? done.above.nextElementSibling : done.parent && done.parent.firstElementChild;
    var next = first && (first.matches("[data-earlier]") ? first : first.firstElementChild);
    if (done.focus && next && next.matches("[data-earlier]")) next.querySelector("button").focus({ preventScroll: true });
  });
  document.addEventListener("htmx:oobAfterSwap", follow);
  document.addEventListener("htmx:afterSwap", follow);
  document.addEventListener("DOMContentLoaded", function () { stick = true; follow(); });

  // Enter sends, Shift+Enter makes a new line.
  document.addEventListener("keydown", function (evt) {
    var box = evt.target;
    if (!box.matches || !box.matches("[data-composer]")) return;
    if (evt.key === "Enter" && !evt.shiftKey && !evt.isComposing) {
      evt.preventDefault();
      if (box.value.trim()) box.form.requestSubmit();
    }
  });
  // Keep focus in the composer after it is re-rendered.
  document.addEventListener("htmx:afterSwap", function (evt) {
    if (evt.detail.target && evt.detail.target.id === "composer") {
      var box = document.querySelector("[data-composer]");
      if (box) { box.focus(); box.setSelectionRange(box.value.length, box.value.length); }
    }
  });
})();

// A refused htmx request (409, 429, 500...) says why in a toast instead of failing silently.
(function () {
  "use strict";
  var timer = null;
  function toast(text) {
    var box = document.getElementById("toast");
    if (!box) return;
    box.textContent = text;
    box.hidden = false;
    clearTimeout(timer);
    timer = setTimeout(function () { box.hidden = true; }, 8000);
  }
  document.addEventListener("htmx:responseError", function (evt) {
    var xhr = evt.detail.xhr;
    var type = (xhr.getResponseHeader("Content-Type") || "");
    var text = type.indexOf("text/plain") === 0 && xhr.responseText ? xhr.responseText : "The server refused that (" + xhr.status + "). Try again.";
    toast(text);
  });
  document.addEventListener("htmx:sendError", function () { toast("Could not reach the server. Check your connection and try again."); });
})();

// The conversation tree: forms loaded on demand (edit, fan out) close with their Cancel
// button; an open switcher or rename box closes when you click elsewhere.
(function () {
  "use strict";
  document.addEventListener("click", function (evt) {
    var cancel = evt.target.closest && evt.target.closest("[data-cancel]");
    if (cancel) {
      var form = cancel.closest("form");
      if (form) form.remove();
      return;
    }
    document.querySelectorAll(".branch-bar details[open]").forEach(function (box) {
      if (!box.contains(evt.target)) box.removeAttribute("open");
    });
  });
  // Opened at a message (sibling arrows, tree nodes link to #msg-<id>): show that message
  // rather than the bottom of the thread.
  document.addEventListener("DOMContentLoaded", function () {
    var match = /^#msg-\d+$/.test(location.hash) && document.getElementById(location.hash.slice(1));
    if (match) {
      match.scrollIntoView({ block: "center" });
      match.classList.add("target");
    }
  });
})();

// Refresh the composer's cache prediction when a turn ends or a message is sent: the next
// request's prefix and the cache's state just changed.
(function () {
  "use strict";
  function refresh() {
    var el = document.querySelector("[data-prediction]");
    if (el && window.htmx) window.htmx.trigger(el, "prediction-refresh");
  }
  document.addEventListener("htmx:oobAfterSwap", function (evt) {
    var t = evt.detail.target;
    if (t && t.matches && t.matches("article.msg") && !t.classList.contains("status-streaming") && !t.classList.contains("status-pending")) refresh();
  });
  document.addEventListener("htmx:afterSwap", function (evt) {
    if (evt.detail.target && evt.detail.target.id === "composer") refresh();
  });
})();

// Phones: the session page is one column with the drawer (cost panel, settings) above the
// conversation, folded. The cost panel's summary shows only there (app.css): on a wider
// screen the panel must stay open, so it follows the width as it changes (a phone turned).
(function () {
  "use strict";
  var phone = window.matchMedia("(max-width: 700px)");
  function fold() {
    document.querySelectorAll("details[data-fold-on-phone]").forEach(function (box) { box.open = !phone.matches; });
  }
  document.addEventListener("DOMContentLoaded", fold);
  phone.addEventListener("change", fold);
})();

// The session drawer re-reads its form in the background (the provider's model list) while
// the user may press Save. A save sent after such a read started wins: the read's answer (the
// form as it was) is not swapped in over "Saved". Not done with hx-sync's abort: htmx logs
// every aborted request as a console error (htmx:sendAbort).
(function () {
  "use strict";
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var elt = evt.detail.elt;
    var form = elt && elt.closest ? elt.closest("form") : null;
    if (!form || !evt.detail.xhr) return;
    if (elt === form) {
      form.pgSaves = (form.pgSaves || 0) + 1;
    } else if (elt.hasAttribute("data-superseded-by-save")) {
      evt.detail.xhr.pgForm = form;
      evt.detail.xhr.pgSaves = form.pgSaves || 0;
    }
  });
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var xhr = evt.detail.xhr;
    if (xhr && xhr.pgForm && (xhr.pgForm.pgSaves || 0) > xhr.pgSaves) evt.detail.shouldSwap = false;
  });
})();
