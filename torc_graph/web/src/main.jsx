// The torc_graph dashboard: login, workflows list, workflow view, stage drill-down.
// Routes live in the URL fragment: #/, #/workflows/KEY, #/workflows/KEY/stages/STAGE.
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { getJSON, login, logout, paths, whoami } from './api.js';
import { CountsBar, Table, when } from './widgets.jsx';
import { WorkflowPage } from './workflow.jsx';
import { LABELS, STATUSES } from './status.js';

function route() {
  const parts = (location.hash.replace(/^#\/?/, '') || '').split('/').filter(Boolean);
  return parts.map((p) => decodeURIComponent(p));
}

function go(path) {
  location.hash = `#${path}`;
}

function App() {
  const [me, setMe] = useState(undefined); // undefined: checking; null: logged out
  const [parts, setParts] = useState(route());
  useEffect(() => {
    const onHash = () => setParts(route());
    window.addEventListener('hashchange', onHash);
    whoami().then(setMe, () => setMe(null));
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  if (me === undefined) return <p class="muted pad">Loading…</p>;
  if (me === null) return <Login onDone={setMe} />;
  const authLost = () => setMe(null);
  let page;
  if (parts[0] === 'workflows' && parts[1] && parts[2] === 'stages' && parts[3] !== undefined) {
    page = <StagePage wf={parts[1]} stage={parts[3]} onAuthLost={authLost} />;
  } else if (parts[0] === 'workflows' && parts[1]) {
    page = <WorkflowPage key={parts[1]} wf={parts[1]} onAuthLost={authLost} go={go} />;
  } else {
    page = <WorkflowsPage onAuthLost={authLost} />;
  }
  return (
    <div>
      <nav class="top">
        <a href="#/" class="brand">torc_graph</a>
        {parts[1] && <a href="#/">workflows</a>}
        {parts[2] === 'stages' && <a href={`#/workflows/${encodeURIComponent(parts[1])}`}>workflow {parts[1]}</a>}
        <span class="spacer" />
        <span class="muted">{me.token_name} ({me.role})</span>
        <button class="link" onClick={() => logout().then(() => setMe(null))}>log out</button>
      </nav>
      <main>{page}</main>
    </div>
  );
}

function Login({ onDone }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(token.trim());
      setToken('');
      onDone(await whoami());
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="login card" onSubmit={submit}>
      <h1>torc_graph</h1>
      <p class="muted">Sign in with an API token (<code>torc-graph tokens create</code>).</p>
      <input type="password" name="token" placeholder="API token" autocomplete="off"
        value={token} onInput={(e) => setToken(e.currentTarget.value)} autofocus />
      <button type="submit" disabled={busy || !token.trim()}>Sign in</button>
      {error && <p class="error" role="alert">{error}</p>}
    </form>
  );
}

/** Load `path` as JSON on mount, whenever `deps` change and, with `everyMs`, periodically. */
function useJSON(path, onAuthLost, deps, everyMs = 0) {
  const [state, setState] = useState({ data: null, error: null });
  useEffect(() => {
    const ac = new AbortController();
    const load = () => getJSON(path, ac.signal).then(
      (data) => setState({ data, error: null }),
      (e) => {
        if (e.name === 'AbortError') return;
        if (e.status === 401) onAuthLost();
        else setState((st) => ({ data: st.data, error: e.message }));
      },
    );
    load();
    const timer = everyMs ? setInterval(load, everyMs) : null;
    return () => { ac.abort(); if (timer) clearInterval(timer); };
  }, deps);
  return state;
}

const LIST_REFRESH_MS = 10_000;

function WorkflowsPage({ onAuthLost }) {
  const { data, error } = useJSON(paths.workflows(), onAuthLost, [], LIST_REFRESH_MS);
  if (error && !data) return <div class="error" role="alert">{error}</div>;
  if (!data) return <p class="muted">Loading workflows…</p>;
  return (
    <section class="card workflows-page">
      <h1>Workflows</h1>
      <Table rows={data.items} rowKey={(w) => w.key} cls="workflows" empty="No workflows yet." columns={[
        ['key', (w) => <a href={`#/workflows/${encodeURIComponent(w.key)}`}>{w.key}</a>],
        ['name', (w) => <a href={`#/workflows/${encodeURIComponent(w.key)}`}>{w.name}</a>],
        ['user', (w) => w.user],
        ['created', (w) => when(w.timestamp)],
        ['jobs', (w) => w.total],
        ['failed', (w) => (w.counts.failed ? <span class="st-text-failed">{w.counts.failed}</span> : '')],
        ['progress', (w) => <CountsBar counts={w.counts} total={w.total} />],
        ['', (w) => (w.is_complete ? <span class="badge complete">complete</span> : '')],
      ]} />
    </section>
  );
}

const PAGE = 100;

function StagePage({ wf, stage, onAuthLost }) {
  const [skip, setSkip] = useState(0);
  const [status, setStatus] = useState('');
  const { data, error } = useJSON(paths.stageJobs(wf, stage, { skip, limit: PAGE, status }),
    onAuthLost, [wf, stage, skip, status]);
  const [why, setWhy] = useState({});
  const explain = async (key) => {
    setWhy({ ...why, [key]: 'loading' });
    try {
      const r = await getJSON(paths.explain(wf, key));
      const reasons = Array.isArray(r) ? r : (r.reasons || []);
      setWhy((w) => ({ ...w, [key]: reasons.map((x) => x.message).join(' · ') || 'no reason' }));
    } catch (e) {
      setWhy((w) => ({ ...w, [key]: e.message }));
    }
  };
  return (
    <section class="card">
      <h1>Stage <code>{stage}</code> <span class="muted">of workflow {wf}</span></h1>
      <label>status{' '}
        <select value={status} onChange={(e) => { setSkip(0); setStatus(e.currentTarget.value); }}>
          <option value="">any</option>
          {/* the server's filter values: stored statuses, and failed */}
          {STATUSES.map((s) => <option value={s} key={s}>{s}</option>)}
        </select>
      </label>
      {error && <div class="error" role="alert">{error}</div>}
      {!data && !error && <p class="muted">Loading…</p>}
      {data && (
        <div>
          <p class="muted">{data.total} job(s){data.total > PAGE
            ? `, ${skip + 1}–${Math.min(skip + PAGE, data.total)} shown` : ''}</p>
          <Table rows={data.items} rowKey={(j) => j.key} cls="jobs" empty="No jobs." columns={[
            ['key', (j) => j.key],
            ['name', (j) => j.name],
            ['status', (j) => <span class={`st-text-${jobStatus(j)}`}>{LABELS[jobStatus(j)] || j.status}</span>],
            ['return code', (j) => (j.return_code ?? '')],
            ['why', (j) => (why[j.key] && why[j.key] !== 'loading' ? <span class="why">{why[j.key]}</span>
              : <button class="link" disabled={why[j.key] === 'loading'} onClick={() => explain(j.key)}>explain</button>)],
          ]} />
          <div class="pager">
            <button disabled={skip === 0} onClick={() => setSkip(Math.max(0, skip - PAGE))}>previous</button>
            <button disabled={skip + PAGE >= data.total} onClick={() => setSkip(skip + PAGE)}>next</button>
          </div>
        </div>
      )}
    </section>
  );
}

function jobStatus(job) {
  return job.status === 'done' && job.return_code ? 'failed' : job.status;
}

render(<App />, document.getElementById('app'));
