// Job statuses as displayed: torc v0.6.4's stored statuses, with "failed" (done with a non-zero
// return code) split out of "done".

/** Display order and colors (CSS variables in style.css use the same names). */
export const STATUSES = [
  'failed', 'done', 'submitted', 'submitted_pending', 'ready', 'scheduled', 'blocked',
  'uninitialized', 'canceled', 'terminated', 'disabled',
];

export const LABELS = {
  done: 'succeeded', failed: 'failed', submitted: 'running', submitted_pending: 'starting',
  ready: 'ready', scheduled: 'scheduled', blocked: 'blocked', uninitialized: 'uninitialized',
  canceled: 'canceled', terminated: 'terminated', disabled: 'disabled',
};

/** `{status: n}` for display from the API's counts: `done` without the failed ones. */
export function displayCounts(counts) {
  const out = {};
  const failed = counts.failed || 0;
  for (const s of STATUSES) {
    const n = s === 'done' ? (counts.done || 0) - failed : (counts[s] || 0);
    if (n > 0) out[s] = n;
  }
  return out;
}

/** Finished (done, failed, canceled, terminated) out of `total`. */
export function finished(counts) {
  return (counts.done || 0) + (counts.canceled || 0) + (counts.terminated || 0);
}
