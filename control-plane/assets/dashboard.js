// Outpost console: editing a project's dashboard, and the query page's "Add to project" /
// "Save to project" (issue 23, docs/DASHBOARDS.md "Layout and editing").
//
// - "Edit dashboard" gives each tile its controls: width and height, move earlier / later
//   (buttons, so the keyboard does it all; a drag handle for the mouse), remove, and edit (a text in place; a query on
//   the Query page). "Add text tile" appends a text. Save sends one PUT of the whole
//   project (its queries, less those removed, and its tiles in order); Cancel discards.
// - On the query page, "Add to project" appends the form's query to the chosen project
//   (the API gives it a tile at the end) and "Save to project" replaces the query the page
//   was opened for; both read the project, change its queries and send one PUT. With it,
//   the query's Filters (a select per parameter position) become its `bind`.
// Errors are said next to the control they are about, in the user's words. Nothing here
// builds HTML from strings: elements are created and text is set as text.
'use strict';

(function () {
  const C = window.outpostConsole;
  const COLUMNS = 12;
  const MAX_H = 4;
  const MAX_TEXT = 2000;
  const WIDTHS = { 3: 'quarter', 4: 'third', 6: 'half', 8: 'two thirds', 12: 'full width' };

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function enc(s) {
    return encodeURIComponent(s);
  }

  // A project query as a PUT takes it back: without the index GET adds.
  function bare(q) {
    const out = Object.assign({}, q);
    delete out.index;
    return out;
  }

  // ---------------------------------------------------------------- the dashboard --

  const bar = document.querySelector('[data-dashboard-bar]');
  const grid = document.querySelector('.tiles');
  const pid = bar && bar.dataset.dashboardBar;
  let project = null;
  let dirty = false;

  function tiles() {
    return [...grid.querySelectorAll(':scope > [data-tile]')];
  }

  function tileName(t) {
    if (t.hasAttribute('data-text')) {
      const text = t.querySelector('textarea') ? t.querySelector('textarea').value : t.querySelector('.tile-text').textContent;
      return 'text “' + (text.length > 30 ? text.slice(0, 30) + '…' : text) + '”';
    }
    const h = t.querySelector('h2');
    return 'query “' + (h && h.firstChild ? h.firstChild.textContent.trim() : '') + '”';
  }

  function tell(text, ok) {
    const out = bar.querySelector('[data-dashboard-output]');
    out.textContent = text;
    out.className = ok ? 'ok' : 'error';
  }

  // The problem of one tile, said in the tile beside its controls.
  function tileError(t, text) {
    const note = t.querySelector('[data-tile-error]');
    if (note) note.textContent = text;
    t.toggleAttribute('data-invalid', !!text);
  }

  function setSize(t, key, n) {
    t.classList.remove(key + '-' + t.dataset[key]);
    t.dataset[key] = String(n);
    t.classList.add(key + '-' + n);
    dirty = true;
  }

  function sizeSelect(t, key) {
    const label = el('label', { class: 'tile-size' }, key === 'w' ? 'Width ' : 'Height ');
    const sel = el('select', { 'data-tile-size': key });
    const max = key === 'w' ? COLUMNS : MAX_H;
    for (let n = 1; n <= max; n++) {
      const words = key === 'w' ? n + ' of 12' + (WIDTHS[n] ? ' (' + WIDTHS[n] + ')' : '') : n + (n === 1 ? ' row' : ' rows');
      const o = el('option', { value: String(n) }, words);
      if (String(n) === t.dataset[key]) o.selected = true;
      sel.append(o);
    }
    sel.addEventListener('change', () => setSize(t, key, Number(sel.value)));
    label.append(sel);
    return label;
  }

  function textEditor(t) {
    const p = t.querySelector('.tile-text');
    const label = el('label', { class: 'tile-text-edit' }, 'Text ');
    const area = el('textarea', { rows: 3, maxLength: MAX_TEXT, 'data-tile-text': '' });
    area.value = p ? p.textContent : '';
    area.addEventListener('input', () => {
      if (p) p.textContent = area.value;
      dirty = true;
      tileError(t, '');
    });
    label.append(area);
    return label;
  }

  // Moves tile t one place earlier (-1) or later (+1), keeping the focus on the button.
  function move(t, by, button) {
    const all = tiles();
    const i = all.indexOf(t);
    const j = i + by;
    if (j < 0 || j >= all.length) {
      tell('The ' + tileName(t) + ' is already ' + (by < 0 ? 'first.' : 'last.'), true);
      return;
    }
    if (by < 0) all[j].before(t);
    else all[j].after(t);
    dirty = true;
    button.focus();
    tell('Moved the ' + tileName(t) + ' to place ' + (j + 1) + ' of ' + all.length + '.', true);
  }

  // Dragging a tile by its handle onto another puts it before that one (after it when
  // dropped on its later half); the Move buttons do the same by keyboard.
  let dragged = null;
  function draggable(t) {
    const handle = el('span', { class: 'tile-handle', 'data-tile-handle': '', draggable: true, title: 'Drag to move' }, '⠿');
    handle.setAttribute('aria-hidden', 'true');
    handle.addEventListener('dragstart', (ev) => {
      dragged = t;
      ev.dataTransfer.effectAllowed = 'move';
      ev.dataTransfer.setData('text/plain', '');
      ev.dataTransfer.setDragImage(t, 10, 10);
    });
    handle.addEventListener('dragend', () => { dragged = null; });
    t.addEventListener('dragover', (ev) => {
      if (dragged && dragged !== t) ev.preventDefault();
    });
    t.addEventListener('drop', (ev) => {
      if (!dragged || dragged === t) return;
      ev.preventDefault();
      const r = t.getBoundingClientRect();
      const later = r.width >= grid.clientWidth * 0.9 ? ev.clientY > r.top + r.height / 2 : ev.clientX > r.left + r.width / 2;
      if (later) t.after(dragged);
      else t.before(dragged);
      dirty = true;
      tell('Moved the ' + tileName(dragged) + ' to place ' + (tiles().indexOf(dragged) + 1) + ' of ' + tiles().length + '.', true);
      dragged = null;
    });
    return handle;
  }

  function tools(t) {
    const box = el('div', { class: 'tile-tools', 'data-tile-tools': '' });
    box.append(draggable(t), sizeSelect(t, 'w'), sizeSelect(t, 'h'));
    const name = tileName(t);
    const button = (text, attr, onClick) => {
      const b = el('button', { type: 'button', [attr]: '' }, text);
      b.setAttribute('aria-label', text + ': ' + name);
      b.addEventListener('click', () => onClick(b));
      return b;
    };
    box.append(
      button('Move earlier', 'data-tile-earlier', (b) => move(t, -1, b)),
      button('Move later', 'data-tile-later', (b) => move(t, 1, b)),
    );
    if (t.hasAttribute('data-text')) {
      box.append(textEditor(t));
    } else {
      const edit = el('a', { class: 'button', 'data-tile-edit': '', href: '/console/query?project=' + enc(pid) + '&index=' + t.dataset.query }, 'Edit query');
      edit.setAttribute('aria-label', 'Edit the ' + name + ' on the Query page');
      edit.addEventListener('click', (ev) => {
        if (!dirty) return;
        if (window.confirm('Leave without saving the dashboard’s layout?')) dirty = false;
        else ev.preventDefault();
      });
      box.append(edit);
    }
    box.append(button('Remove', 'data-tile-remove', () => {
      const next = t.nextElementSibling || t.previousElementSibling;
      t.remove();
      dirty = true;
      tell('Removed the ' + name + '; Save to keep the change, Cancel to undo it.', true);
      const focus = next && next.querySelector('[data-tile-remove]');
      (focus || bar.querySelector('[data-dashboard-save]')).focus();
    }));
    box.append(el('span', { class: 'field-error', 'data-tile-error': '', 'aria-live': 'polite' }));
    t.prepend(box);
  }

  function addText() {
    const t = el('section', { class: 'note tile w-12 h-1', 'data-tile': '', 'data-text': '', 'data-w': '12', 'data-h': '1' });
    t.append(el('p', { class: 'tile-text' }, ''));
    grid.append(t);
    tools(t);
    dirty = true;
    t.querySelector('textarea').focus();
  }

  async function edit() {
    tell('Loading…', true);
    project = await C.api('GET', '/v1/projects/' + enc(pid));
    if (!project.queries.every((q) => typeof q.sql === 'string')) {
      throw new Error('Your access to this project does not show its queries, so its dashboard cannot be edited.');
    }
    tiles().forEach(tools);
    grid.dataset.editing = 'true';
    bar.querySelectorAll('[data-edit-only]').forEach((b) => { b.hidden = false; });
    const toggle = bar.querySelector('[data-dashboard-edit]');
    toggle.hidden = true;
    toggle.setAttribute('aria-pressed', 'true');
    tell('Editing: change the tiles, then Save dashboard.', true);
    const first = grid.querySelector('[data-tile-tools] select');
    if (first) first.focus();
  }

  // The PUT body of the edited dashboard, or a problem said beside its tile.
  function body() {
    const kept = [];
    const newIndex = new Map();
    const shown = new Set(tiles().filter((t) => t.dataset.query !== undefined).map((t) => Number(t.dataset.query)));
    project.queries.forEach((q) => {
      if (shown.has(q.index)) {
        newIndex.set(q.index, kept.length);
        kept.push(bare(q));
      }
    });
    if (kept.length === 0) {
      throw new Error('A dashboard keeps at least one query tile: add one back with Cancel, or delete the project.');
    }
    let problem = null;
    const out = tiles().map((t) => {
      const size = { w: Number(t.dataset.w), h: Number(t.dataset.h) };
      if (t.dataset.query !== undefined) return Object.assign({ query: newIndex.get(Number(t.dataset.query)) }, size);
      const text = t.querySelector('[data-tile-text]').value;
      if (!text.trim()) problem = problem || [t, 'Write the text, or remove this tile.'];
      else if ([...text].length > MAX_TEXT) problem = problem || [t, 'A text tile holds at most ' + MAX_TEXT + ' characters.'];
      return Object.assign({ text }, size);
    });
    if (problem) {
      tileError(problem[0], problem[1]);
      problem[0].querySelector('textarea').focus();
      throw new Error('One tile needs a change before the dashboard can be saved (said on the tile).');
    }
    return { name: project.name, queries: kept, tiles: out };
  }

  // The API names the tile (`tiles[3].w: …`): said on that tile, in plain words.
  function apiError(message) {
    const m = message.match(/^tiles\[(\d+)\]\.?(\w*): (.*)$/);
    if (!m) return message;
    const t = tiles()[Number(m[1])];
    const words = { w: 'Choose a width from 1 to 12 columns.', h: 'Choose a height from 1 to 4 rows.', text: 'This text cannot be saved: ' + m[3] };
    if (t) tileError(t, words[m[2]] || m[3]);
    return 'One tile cannot be saved (said on the tile).';
  }

  async function save() {
    grid.querySelectorAll('[data-tile-error]').forEach((n) => { n.textContent = ''; });
    const b = body();
    tell('Saving…', true);
    await C.api('PUT', '/v1/projects/' + enc(pid), b).catch((err) => {
      throw new Error(apiError(err.message));
    });
    dirty = false;
    window.location.reload();
  }

  function busy(button, work) {
    button.disabled = true;
    work().catch((err) => tell(err.message, false)).finally(() => { button.disabled = false; });
  }

  if (bar && grid && C) {
    bar.addEventListener('click', (ev) => {
      const b = ev.target.closest('button');
      if (!b) return;
      if (b.hasAttribute('data-dashboard-edit')) busy(b, edit);
      else if (b.hasAttribute('data-dashboard-add-text')) addText();
      else if (b.hasAttribute('data-dashboard-save')) busy(b, save);
      else if (b.hasAttribute('data-dashboard-cancel')) {
        dirty = false;
        window.location.reload();
      }
    });
    window.addEventListener('beforeunload', (ev) => {
      if (dirty) ev.preventDefault();
    });
  }

  // ------------------------------------------------- the query page's save buttons --

  const form = document.querySelector('form[data-query-form]');

  function saySave(text, ok) {
    const out = form.querySelector('[data-save-output]');
    out.textContent = text;
    out.className = ok ? 'ok' : 'error';
  }

  // The API's refusal of a project save, in the user's words; a binding's is said next
  // to its position's select too (`queries[0].bind.2: no parameter "regon" …`).
  function saveError(message) {
    if (/^queries: give 1 to (\d+)/.test(message)) return 'This project already has the most queries it can hold.';
    const b = message.match(/^queries\[\d+\]\.bind\.(\d+): (.*)$/);
    const at = b && form.querySelector('[data-bind-error="' + b[1] + '"]');
    if (at) {
      at.textContent = 'Parameter ' + b[1] + ': ' + b[2];
      return 'A filter binding cannot be saved (said next to it).';
    }
    const m = message.match(/^queries\[\d+\]\.(.*)$/);
    return C.friendly(m ? m[1] : message);
  }

  // index null: add the form's query to project projectId; else replace its query `index`.
  async function toProject(projectId, index) {
    form.querySelectorAll('[data-bind-error]').forEach((n) => { n.textContent = ''; });
    const problems = C.checkQuery(form, true);
    if (problems.length) throw new Error(problems.join(' '));
    const { body: q, extra } = C.formBody(form);
    const p = await C.api('GET', '/v1/projects/' + enc(projectId));
    if (!p.queries.every((x) => typeof x.sql === 'string')) {
      throw new Error('Your access to this project does not allow changing its queries.');
    }
    const queries = p.queries.map(bare);
    if (index === null) {
      q.name = extra._query_name || 'Query ' + (queries.length + 1);
      queries.push(q);
    } else {
      const old = queries[index];
      if (!old) throw new Error('This query is no longer in the project; add it instead.');
      q.name = extra._query_name || old.name;
      // What the form does not show is kept: the end-customer parameter, the timeout,
      // the parameters bound into positions (the API says so if the new SQL has fewer).
      if (old.customer_param) q.customer_param = old.customer_param;
      if (old.timeout_secs) q.timeout_secs = old.timeout_secs;
      if (old.bind) q.bind = old.bind;
      // The Filters part, when shown, says the bindings instead (bindings.js keeps its
      // selects in step with the SQL: a position removed from the SQL has none, and its
      // binding goes). Only positions past the most it offers keep their old binding.
      const part = form.querySelector('[data-bindings]');
      if (part) {
        const most = Number(part.dataset.maxPositions) || 50;
        const bind = {};
        part.querySelectorAll('select[data-bind-position]').forEach((s) => {
          if (s.value) bind[s.dataset.bindPosition] = s.value;
        });
        for (const [pos, target] of Object.entries(old.bind || {})) {
          if (Number(pos) > most) bind[pos] = target;
        }
        if (Object.keys(bind).length) q.bind = bind;
        else delete q.bind;
      }
      queries[index] = q;
    }
    // Tiles are left out: the layout is kept, and an added query gets a tile at the end.
    await C.api('PUT', '/v1/projects/' + enc(projectId), { name: p.name, queries }).catch((err) => {
      throw new Error(saveError(err.message));
    });
    window.location.assign('/console/projects/' + enc(projectId));
  }

  if (form && C) {
    form.addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-project-add], button[data-project-replace]');
      if (!b) return;
      const projectId = b.hasAttribute('data-project-add') ? form.querySelector('[data-project-select]').value : b.dataset.projectReplace;
      const index = b.hasAttribute('data-project-add') ? null : Number(b.dataset.index);
      b.disabled = true;
      saySave('Working…', true);
      toProject(projectId, index)
        .catch((err) => saySave(err.message, false))
        .finally(() => { b.disabled = false; });
    });
  }
})();
