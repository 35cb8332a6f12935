// HTTP access to the torc_graph API from the dashboard page: same origin, session cookie.
// Every read goes through the normal API routes with the cookie (the token's read permission).

/** An HTTP error with the torc error body's message; `status` is the HTTP status. */
export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function failure(resp) {
  let message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    if (body && body.errorMessage) message = body.errorMessage;
  } catch (_) { /* not JSON: keep the status line */ }
  return new HttpError(resp.status, message);
}

/** GET a JSON document; throws HttpError (401 when the session is missing or expired). */
export async function getJSON(path, signal) {
  const resp = await fetch(path, {
    credentials: 'same-origin', headers: { Accept: 'application/json' }, signal,
  });
  if (!resp.ok) throw await failure(resp);
  return resp.json();
}

/** The session's identity `{token_name, role}`, or null without a valid session. */
export async function whoami() {
  try {
    return await getJSON('/dashboard/session');
  } catch (e) {
    if (e instanceof HttpError && e.status === 401) return null;
    throw e;
  }
}

/** Exchange an API token for a session cookie; throws HttpError(401) for a bad token. */
export async function login(token) {
  const resp = await fetch('/dashboard/session', {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ token }),
  });
  if (!resp.ok) throw await failure(resp);
}

/** End the session (the cookie is cleared by the server). */
export async function logout() {
  await fetch('/dashboard/session', { method: 'DELETE', credentials: 'same-origin' });
}

const enc = encodeURIComponent;

export const paths = {
  workflows: () => '/dashboard/workflows',
  summary: (wf) => `/workflows/${enc(wf)}/dashboard/summary`,
  criticalPath: (wf) => `/workflows/${enc(wf)}/critical_path`,
  stageJobs: (wf, stage, { skip = 0, limit = 100, status = '' } = {}) => {
    const q = new URLSearchParams({ skip: String(skip), limit: String(limit) });
    if (status) q.set('status', status);
    return `/workflows/${enc(wf)}/dashboard/stages/${enc(stage)}/jobs?${q}`;
  },
  explain: (wf, job) => `/workflows/${enc(wf)}/jobs/${enc(job)}/explain`,
  stream: (wf, lastEventId) => `/workflows/${enc(wf)}/events/stream`
    + (lastEventId ? `?last_event_id=${enc(lastEventId)}` : ''),
};
