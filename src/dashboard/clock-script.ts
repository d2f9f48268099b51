// The dashboard's clock: relative times ("12 s ago") keep counting while a page stays open. Each
// <time data-relative> carries its moment in `datetime`; the server's text is right when the page is
// sent, and without JavaScript it stays as sent. The formatter is format.ts's own relativeTime, so
// the browser and the server say it the same way. It writes text only (textContent), never HTML.
import { relativeTime } from "./format";

export const CLOCK_SCRIPT = `(() => {
  const relativeTime = ${relativeTime.toString()};
  const tick = () => {
    const now = new Date();
    for (const time of document.querySelectorAll("time[data-relative]")) {
      const text = relativeTime(time.getAttribute("datetime"), now);
      if (time.textContent !== text) time.textContent = text;
    }
  };
  setInterval(tick, 1000);
})();`;
