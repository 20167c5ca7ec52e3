// A streaming reply renders as Markdown as it arrives, in the browser.
//
// The server keeps sending a reply's text as plain-text deltas into #body-<id>
// (.msg-body.live), so app.js's seq / resync / snapshot rules keep working on exact text.
// This file renders that text into a sibling view (.msg-body.md[data-md-live]) with the
// same parser and options as the final message's server-side renderer
// (playground/chat/markdown.py: markdown-it, commonmark + table + strikethrough, raw HTML
// off) and the same allow-list (DOMPurify configured like nh3 there), so the swap to the
// server's HTML when the reply ends does not move anything on screen. The server adds
// Pygments colours to code blocks at that swap (colours only: no size change).
//
// Why in the browser and not re-rendered by the server on coalesced frames: the server's
// render of the text so far costs far more CPU per delivered token than the relay's whole
// budget (numbers in bench/README.md, "Markdown while streaming").
//
// Without these libraries (or without DOMPurify support) the raw text simply stays visible.
(function () {
  "use strict";
  var md = window.markdownit && window.markdownit("commonmark", { html: false }).enable(["table", "strikethrough"]);
  var purify = window.DOMPurify;
  if (!md || !purify || !purify.isSupported) return;
  // Table alignment comes out as style="text-align:..." attributes: nh3 drops them on the
  // server, and even parsing one (DOMPurify's inert document) is a CSP violation here. Drop
  // them from the tokens, before any HTML exists.
  md.core.ruler.push("no_inline_styles", function (state) {
    state.tokens.forEach(function (token) {
      if (token.attrs) token.attrs = token.attrs.filter(function (attr) { return attr[0] !== "style"; });
    });
  });

  // nh3's allow-list in playground/chat/markdown.py, tag by tag.
  var ATTRS = {
    a: ["href", "title"], img: ["src", "alt", "title"], code: ["class"], span: ["class"],
    ol: ["start"], th: ["align"], td: ["align"]
  };
  var TAGS = ["p", "br", "hr", "em", "strong", "del", "code", "pre", "span", "blockquote", "a",
              "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "img"];
  var CONFIG = {
    ALLOWED_TAGS: TAGS,
    ALLOWED_ATTR: ["href", "title", "src", "alt", "class", "start", "align"],
    ALLOWED_URI_REGEXP: /^(?:(?:https?|mailto):|[^a-z]|[a-z+.-]+(?:[^a-z+.\-:]|$))/i,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false
  };
  var OURS = "data-md-live-sanitizing";
  purify.addHook("uponSanitizeAttribute", function (node, data) {
    if (!purify[OURS]) return;
    var allowed = ATTRS[node.nodeName.toLowerCase()];
    if (!allowed || allowed.indexOf(data.attrName) < 0) data.keepAttr = false;
    // nh3 allows http, https and mailto only; DOMPurify also lets data: through on <img>.
    if ((data.attrName === "src" || data.attrName === "href") && /^\s*data:/i.test(data.attrValue)) data.keepAttr = false;
  });
  purify.addHook("afterSanitizeAttributes", function (node) {
    if (purify[OURS] && node.nodeName === "A") node.setAttribute("rel", "noopener noreferrer nofollow");
  });

  function sanitize(html) {
    purify[OURS] = true;
    try { return purify.sanitize(html, CONFIG); } finally { purify[OURS] = false; }
  }

  function thread(el) { return el.closest("[data-thread]"); }

  function render(raw) {
    if (!raw.isConnected || !raw.classList.contains("live")) return;
    var view = raw.nextElementSibling;
    if (!view || !view.hasAttribute("data-md-live")) {
      view = document.createElement("div");
      view.className = "msg-body md";
      view.setAttribute("data-md-live", "");
      raw.after(view);
    }
    var text = raw.textContent;
    if (view.getAttribute("data-source-length") === String(text.length)) return;  // deltas only append
    var t = thread(raw);
    var bottom = t && t.scrollHeight - t.scrollTop - t.clientHeight < 40;
    view.innerHTML = sanitize(md.render(text));
    view.setAttribute("data-source-length", String(text.length));
    raw.hidden = true;
    if (bottom) t.scrollTop = t.scrollHeight;  // follow the reply, as app.js does on swaps
    document.dispatchEvent(new CustomEvent("playground:rendered", { detail: { view: view } }));
  }

  // At most one render per reply per animation frame: a burst of frames (a resync, a busy
  // tab) costs one render of the text so far, not one per frame.
  var pending = [];
  var scheduled = false;
  function flush() {
    scheduled = false;
    var todo = pending;
    pending = [];
    todo.forEach(render);
  }
  function schedule(raw) {
    if (pending.indexOf(raw) < 0) pending.push(raw);
    if (!scheduled) { scheduled = true; window.requestAnimationFrame(flush); }
  }

  function scan(root) {
    Array.prototype.forEach.call((root || document).querySelectorAll(".msg-body.live[id^='body-']"), schedule);
  }
  document.addEventListener("htmx:oobAfterSwap", function (evt) {
    var target = evt.detail.target;
    if (!target || !target.matches) return;
    if (target.matches(".msg-body.live")) schedule(target);
    else scan(target);  // a message (re)appears mid-reply
  });
  // A reply's end replaces its whole article, sometimes in the same moment as its last delta
  // (the end's frame follows it on the socket): render text still waiting for its animation
  // frame first, so the view the server's HTML replaces is the whole text, and the swap
  // keeps the reply where it is instead of jumping by its last words.
  document.addEventListener("htmx:oobBeforeSwap", function (evt) {
    var target = evt.detail.target;
    if (!target || !target.querySelector || !pending.length) return;
    var raw = target.matches(".msg-body.live") ? null : target.querySelector(".msg-body.live[id^='body-']");
    var at = raw ? pending.indexOf(raw) : -1;
    if (at >= 0) { pending.splice(at, 1); render(raw); }
  });
  document.addEventListener("htmx:afterSwap", function (evt) { if (evt.detail.target) scan(evt.detail.target.parentElement || document); });
  document.addEventListener("DOMContentLoaded", function () { scan(document); });

  window.playgroundMarkdown = { render: function (text) { return sanitize(md.render(text)); } };
})();
