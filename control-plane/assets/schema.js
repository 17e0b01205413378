// Outpost console: the query page's schema browser (issue 23).
//
// - When an agent and a connection are chosen, asks
//   GET /v1/agents/{agent}/connections/{connection}/schema (the control plane answers
//   from its cache or signs a catalog job for the agent) and lists the tables, each a
//   <details> that opens on its columns with type, row estimate and a "masked" badge.
//   "Refresh" asks again with ?refresh=true; the filter narrows tables and columns.
// - Clicking a column name inserts it into the SQL: an `outpost:insert` CustomEvent
//   (detail: the text) on the SQL textarea, which the editor handles (preventDefault);
//   if nothing handled it, the text goes into the textarea at its caret.
// - The schema is also `window.outpostSchema = {tables: {name: [{name, type, masked}]}}`
//   and an `outpost:schema` event on document, for the editor's autocomplete.
// The panel's data-schema-state says where it is: loading, loaded, failed or none.
// Everything is built with textContent: a table or column name is never HTML.
'use strict';

(function () {
  let seq = 0;

  function form() {
    return document.querySelector('form[data-query-form]');
  }

  function panel() {
    return document.querySelector('[data-schema-panel]');
  }

  function el(tag, cls, text) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    return n;
  }

  // A name as SQL: bare when it is a plain identifier, else double-quoted.
  function ident(name) {
    return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : '"' + name.replace(/"/g, '""') + '"';
  }

  // The table's name as a query names it: without the default schema.
  function tableName(t) {
    return t.schema === 'main' || t.schema === 'public' || !t.schema
      ? ident(t.name) : ident(t.schema) + '.' + ident(t.name);
  }

  function insert(text) {
    const f = form();
    const ta = f && f.querySelector('textarea[name="sql"]');
    if (!ta) return;
    const ev = new CustomEvent('outpost:insert', { detail: text, bubbles: true, cancelable: true });
    if (!ta.dispatchEvent(ev)) return; // the editor took it
    const start = ta.selectionStart ?? ta.value.length;
    const end = ta.selectionEnd ?? start;
    ta.setRangeText(text, start, end, 'end');
    ta.focus();
    ta.dispatchEvent(new Event('input', { bubbles: true }));
  }

  function publish(data) {
    const tables = {};
    for (const t of (data && data.tables) || []) {
      tables[tableName(t)] = t.columns.map((c) => ({ name: c.name, type: c.type, masked: c.masked === true }));
    }
    window.outpostSchema = data ? { tables, agent: data.agent, connection: data.connection } : { tables };
    document.dispatchEvent(new CustomEvent('outpost:schema', { detail: window.outpostSchema }));
  }

  function rows(n) {
    if (n === null || n === undefined) return '';
    return '~' + Number(n).toLocaleString() + (n === 1 ? ' row' : ' rows');
  }

  function column(c) {
    const li = el('li', 'schema-column');
    const b = el('button', 'schema-insert', c.name);
    b.type = 'button';
    b.dataset.insert = ident(c.name);
    b.title = 'Insert ' + c.name + ' into the SQL';
    li.append(b, ' ', el('span', 'schema-type', c.type + (c.nullable ? '' : ' not null')));
    if (c.masked) {
      const m = el('span', 'badge masked', 'masked');
      m.title = "The agent's policy masks this column: its values leave only as *** or a keyed hash";
      li.append(' ', m);
    }
    return li;
  }

  function render(p, data) {
    const list = p.querySelector('[data-schema-list]');
    const items = data.tables.map((t) => {
      const d = el('details', 'schema-table');
      d.dataset.search = (t.schema + '.' + t.name + ' ' + t.columns.map((c) => c.name).join(' ')).toLowerCase();
      const s = el('summary');
      s.append(el('span', 'schema-name', tableName(t)));
      if (t.kind === 'view') s.append(' ', el('span', 'badge', 'view'));
      const est = rows(t.row_estimate);
      if (est) s.append(' ', el('span', 'schema-rows', est));
      const ul = el('ul', 'schema-columns');
      ul.append(...t.columns.map(column));
      d.append(s, ul);
      return d;
    });
    list.replaceChildren(...items);
    filter(p);
    const cols = data.tables.reduce((n, t) => n + t.columns.length, 0);
    const when = new Date(data.fetched_at * 1000).toLocaleTimeString();
    let text = data.tables.length + ' tables, ' + cols + ' columns, as of ' + when + (data.cached ? ' (kept)' : '');
    if (data.truncated) text += '; only the first ones: the catalog is cut at its limits';
    if (!data.tables.length) text = 'The connection shows no table this role may read (as of ' + when + ').';
    say(p, text);
  }

  function say(p, text, bad) {
    const s = p.querySelector('[data-schema-status]');
    s.textContent = text;
    s.classList.toggle('error', !!bad);
  }

  function filter(p) {
    const input = p.querySelector('[data-schema-filter]');
    const q = input ? input.value.trim().toLowerCase() : '';
    p.querySelectorAll('details.schema-table').forEach((d) => {
      d.hidden = q !== '' && !d.dataset.search.includes(q);
    });
  }

  async function load(refresh) {
    const p = panel();
    const f = form();
    if (!p || !f) return;
    const a = f.querySelector('[data-agent-select]');
    const c = f.querySelector('[data-connection-select]');
    const agent = a ? a.value : '';
    const conn = c ? c.value : '';
    const mine = ++seq;
    p.dataset.schemaState = 'loading';
    if (!agent || !conn) {
      p.dataset.schemaState = 'none';
      p.querySelector('[data-schema-list]').replaceChildren();
      say(p, 'Choose an agent and a connection to see its tables.');
      publish(null);
      return;
    }
    say(p, refresh ? 'Asking the agent for the schema of ' + conn + '…' : 'Loading the schema of ' + conn + '…');
    p.setAttribute('aria-busy', 'true');
    let status = 0;
    let data = null;
    try {
      const path = '/v1/agents/' + encodeURIComponent(agent) + '/connections/' + encodeURIComponent(conn) +
        '/schema' + (refresh ? '?refresh=true' : '');
      const res = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      status = res.status;
      data = await res.json().catch(() => null);
    } catch (_) {
      data = { message: 'the control plane could not be reached' };
    }
    if (mine !== seq) return; // another choice was made meanwhile
    p.removeAttribute('aria-busy');
    if (status === 200 && data && Array.isArray(data.tables)) {
      render(p, data);
      publish(data);
      p.dataset.schemaState = 'loaded';
      return;
    }
    p.dataset.schemaState = 'failed';
    p.querySelector('[data-schema-list]').replaceChildren();
    publish(null);
    const why = (data && data.message) || 'no answer';
    if (status === 202 && data && data.code === 'agent_offline') say(p, 'No schema: ' + why + '. Press Refresh then.');
    else if (status === 202) say(p, 'The agent has not answered yet; press Refresh in a moment.');
    else say(p, 'The schema is not available: ' + why, true);
  }

  document.addEventListener('change', (ev) => {
    if (ev.target.matches && ev.target.matches('[data-agent-select], [data-connection-select]')) {
      // After console.js has picked the agent's first connection.
      setTimeout(() => load(false), 0);
    }
  });
  document.addEventListener('click', (ev) => {
    const b = ev.target.closest && ev.target.closest('[data-schema-panel] button');
    if (!b) return;
    if (b.dataset.insert !== undefined) insert(b.dataset.insert);
    else if (b.hasAttribute('data-schema-refresh')) load(true);
  });
  document.addEventListener('input', (ev) => {
    if (ev.target.matches && ev.target.matches('[data-schema-filter]')) filter(panel());
  });

  function start() {
    if (panel()) load(false);
  }
  // console.js (loaded before) first picks the agent's connection on DOMContentLoaded.
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else setTimeout(start, 0);
})();
