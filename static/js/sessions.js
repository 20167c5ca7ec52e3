// The session list (templates/chat/sessions.html): Esc cancels an inline rename, the Undo
// toast of a delete goes away after its seconds. No inline scripts: the CSP allows our files only.
(function () {
  "use strict";
  document.addEventListener("keydown", function (evt) {
    if (evt.key !== "Escape" || !evt.target.matches || !evt.target.matches("[data-rename]")) return;
    var cancel = evt.target.form && evt.target.form.querySelector("[data-rename-cancel]");
    if (cancel) { evt.preventDefault(); cancel.click(); }
  });
  // The rename box opens with its text selected, ready to be typed over.
  document.addEventListener("htmx:afterSettle", function (evt) {
    var box = evt.detail.elt && evt.detail.elt.querySelector && evt.detail.elt.querySelector("[data-rename]");
    if (box) { box.focus(); box.select(); }
  });
  function timeToasts() {
    document.querySelectorAll("[data-undo-toast]:not([data-timed])").forEach(function (toast) {
      toast.setAttribute("data-timed", "");
      var seconds = parseInt(toast.getAttribute("data-seconds"), 10) || 10;
      setTimeout(function () { toast.remove(); }, seconds * 1000);
    });
  }
  // A reply ended (its cost panel came out of band): the list's spend and order follow.
  document.addEventListener("htmx:oobAfterSwap", function (evt) {
    var t = evt.detail.target;
    if (t && t.id && t.id.indexOf("cost-panel-") === 0 && window.htmx) window.htmx.trigger(document.body, "sessions-changed");
  });
  // Never re-read the list under a rename being typed: it would throw the text away.
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var elt = evt.detail.elt;
    if (elt && elt.id === "session-list" && elt.querySelector("[data-rename]")) evt.preventDefault();
  });
  document.addEventListener("DOMContentLoaded", timeToasts);
  document.addEventListener("htmx:afterSettle", timeToasts);
  document.addEventListener("htmx:oobAfterSwap", timeToasts);
})();
