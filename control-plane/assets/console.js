// Outpost console: the little JavaScript the server-rendered pages use.
//
// - Forms and buttons with data-api="METHOD /v1/path/{field}" are sent to the JSON API
//   with the session's CSRF token (X-CSRF-Token); the API decides and audits.
// - Sections with data-job="ID" follow the job live (long-poll on the API, no interval)
//   and show the result when it is there.
// - The query form (data-query-form) checks the render options of the chosen kind as one
//   types (each problem beside its field and under the editor), runs on Ctrl-Enter /
//   Cmd-Enter, and says a refused run in an analyst's words next to the editor; the API
//   checks everything again.
// - A job page re-runs its job (data-rerun) and draws its chart as a PNG (data-png).
// Nothing here builds HTML from strings except the server's own result fragment, which
// is parsed with DOMParser (no script runs) and was sanitised on the server.
'use strict';

(function () {
  const FINAL = ['succeeded', 'failed', 'rejected', 'expired', 'cancelled'];

  function csrf() {
    const m = document.querySelector('meta[name="outpost-csrf"]');
    return m ? m.content : '';
  }

  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf() } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = { message: text };
    }
    if (!res.ok) {
      const err = new Error((data && data.message) || res.status + ' ' + res.statusText);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  function sleep(ms) {
    return new Promise((r) => setTimeout(r, ms));
  }

  // Backoff with jitter after a failed request: 0.5x to 1.5x of 1 s, 2 s, 4 s … 30 s.
  function backoff(attempt) {
    const base = Math.min(30000, 1000 * Math.pow(2, attempt));
    return sleep(base * (0.5 + Math.random()));
  }

  // Sets obj[a][b] = value for the dotted name "a.b".
  function put(obj, name, value) {
    const parts = name.split('.');
    let o = obj;
    for (const p of parts.slice(0, -1)) {
      o = o[p] = o[p] || {};
    }
    o[parts[parts.length - 1]] = value;
  }

  function parseParams(text, field) {
    const out = [];
    text.split('\n').forEach((line, i) => {
      line = line.trim();
      if (!line) return;
      const c = line.indexOf(':');
      const type = (c < 0 ? line : line.slice(0, c)).trim();
      const raw = c < 0 ? '' : line.slice(c + 1);
      switch (type) {
        case 'null': out.push({ type: 'null' }); break;
        case 'text': out.push({ type: 'text', value: raw }); break;
        case 'int':
          if (!/^-?\d+$/.test(raw.trim())) throw new Error(field + ' line ' + (i + 1) + ': int needs a whole number');
          out.push({ type: 'int', value: Number(raw.trim()) }); break;
        case 'float':
          if (isNaN(Number(raw.trim())) || raw.trim() === '') throw new Error(field + ' line ' + (i + 1) + ': float needs a number');
          out.push({ type: 'float', value: Number(raw.trim()) }); break;
        case 'bool':
          if (!['true', 'false'].includes(raw.trim())) throw new Error(field + ' line ' + (i + 1) + ': bool is true or false');
          out.push({ type: 'bool', value: raw.trim() === 'true' }); break;
        default:
          throw new Error(field + ' line ' + (i + 1) + ': type must be text, int, float, bool or null');
      }
    });
    return out;
  }

  // The JSON body of a form; fields whose data-kinds does not include the chosen render
  // kind are left out, as are fields named _x (they fill the path or wrap the body).
  function formBody(form) {
    const body = {};
    const extra = {};
    const kindSel = form.querySelector('[data-kind-select]');
    const kind = kindSel ? kindSel.value : null;
    for (const el of form.elements) {
      if (!el.name || el.disabled) continue;
      const scope = el.closest('[data-kinds]') || (el.dataset.kinds !== undefined ? el : null);
      if (kind && scope && !scope.dataset.kinds.split(' ').includes(kind)) continue;
      const t = el.dataset.type;
      if (t === 'checks') {
        if (!body[el.name]) body[el.name] = [];
        if (el.checked) body[el.name].push(el.value);
        continue;
      }
      let v;
      if (t === 'bool') v = el.checked;
      else if (el.value === '' && el.dataset.optional !== undefined) continue;
      else if (t === 'int') v = Number(el.value);
      else if (t === 'list') v = el.value.split(',').map((s) => s.trim()).filter((s) => s);
      else if (t === 'params') v = parseParams(el.value, el.name);
      else v = el.value;
      if (t === 'bool' && !v) continue;
      if (el.name.startsWith('_')) extra[el.name] = v;
      else put(body, el.name, v);
    }
    return { body, extra };
  }

  function fillPath(path, values) {
    return path.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(values[k] === undefined ? '' : values[k]));
  }

  function say(scope, text, ok) {
    const out = scope && scope.querySelector('output');
    if (out) {
      out.textContent = text;
      out.className = ok ? 'ok' : 'error';
    } else if (text && !ok) {
      window.alert(text);
    }
  }

  async function act(el, form, submitter) {
    const src = submitter && submitter.dataset.api ? submitter : el;
    const [method, tmpl] = src.dataset.api.split(' ');
    const then = (submitter && submitter.dataset.then) || el.dataset.then || 'reload';
    if (el.dataset.confirm && !window.confirm(el.dataset.confirm)) return;
    let body;
    let extra = {};
    if (form) {
      ({ body, extra } = formBody(form));
      if (src.dataset.wrap === 'project') {
        const q = body;
        q.name = extra._query_name || extra._project || 'query';
        body = { name: extra._project || '', queries: [q] };
      } else if (src.dataset.wrap === 'schedule' || src.dataset.wrap === 'schedule-remove') {
        // A project's schedule is set with the project: its name and queries as they are
        // now (without the `index` the API adds when it shows them), and the schedule.
        const p = await api('GET', fillPath(tmpl, extra));
        const queries = (p.queries || []).map((q) => { const c = { ...q }; delete c.index; return c; });
        body = { name: p.name, queries, schedule: src.dataset.wrap === 'schedule' ? body.schedule : null };
      }
    } else if (el.dataset.body) {
      body = JSON.parse(el.dataset.body);
    } else if (method !== 'GET' && method !== 'DELETE') {
      body = {};
    }
    const data = await api(method, fillPath(tmpl, extra), body);
    if (then === 'reload') {
      window.location.reload();
    } else if (then.startsWith('go:')) {
      window.location.assign(fillPath(then.slice(3), data || {}).replace(/%2F/g, '/'));
    } else if (then.startsWith('secret:')) {
      const box = form.querySelector('[data-secret-out]');
      box.querySelector('[data-copy-source]').value = data[then.slice(7)];
      box.hidden = false;
      say(form, 'Created.', true);
    } else if (then === 'embed') {
      const box = form.parentElement.querySelector('[data-embed-out]');
      const base = window.location.origin;
      // The project's embed page in a frame; the host site must be one of the project's
      // embed origins (or the control plane's embed.frame_ancestors).
      const src = base + '/embed/dashboards/' + encodeURIComponent(data.project) + '?token=' + encodeURIComponent(data.token);
      box.querySelector('[data-copy-source]').value =
        '<!-- Outpost embed page for ' + String(data.customer).replace(/-->/g, '--&gt;') + '; the token expires ' + new Date(data.expires_at * 1000).toISOString() +
        ': mint a new one on your server for each page view -->\n' +
        '<iframe src="' + src + '" title="Outpost dashboard" style="width: 100%; height: 640px; border: 0" loading="lazy"></iframe>';
      box.hidden = false;
      say(form, 'Created.', true);
    }
  }

  document.addEventListener('submit', (ev) => {
    const form = ev.target;
    if (!form.dataset.api) return;
    ev.preventDefault();
    // A button inside a fieldset with its own output answers there ("Save as project");
    // everything else answers in the form's first output (for the query form: beside
    // the editor).
    const box = ev.submitter && ev.submitter.closest('fieldset');
    const scope = box && box.querySelector('output') ? box : form;
    const query = form.hasAttribute('data-query-form');
    if (query) {
      form.querySelectorAll('output').forEach((o) => { o.textContent = ''; });
      const problems = checkQuery(form, true);
      if (problems.length) {
        say(scope, problems.join(' '), false);
        return;
      }
    }
    const btns = form.querySelectorAll('button');
    btns.forEach((b) => { b.disabled = true; });
    say(scope, 'Working…', true);
    act(form, form, ev.submitter)
      .catch((err) => say(scope, query ? friendly(err.message) : err.message, false))
      .finally(() => btns.forEach((b) => { b.disabled = false; }));
  });

  document.addEventListener('click', (ev) => {
    const el = ev.target.closest('button');
    if (!el) return;
    if (el.hasAttribute('data-signout')) {
      api('DELETE', '/v1/sessions/current').catch(() => {}).finally(() => window.location.assign('/console/login'));
    } else if (el.hasAttribute('data-copy')) {
      const src = el.parentElement.querySelector('[data-copy-source]');
      src.select();
      (navigator.clipboard ? navigator.clipboard.writeText(src.value) : Promise.reject(new Error('no clipboard')))
        .then(() => { el.textContent = 'Copied'; })
        .catch(() => { el.textContent = 'Press Ctrl+C'; });
    } else if (el.dataset.rerun) {
      el.disabled = true;
      rerun(el.dataset.rerun)
        .catch((err) => say(el.closest('p, section'), friendly(err.message), false))
        .finally(() => { el.disabled = false; });
    } else if (el.dataset.png !== undefined) {
      png(el).catch((err) => { el.textContent = 'PNG failed: ' + err.message; });
    } else if (el.dataset.api && el.type === 'button') {
      el.disabled = true;
      act(el, null, null).catch((err) => say(el.closest('section, td, li, p'), err.message, false)).finally(() => { el.disabled = false; });
    }
  });

  // The render kind shows only its own options; the agent picks its own connections.
  function syncKinds(form) {
    const sel = form.querySelector('[data-kind-select]');
    if (!sel) return;
    form.querySelectorAll('label[data-kinds]').forEach((l) => {
      l.hidden = !l.dataset.kinds.split(' ').includes(sel.value);
    });
  }
  function syncConnections(form) {
    const a = form.querySelector('[data-agent-select]');
    const c = form.querySelector('[data-connection-select]');
    if (!a || !c) return;
    let first = null;
    for (const o of c.options) {
      o.hidden = o.disabled = o.dataset.agent !== a.value;
      if (!o.hidden && !first) first = o;
    }
    if (c.selectedOptions.length === 0 || c.selectedOptions[0].hidden) c.value = first ? first.value : '';
  }
  document.addEventListener('change', (ev) => {
    const form = ev.target.form;
    if (!form) return;
    if (ev.target.matches('[data-kind-select]')) syncKinds(form);
    if (ev.target.matches('[data-agent-select]')) syncConnections(form);
    if (form.hasAttribute('data-query-form')) liveCheck(form);
  });
  document.addEventListener('input', (ev) => {
    const form = ev.target.form;
    if (form && form.hasAttribute('data-query-form')) liveCheck(form);
  });

  // Ctrl-Enter (Cmd-Enter on a Mac) runs the query from anywhere in its form.
  document.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Enter' || !(ev.ctrlKey || ev.metaKey)) return;
    const form = ev.target.closest && ev.target.closest('form[data-query-form]');
    if (!form) return;
    ev.preventDefault();
    form.requestSubmit(form.querySelector('[data-run]'));
  });

  // --- The query form's checks, in an analyst's words ------------------------------

  function field(form, name, kind) {
    for (const el of form.querySelectorAll('[name="' + name + '"]')) {
      const scope = el.closest('[data-kinds]');
      if (!scope || scope.dataset.kinds.split(' ').includes(kind)) return el;
    }
    return null;
  }

  function columns(text) {
    return text.split(',').map((s) => s.trim()).filter((s) => s);
  }

  // The kinds whose numbers take a format, a unit and decimals; those with a right axis.
  const FORMATTED = ['bar', 'line', 'area', 'scatter', 'pie', 'scalar'];
  const XY = ['line', 'area', 'scatter'];

  // What is wrong with the form for the chosen kind, as sentences (empty: nothing), each
  // also said beside its field. `all` also reports fields not yet filled in (on Run);
  // while typing only what is already wrong is said.
  function checkQuery(form, all) {
    const kind = form.querySelector('[data-kind-select]').value;
    const out = [];
    const bad = new Map();
    const wrong = (name, what) => {
      if (!out.includes(what)) out.push(what);
      if (!bad.has(name)) bad.set(name, what);
    };
    const raw = (name) => { const el = field(form, name, kind); return el ? el.value : ''; };
    const val = (name) => raw(name).trim();
    const need = (name, what) => { if (all && !val(name)) wrong(name, what); };
    if (all && !form.querySelector('[name=sql]').value.trim()) wrong('sql', 'Write the SQL to run.');
    if (['bar', ...XY].includes(kind)) {
      need('render.x', 'Choose the column for the X axis.');
      const y = columns(val('render.y'));
      if (all && y.length === 0) wrong('render.y', 'Choose at least one column for the Y axis.');
      if (y.length > 10) wrong('render.y', 'Choose at most 10 columns for the Y axis.');
      const y2 = XY.includes(kind) ? columns(val('render.y2')) : [];
      if (y2.length && y.length + y2.length > 10) {
        wrong('render.y2', 'The Y axis and right axis columns can be at most 10 together (one colour each).');
      }
      const series = val('render.series');
      if (series && y.length > 1) wrong('render.series', 'With a series column, choose exactly one Y column.');
      if (series && (series === val('render.x') || y.includes(series))) {
        wrong('render.series', 'The series column must differ from the X and Y columns.');
      }
    } else if (kind === 'pie') {
      need('render.label', 'Choose the column that names the slices.');
      need('render.value', 'Choose the column that sizes the slices.');
    } else if (kind === 'scalar') {
      need('render.column', 'Choose the column whose value is shown.');
    }
    if (FORMATTED.includes(kind)) {
      const d = val('render.decimals');
      if (d && !(/^\d+$/.test(d) && Number(d) <= 10)) wrong('render.decimals', 'Decimals must be a whole number from 0 to 10.');
      const unit = raw('render.unit');
      const format = val('render.format');
      if ([...unit].length > 16) wrong('render.unit', 'The unit can be at most 16 characters.');
      else if (format === 'currency' && !/^[A-Z]{3}$/.test(unit)) {
        wrong('render.unit', 'A currency needs its three-letter code in capitals as the unit, such as EUR or USD.');
      } else if (format === 'percent' && unit) {
        wrong('render.unit', 'A percentage adds the % sign itself: leave the unit empty, or choose another format.');
      }
    }
    for (const name of ['render.max_rows', 'render.max_points']) {
      const n = val(name);
      if (n && !(/^\d+$/.test(n) && Number(n) >= 1)) wrong(name, 'Most rows and most points must be whole numbers of at least 1.');
    }
    try {
      parseParams(form.querySelector('[name=params]').value, 'Parameters');
    } catch (err) {
      wrong('params', err.message + '.');
    }
    form.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
    form.querySelectorAll('[data-field-error]').forEach((el) => { el.textContent = ''; });
    for (const [name, what] of bad) {
      const el = name === 'sql' || name === 'params' ? form.querySelector('[name=' + name + ']') : field(form, name, kind);
      if (!el) continue;
      el.setAttribute('aria-invalid', 'true');
      const note = el.closest('label') && el.closest('label').querySelector('[data-field-error]');
      if (note) note.textContent = what;
    }
    return out;
  }

  function liveCheck(form) {
    const out = form.querySelector('[data-run-output]');
    const problems = checkQuery(form, false);
    if (problems.length) {
      out.textContent = problems.join(' ');
      out.className = 'error';
    } else if (out.className === 'error') {
      out.textContent = '';
    }
  }

  // The API's refusal of a run, said for an analyst. The API names the field
  // (`render.y: must name at least one column`); the rest passes through as it is.
  function friendly(message) {
    const words = [
      [/^render\.y: must name at least one column/, 'Choose at least one column for the Y axis.'],
      [/^render: missing field `x`/, 'Choose the column for the X axis.'],
      [/^render: missing field `y`/, 'Choose at least one column for the Y axis.'],
      [/^render: missing field `label`/, 'Choose the column that names the slices.'],
      [/^render: missing field `value`/, 'Choose the column that sizes the slices.'],
      [/^render: missing field `column`/, 'Choose the column whose value is shown.'],
      [/^render\.decimals: /, 'Decimals must be a whole number from 0 to 10.'],
      [/^render\.unit: a currency format/, 'A currency needs its three-letter code in capitals as the unit, such as EUR or USD.'],
      [/^render\.unit: a percent format/, 'A percentage adds the % sign itself: leave the unit empty, or choose another format.'],
      [/^render\.unit: /, 'The unit can be at most 16 characters.'],
      [/^render\.y2: /, 'The Y axis and right axis columns can be at most 10 together (one colour each).'],
      [/^render\.(\w+): unknown field/, 'This kind of chart has no option "$1".'],
      [/^render\.series: /, 'The series column needs exactly one Y column, different from the X column.'],
      [/^sql: /, 'The SQL cannot be run: '],
      [/^params\[(\d+)\]: /, (m, i) => 'Parameter ' + (Number(i) + 1) + ' is not valid: '],
      [/^connection .* is not shared with you/, 'This connection is not shared with you; ask an admin to share it.'],
    ];
    for (const [re, say] of words) {
      const m = message.match(re);
      if (!m) continue;
      const head = typeof say === 'function' ? say(...m) : say.replace('$1', m[1] || '');
      return head.endsWith(': ') ? head + message.slice(m[0].length) : head;
    }
    return message;
  }

  // Re-run: the job's spec, dispatched again as a new job (the API checks the caller may
  // still run it on that connection), then its page.
  async function rerun(id) {
    const spec = await api('GET', '/v1/jobs/' + encodeURIComponent(id) + '/spec');
    const body = { agent: spec.pool ? 'pool:' + spec.pool : spec.agent, connection: spec.connection, sql: spec.sql,
      params: spec.params || [], render: spec.render, cache: spec.cache };
    if (spec.timeout_secs) body.timeout_secs = spec.timeout_secs;
    const job = await api('POST', '/v1/jobs', body);
    window.location.assign('/console/jobs/' + encodeURIComponent(job.id));
  }

  // PNG: the chart on the page (already sanitised by the server) drawn into a canvas at
  // twice its size on white, then saved. The SVG goes in as a data: URL (the CSP allows
  // images from data:, and such an image leaves the canvas readable).
  function png(button) {
    const svg = button.closest('[data-result], section, main').querySelector('figure.chart svg');
    if (!svg) return Promise.reject(new Error('no chart'));
    const box = svg.viewBox && svg.viewBox.baseVal && svg.viewBox.baseVal.width ? svg.viewBox.baseVal : svg.getBBox();
    const copy = svg.cloneNode(true);
    copy.setAttribute('xmlns', 'http://www.w3.org/2000/svg');
    copy.setAttribute('width', box.width);
    copy.setAttribute('height', box.height);
    const url = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(new XMLSerializer().serializeToString(copy));
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onerror = () => reject(new Error('the chart cannot be drawn'));
      img.onload = () => {
        const scale = 2;
        const canvas = document.createElement('canvas');
        canvas.width = Math.ceil(box.width * scale);
        canvas.height = Math.ceil(box.height * scale);
        const g = canvas.getContext('2d');
        g.fillStyle = '#ffffff';
        g.fillRect(0, 0, canvas.width, canvas.height);
        g.drawImage(img, 0, 0, canvas.width, canvas.height);
        canvas.toBlob((blob) => {
          if (!blob) { reject(new Error('the browser cannot make a PNG')); return; }
          const a = document.createElement('a');
          a.href = URL.createObjectURL(blob);
          a.download = (button.dataset.png || 'chart') + '.png';
          document.body.append(a);
          a.click();
          a.remove();
          setTimeout(() => URL.revokeObjectURL(a.href), 10000);
          resolve();
        }, 'image/png');
      };
      img.src = url;
    });
  }

  // A job section follows its job: long-poll the API until the state changes, then show
  // the server-rendered result.
  async function watch(section) {
    const id = section.dataset.job;
    const status = section.querySelector('[data-status]');
    let state = section.dataset.state;
    let failures = 0;
    while (!FINAL.includes(state)) {
      try {
        const j = await api('GET', '/v1/jobs/' + encodeURIComponent(id) + '?wait=25&state=' + encodeURIComponent(state));
        failures = 0;
        state = j.state;
        section.dataset.state = state;
        status.textContent = state;
        status.className = 'status ' + state;
      } catch (err) {
        if (err.status === 401 || err.status === 403 || err.status === 404) {
          status.textContent = err.message;
          return;
        }
        await backoff(failures++);
      }
    }
    const cancel = section.querySelector('[data-cancel]');
    if (cancel) cancel.remove();
    const res = await fetch('/console/jobs/' + encodeURIComponent(id) + '/result', { credentials: 'same-origin' });
    const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
    section.querySelector('[data-result]').replaceChildren(...doc.body.childNodes);
    section.dataset.ready = 'true';
  }

  // What dashboard.js (the dashboard editor, "Add to project") uses of this file.
  window.outpostConsole = Object.freeze({ api, formBody, checkQuery, friendly });

  document.addEventListener('DOMContentLoaded', () => {
    // After single sign-on: continue from our own page, so the browser sends the
    // SameSite=Strict session cookie with the next request.
    const follow = document.querySelector('a[data-autofollow]');
    if (follow) window.location.replace(follow.href);
    document.querySelectorAll('form').forEach((f) => { syncKinds(f); syncConnections(f); });
    // Only our own sections: an agent's SVG may carry data-* attributes of its own.
    document.querySelectorAll('section.job[data-job]').forEach((s) => {
      if (FINAL.includes(s.dataset.state)) s.dataset.ready = 'true';
      else watch(s);
    });
  });
})();
