// Outpost console: the query page's Filters part follows the SQL as it is edited (issue 23;
// docs/DASHBOARDS.md, "Filters"). The server renders one select per parameter position of
// the SQL as opened (control-plane/src/console/pages/bindings.rs) and a <template> of one
// position's row. Each change of the SQL (the `input` event of <textarea name="sql">,
// which the editor fires on every change it writes there) counts the positions again with
// the server's rules; rows for new positions are added from the template, rows for
// positions the SQL no longer has are removed, and the rows of positions that stay are not
// touched, so their choices are kept. A removed position's choice comes back if the
// position does. What changed is said in the fieldset's live region. dashboard.js reads
// the selects when "Save to project" sends the PUT.
'use strict';

(function () {
  const part = document.querySelector('[data-bindings]');
  const form = part && part.closest('form');
  const sql = form && form.querySelector('textarea[name="sql"]');
  const rows = part && part.querySelector('[data-bind-rows]');
  const template = part && part.querySelector('template[data-bind-template]');
  if (!sql || !rows || !template) return;
  const max = Number(part.dataset.maxPositions) || 50;
  // The largest usize: a longer `$N` is no position at all on the server (its parse fails).
  const USIZE_MAX = 18446744073709551615n;

  // How many parameter positions `text` has: its highest `$N`, or its count of `?`,
  // whichever is more, at most `max`; quoted text ('…', "…", `…`) and `--` comments are
  // passed over. The same rules as bindings.rs's `positions`.
  function positions(text) {
    let dollar = 0;
    let question = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (c === "'" || c === '"' || c === '`') {
        const end = text.indexOf(c, i + 1);
        i = end < 0 ? text.length : end;
      } else if (c === '-' && text[i + 1] === '-') {
        const end = text.indexOf('\n', i + 1);
        i = end < 0 ? text.length : end;
      } else if (c === '?') {
        question += 1;
      } else if (c === '$') {
        let j = i + 1;
        while (j < text.length && text[j] >= '0' && text[j] <= '9') j++;
        if (j > i + 1) {
          const n = BigInt(text.slice(i + 1, j));
          if (n <= USIZE_MAX) dollar = Math.max(dollar, Number(n > BigInt(max) ? BigInt(max) : n));
        }
        i = j - 1;
      }
    }
    return Math.min(Math.max(dollar, question), max);
  }

  const shown = () => [...rows.querySelectorAll(':scope > [data-bind-row]')];
  // Choices of positions removed while editing, by position.
  const remembered = new Map();

  // A row for position n, from the template, with `chosen` selected when it is offered.
  function row(n, chosen) {
    const r = template.content.firstElementChild.cloneNode(true);
    const pos = String(n);
    r.dataset.bindRow = pos;
    const label = r.querySelector('label');
    label.firstChild.textContent = 'Parameter ' + pos + ' ';
    const select = r.querySelector('select[data-bind-position]');
    select.dataset.bindPosition = pos;
    if (chosen && [...select.options].some((o) => o.value === chosen)) select.value = chosen;
    r.querySelector('[data-bind-error]').dataset.bindError = pos;
    return r;
  }

  function say(text) {
    const out = part.querySelector('[data-bind-status]');
    if (out) out.textContent = text;
  }

  function range(from, to) {
    return from === to ? 'Parameter ' + from : 'Parameters ' + from + ' to ' + to;
  }

  function follow() {
    const want = positions(sql.value);
    const now = shown();
    if (want === now.length) return;
    if (want < now.length) {
      for (const r of now.slice(want)) {
        const select = r.querySelector('select[data-bind-position]');
        if (select && select.value) remembered.set(r.dataset.bindRow, select.value);
        else remembered.delete(r.dataset.bindRow);
        r.remove();
      }
      say(range(want + 1, now.length) + ' removed: the SQL no longer has ' + (want + 1 === now.length ? 'it.' : 'them.'));
    } else {
      for (let n = now.length + 1; n <= want; n++) rows.append(row(n, remembered.get(String(n))));
      say(range(now.length + 1, want) + ' added: choose which filter fills ' + (now.length + 1 === want ? 'it.' : 'each.'));
    }
    const empty = part.querySelector('[data-no-positions]');
    if (empty) empty.hidden = want > 0;
  }

  sql.addEventListener('input', follow);
})();
