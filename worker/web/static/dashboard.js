// audio-worker dashboard: confirmations for actions and live refresh. No framework, no build step.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

// The overview's counts, running jobs (progress bars) and workers, fetched again every few seconds.
function refreshLive(box) {
  const every = Number(box.dataset.interval || 2000);
  const tick = async () => {
    try {
      const reply = await fetch(box.dataset.refresh, { headers: { Accept: "text/html-fragment" }, credentials: "same-origin" });
      if (reply.ok) box.innerHTML = await reply.text();
      else if (reply.status === 401) { window.location = "/login"; return; }
    } catch (_) { /* next tick */ }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (live) refreshLive(live);
  const reload = document.getElementById("refresh");
  if (reload) setTimeout(() => window.location.reload(), Number(reload.dataset.reload || 2000));
});
