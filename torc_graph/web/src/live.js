// Live updates: the workflow's event stream (Server-Sent Events, cookie-authenticated) triggers
// summary refreshes, debounced to at most one every MIN_INTERVAL_MS.
import { paths } from './api.js';

export const MIN_INTERVAL_MS = 500;
// SSE messages carry `event: <category>`; EventSource delivers a named event only to a listener
// of that name. These are the categories torc_graph writes; anything else is the default kind.
const CATEGORIES = ['job', 'workflow', 'compute_node', 'scheduler', 'worker',
  'resource_requirements', 'message'];
// While the stream is down (server restart, 503 busy), poll instead.
const FALLBACK_POLL_MS = 5000;

/** A throttle: `trigger()` runs `fn` at most once per `interval` ms (a number, or a function
 * returning one), never two at once, and always once more after the last trigger (no update
 * is dropped). */
export function throttle(fn, interval) {
  const gap = typeof interval === 'function' ? interval : () => interval;
  let running = false;
  let pending = false;
  let last = 0;
  let timer = null;
  const run = async () => {
    timer = null;
    running = true;
    pending = false;
    last = Date.now();
    try { await fn(); } finally {
      running = false;
      if (pending) schedule();
    }
  };
  const schedule = () => {
    if (running) { pending = true; return; }
    if (timer) return;
    timer = setTimeout(run, Math.max(0, last + gap() - Date.now()));
  };
  schedule.cancel = () => { if (timer) clearTimeout(timer); timer = null; pending = false; };
  return schedule;
}

/** Follow workflow `wf` from event `lastEventId` (null: from the first event). Calls
 * `onEvent()` per event and `onState(state)` with 'connecting' | 'live' | 'reconnecting'.
 * Returns a function that stops following. The browser's EventSource reconnects by itself
 * and resends the last id it received as Last-Event-ID: nothing lost, nothing twice. */
export function follow(wf, lastEventId, onEvent, onState) {
  let source = null;
  let poll = null;
  let stopped = false;
  const open = () => {
    onState('connecting');
    source = new EventSource(paths.stream(wf, lastEventId));
    source.onopen = () => {
      if (poll) { clearInterval(poll); poll = null; }
      onState('live');
    };
    const handler = (e) => {
      if (e.lastEventId) lastEventId = e.lastEventId;
      onEvent(e);
    };
    for (const c of CATEGORIES) source.addEventListener(c, handler);
    source.onerror = () => {
      if (stopped) return;
      onState('reconnecting');
      if (!poll) poll = setInterval(() => onEvent(null), FALLBACK_POLL_MS);
      if (source.readyState === EventSource.CLOSED) {
        // A non-200 answer (401 expired session, 503 busy, 400) closes the source for good:
        // reopen later from the last id received.
        setTimeout(() => { if (!stopped) open(); }, FALLBACK_POLL_MS);
      }
    };
  };
  open();
  return () => {
    stopped = true;
    if (source) source.close();
    if (poll) clearInterval(poll);
  };
}
