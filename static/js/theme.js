// The colour theme: "system" (follow prefers-color-scheme), "light" or "dark".
// Loaded in <head> WITHOUT defer, before the stylesheets, so the data-theme attribute is on
// <html> before the first paint: no flash of the wrong theme. (The CSP forbids inline
// scripts, hence this tiny file.) app.css writes each colour as light-dark(); color-scheme picks the half:
// html[data-theme=light|dark] forces one, no attribute follows the system setting.
// The choice lives in localStorage, so it holds across pages and reloads and needs no
// server round trip; the top bar's <select data-theme-select> changes it.
(function () {
  "use strict";
  var KEY = "theme";
  var root = document.documentElement;

  function stored() {
    try {
      var value = window.localStorage.getItem(KEY);
      return value === "light" || value === "dark" ? value : "system";
    } catch (e) {
      return "system";  // storage blocked (privacy mode): follow the system
    }
  }

  function apply(choice) {
    if (choice === "light" || choice === "dark") root.setAttribute("data-theme", choice);
    else root.removeAttribute("data-theme");
  }

  apply(stored());

  function wire() {
    var selects = document.querySelectorAll("select[data-theme-select]");
    Array.prototype.forEach.call(selects, function (select) {
      select.value = stored();
      select.addEventListener("change", function () {
        var choice = select.value;
        try {
          if (choice === "system") window.localStorage.removeItem(KEY);
          else window.localStorage.setItem(KEY, choice);
        } catch (e) { /* not persisted; still applies to this page */ }
        apply(choice);
      });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();

  // Another tab changed the theme, or Back restored this page from the bfcache after the
  // choice changed elsewhere: follow the stored choice.
  function resync() {
    var choice = stored();
    apply(choice);
    Array.prototype.forEach.call(document.querySelectorAll("select[data-theme-select]"), function (s) { s.value = choice; });
  }
  window.addEventListener("storage", function (evt) {
    if (evt.key === KEY || evt.key === null) resync();
  });
  window.addEventListener("pageshow", function (evt) { if (evt.persisted) resync(); });
})();
