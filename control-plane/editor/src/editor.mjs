// The query page's SQL editor: CodeMirror 6 over the page's own <textarea name="sql">.
//
// Progressive enhancement: the textarea stays the form's field (without this script the
// page works as a plain textarea). This script puts the editor in its place, hides the
// textarea from view and keeps the two equal both ways: every change in the editor is
// written to the textarea with an `input` event (console.js checks the form on it), and
// a script that sets the textarea and fires `input` updates the editor.
//
// - SQL highlighting in the connection's dialect when the page knows it
//   (`window.outpostSchema.dialect`, or `data-dialect` on the chosen connection's
//   <option>: postgres, mysql, mariadb, sqlite), else standard SQL; line numbers,
//   bracket matching, undo/redo history.
// - Ctrl-Enter / Cmd-Enter: the editor leaves the key to console.js's one handler on the
//   document, which runs the query (CodeMirror's own Mod-Enter, "insert blank line", is
//   switched off).
// - Autocomplete: SQL keywords always; tables and columns from
//   `window.outpostSchema = {tables: {name: [column, …]}}` (a column may also be
//   `{name, type, masked}`), read at start and again on each `outpost:schema` event on document.
//   `table.` offers that table's columns; a bare word also offers every column.
// - `outpost:insert` (a CustomEvent whose detail is text) on the textarea inserts the
//   text at the editor's cursor; the editor calls preventDefault() on it, so a sender
//   can tell it was handled.
// - Keyboard: Tab is not taken (it moves on to the next field, as in a textarea), so
//   the editor never traps focus; the editor is labelled by the textarea's label.
import { EditorView, keymap, lineNumbers, highlightActiveLineGutter, highlightSpecialChars, drawSelection }
  from '@codemirror/view';
import { EditorState, Compartment, Prec } from '@codemirror/state';
import { defaultKeymap, history, historyKeymap } from '@codemirror/commands';
import { syntaxHighlighting, defaultHighlightStyle, bracketMatching, indentOnInput } from '@codemirror/language';
import { autocompletion, completionKeymap, closeBrackets, closeBracketsKeymap } from '@codemirror/autocomplete';
import { sql, StandardSQL, PostgreSQL, MySQL, MariaSQL, SQLite } from '@codemirror/lang-sql';

const DIALECTS = {
  postgres: PostgreSQL, postgresql: PostgreSQL, pg: PostgreSQL,
  mysql: MySQL, mariadb: MariaSQL, sqlite: SQLite,
};

// A column's type, and whether the agent masks it, beside its name in the list.
function columnDetail(c) {
  const parts = [c.type ? String(c.type) : '', c.masked === true ? 'masked' : ''].filter((p) => p);
  return parts.length ? parts.join(' · ') : undefined;
}

// The tables of `window.outpostSchema`, as lang-sql's schema: {table: [completion]}.
function schemaTables() {
  const s = window.outpostSchema;
  const tables = {};
  if (!s || typeof s.tables !== 'object' || s.tables === null) return tables;
  for (const [name, cols] of Object.entries(s.tables)) {
    tables[name] = (Array.isArray(cols) ? cols : []).map((c) => (typeof c === 'string'
      ? { label: c, type: 'property' }
      : { label: String(c.name), type: 'property', detail: columnDetail(c) }));
  }
  return tables;
}

function dialectOf(form) {
  const s = window.outpostSchema;
  let name = s && (s.dialect || s.kind);
  if (!name) {
    const conn = form.querySelector('[data-connection-select]');
    const opt = conn && conn.selectedOptions[0];
    name = opt && opt.dataset.dialect;
  }
  return DIALECTS[String(name || '').toLowerCase()] || StandardSQL;
}

// Every column of every table for a bare word (`SELECT reg|`), after the keywords and
// tables lang-sql offers; `orders.` is lang-sql's own (that table's columns).
function bareColumns(tables) {
  const byName = new Map();
  for (const [table, cols] of Object.entries(tables)) {
    for (const c of cols) {
      if (!byName.has(c.label)) byName.set(c.label, { ...c, tables: [] });
      byName.get(c.label).tables.push(table);
    }
  }
  const options = [...byName.values()].map(({ tables: ts, ...c }) => ({
    ...c, detail: (c.detail ? c.detail + ' · ' : '') + ts.join(', '), boost: -1,
  }));
  return (ctx) => {
    const word = ctx.matchBefore(/[\w$]+/);
    if (!options.length || (!word && !ctx.explicit)) return null;
    const from = word ? word.from : ctx.pos;
    if (from > 0 && /[.\w"`]/.test(ctx.state.sliceDoc(from - 1, from))) return null;
    return { from, options, validFor: /^[\w$]*$/ };
  };
}

function language(form) {
  const tables = schemaTables();
  const dialect = dialectOf(form);
  return [
    sql({ dialect, schema: tables, upperCaseKeywords: true }),
    dialect.language.data.of({ autocomplete: bareColumns(tables) }),
  ];
}

function mount(textarea) {
  const form = textarea.form;
  const label = textarea.closest('label');
  const labelText = ((label ? label.firstChild && label.firstChild.textContent : '') || 'SQL').trim() || 'SQL';
  const lang = new Compartment();
  let fromTextarea = false;

  const view = new EditorView({
    state: EditorState.create({
      doc: textarea.value,
      extensions: [
        lineNumbers(),
        highlightActiveLineGutter(),
        highlightSpecialChars(),
        history(),
        drawSelection(),
        indentOnInput(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        bracketMatching(),
        closeBrackets(),
        autocompletion({ activateOnTyping: true }),
        lang.of(language(form)),
        EditorView.lineWrapping,
        // Mod-Enter is console.js's (it runs the query): the editor takes no action on it
        // and lets the key event reach the document.
        Prec.highest(keymap.of([{ key: 'Mod-Enter', run: () => true }])),
        keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap, ...completionKeymap]),
        EditorView.contentAttributes.of({
          'aria-label': labelText,
          ...(textarea.getAttribute('aria-describedby')
            ? { 'aria-describedby': textarea.getAttribute('aria-describedby') } : {}),
        }),
        EditorView.theme({
          // console.css's colours (its custom properties reach the editor) and focus ring.
          '&': { border: '1px solid #9aa3b2', borderRadius: '4px', background: 'var(--bg, #fff)', fontSize: '.9rem' },
          '&.cm-focused': { outline: '3px solid #ffb000', outlineOffset: '2px' },
          '.cm-scroller': { fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, monospace', minHeight: '10em' },
          '.cm-content': { minHeight: '10em' },
          '.cm-gutters': { background: 'var(--panel, #f4f6f9)', color: 'var(--muted, #5b6475)',
            borderRight: '1px solid var(--line, #d5dae2)' },
          '&[aria-invalid=true]': { borderColor: 'var(--bad, #b3261e)', boxShadow: '0 0 0 1px var(--bad, #b3261e)' },
        }),
        EditorView.updateListener.of((u) => {
          if (!u.docChanged || fromTextarea) return;
          textarea.value = u.state.doc.toString();
          textarea.dispatchEvent(new Event('input', { bubbles: true }));
        }),
      ],
    }),
  });

  // In the textarea's place: the editor, then the textarea (kept in the form, out of
  // sight, out of the tab order and the accessibility tree; set by CSSOM, which the CSP
  // allows).
  const wrap = document.createElement('div');
  wrap.className = 'sql-editor';
  wrap.dataset.sqlEditor = '';
  wrap.style.position = 'relative';
  (label || textarea).after(wrap);
  wrap.append(view.dom, textarea);
  Object.assign(textarea.style, {
    position: 'absolute', left: '0', bottom: '0', width: '1px', height: '1px',
    opacity: '0', pointerEvents: 'none', overflow: 'hidden', padding: '0', border: '0',
  });
  textarea.tabIndex = -1;
  textarea.setAttribute('aria-hidden', 'true');
  if (label) label.addEventListener('click', (ev) => { ev.preventDefault(); view.focus(); });

  // A script that sets the textarea (and says so with `input`) sets the editor.
  textarea.addEventListener('input', () => {
    const text = textarea.value;
    if (text === view.state.doc.toString()) return;
    fromTextarea = true;
    try {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    } finally {
      fromTextarea = false;
    }
  });
  textarea.addEventListener('outpost:insert', (ev) => {
    if (typeof ev.detail !== 'string') return;
    ev.preventDefault();
    view.dispatch(view.state.replaceSelection(ev.detail), { scrollIntoView: true });
    view.focus();
  });
  // console.js marks a field it finds wrong with aria-invalid: show it on the editor.
  new MutationObserver(() => {
    const bad = textarea.getAttribute('aria-invalid');
    if (bad) {
      view.dom.setAttribute('aria-invalid', bad);
      view.contentDOM.setAttribute('aria-invalid', bad);
    } else {
      view.dom.removeAttribute('aria-invalid');
      view.contentDOM.removeAttribute('aria-invalid');
    }
  }).observe(textarea, { attributes: true, attributeFilter: ['aria-invalid'] });

  const reconfigure = () => view.dispatch({ effects: lang.reconfigure(language(form)) });
  document.addEventListener('outpost:schema', reconfigure);
  const conn = form && form.querySelector('[data-connection-select]');
  if (conn) conn.addEventListener('change', reconfigure);
  return view;
}

function start() {
  const textarea = document.querySelector('form[data-query-form] textarea[name="sql"]');
  if (!textarea || textarea.dataset.enhanced) return;
  textarea.dataset.enhanced = 'editor';
  window.outpostEditor = mount(textarea);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
