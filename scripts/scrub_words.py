#!/usr/bin/env python3
"""Writes agent/src/scrub/words.txt: the words of the database servers' message templates.

The agent's error scrubber (agent/src/scrub) keeps a word of a database's error message
only if it is one of these words or occurs in the job's own SQL. The words come from:

- PostgreSQL: the original (English) strings of its message catalogues
  (/usr/share/locale/*/LC_MESSAGES/postgres-15.mo, Debian's postgresql-15 package);
- MariaDB: its English error messages (/usr/share/mysql/english/errmsg.sys);
- SQLite: the format strings of sqlite3.c bundled with libsqlite3-sys.

A word is [A-Za-z][A-Za-z0-9_]* after printf conversions are removed, lower-cased.
Missing words make messages terser, never leakier. Run from the repository root:

    python3 scripts/scrub_words.py
"""
import collections
import glob
import re
import os
import struct


def mo_msgids(path):
    data = open(path, 'rb').read()
    magic = struct.unpack('<I', data[:4])[0]
    e = '<' if magic == 0x950412de else '>'
    _, _, n, originals, _ = struct.unpack(e + '5I', data[:20])
    out = []
    for i in range(n):
        length, off = struct.unpack(e + '2I', data[originals + 8 * i: originals + 8 * i + 8])
        out.append(data[off:off + length].decode('utf-8', 'replace'))
    return out


def main():
    messages = []
    for path in glob.glob('/usr/share/locale/*/LC_MESSAGES/postgres-15.mo'):
        for m in mo_msgids(path):
            messages.extend(m.split('\x00'))  # plural forms
    raw = open('/usr/share/mysql/english/errmsg.sys', 'rb').read()
    messages.extend(s.decode('utf-8', 'replace') for s in raw.split(b'\x00') if len(s) > 3)
    cargo = os.environ.get('CARGO_HOME', os.path.expanduser('~/.cargo'))
    sqlite = glob.glob(f'{cargo}/registry/src/*/libsqlite3-sys-*/sqlite3/sqlite3.c')
    src = open(sorted(sqlite)[-1], encoding='latin-1').read()
    call = r'(?:ErrorMsg|result_error|mprintf|MPrintf|zErr\w*\s*=|NestedParse)\s*\(?[^;"]*?((?:"(?:[^"\\\n]|\\.)*"\s*)+)'
    for m in re.finditer(call, src):
        messages.append(''.join(re.findall(r'"((?:[^"\\\n]|\\.)*)"', m.group(1))))
    words = collections.Counter()
    for m in messages:
        m = re.sub(r'%[-+ #0-9.*]*(?:l|ll|z|h|q|Q|w)?[a-zA-Z%]', ' ', m)
        for w in re.findall(r'[A-Za-z][A-Za-z0-9_]*', m):
            words[w.lower()] += 1
    with open('agent/src/scrub/words.txt', 'w') as f:
        f.write('\n'.join(sorted(words)) + '\n')
    print(f'{len(words)} words from {len(messages)} messages')


if __name__ == '__main__':
    main()
