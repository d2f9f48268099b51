// The dashboard's only script: follows a run's progress stream (the cookie-authenticated
// /dashboard/runs/:id/progress) and updates the bar, the latest messages and the status. EventSource
// reconnects by itself when a stream ends without `end` (the relay's 30-minute cap, a deploy, a network
// blip); the new stream replays the trace, so messages already shown are skipped. It reads
// nothing from the page but its own data attributes and writes text only (textContent), never HTML.
// When the stream says `end` the page reloads, and the server renders the finished run.

export const PROGRESS_SCRIPT = `(() => {
  const section = document.getElementById("progress");
  if (!section || !("EventSource" in window)) return;
  const bar = section.querySelector("progress");
  const text = section.querySelector("[data-progress-text]");
  const list = section.querySelector("[data-progress-messages]");
  const badge = document.querySelector("[data-run-status]");
  const setStatus = (status) => {
    if (!badge) return;
    badge.textContent = status;
    badge.className = "badge s-" + status;
    badge.setAttribute("data-run-status", status);
  };
  const source = new EventSource(section.getAttribute("data-progress-url"));
  // A reconnected stream starts over with the whole trace: show each message once.
  const shown = new Set();
  const kinds = ["plan", "search", "result", "tool_call", "exec_status"];
  for (const kind of kinds) {
    source.addEventListener("task_run.progress_msg." + kind, (event) => {
      const message = JSON.parse(event.data);
      const key = kind + "|" + message.timestamp + "|" + message.message;
      if (shown.has(key)) return;
      shown.add(key);
      const item = document.createElement("li");
      const label = document.createElement("span");
      label.className = "kind";
      label.textContent = kind.replace("_", " ");
      item.append(label, message.message);
      list.prepend(item);
      while (list.children.length > 8) list.lastElementChild.remove();
    });
  }
  source.addEventListener("task_run.progress_stats", (event) => {
    const stats = JSON.parse(event.data);
    const meter = Math.max(0, Math.min(100, Math.round(stats.progress_meter)));
    bar.value = meter;
    bar.textContent = meter + "%";
    const sources = stats.source_stats || {};
    text.textContent = meter + "% · " + (sources.num_sources_considered ?? 0) + " sources considered, " +
      (sources.num_sources_read ?? 0) + " read";
  });
  source.addEventListener("run", (event) => setStatus(JSON.parse(event.data).status));
  source.addEventListener("end", (event) => {
    source.close();
    setStatus(JSON.parse(event.data).status);
    section.setAttribute("data-state", "ended");
    bar.value = 100;
    text.textContent = "Finished: loading the result…";
    location.reload();
  });
})();`;
