// Live pages: the element with data-poll is re-fetched every data-every ms and replaced when
// its HTML changed. No framework, nothing from another origin. Polling pauses while the tab
// is hidden; when the session ends (the fragment then answers a redirect) it says so.
(function () {
  "use strict";
  var el = document.querySelector("[data-poll]");
  if (!el) return;
  var url = el.getAttribute("data-poll");
  var every = parseInt(el.getAttribute("data-every"), 10) || 2000;
  var stamp = document.getElementById("updated");
  var last = null;
  function schedule() { setTimeout(tick, every); }
  function tick() {
    if (document.hidden) return schedule();
    fetch(url, { credentials: "same-origin", cache: "no-store", redirect: "manual" })
      .then(function (r) {
        if (r.status !== 200) throw new Error("status " + r.status);
        // The server asks a page that is slow to build to be polled less often.
        var ask = parseInt(r.headers.get("x-poll-ms"), 10);
        if (ask > 0) every = ask;
        return r.text();
      })
      .then(function (html) {
        if (html !== last) {
          el.innerHTML = html;
          last = html;
        }
        if (stamp) stamp.textContent = "live · updated " + new Date().toLocaleTimeString();
        el.setAttribute("data-polled", String((parseInt(el.getAttribute("data-polled"), 10) || 0) + 1));
        schedule();
      })
      .catch(function () {
        if (stamp) stamp.textContent = "not updating (sign in again or reload)";
        schedule();
      });
  }
  schedule();
})();
