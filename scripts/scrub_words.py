import re, struct, glob, subprocess, collections
def mo_msgids(path):
    data = open(path,'rb').read()
    magic = struct.unpack('<I', data[:4])[0]
    e = '<' if magic == 0x950412de else '>'
    _, _, n, oo, _to = struct.unpack(e+'5I', data[:20])
    out = []
    for i in range(n):
        l, off = struct.unpack(e+'2I', data[oo+8*i: oo+8*i+8])
        out.append(data[off:off+l].decode('utf-8','replace'))
    return out
msgs = {'pg': [], 'maria': [], 'sqlite': []}
ids = set()
for p in glob.glob('/usr/share/locale/*/LC_MESSAGES/postgres-15.mo'):
    for m in mo_msgids(p):
        for part in m.split('\x00'):  # plural forms
            ids.add(part)
msgs['pg'] = list(ids)
raw = open('/usr/share/mysql/english/errmsg.sys','rb').read()
msgs['maria'] = [s.decode('utf-8','replace') for s in raw.split(b'\x00') if len(s) > 3]
src = open(glob.glob('/root/.cargo/registry/src/*/libsqlite3-sys-0.40.0/sqlite3/sqlite3.c')[0], encoding='latin-1').read()
for m in re.finditer(r'(?:ErrorMsg|result_error|mprintf|MPrintf|zErr\w*\s*=|NestedParse)\s*\(?[^;"]*?((?:"(?:[^"\\\n]|\\.)*"\s*)+)', src):
    s = re.findall(r'"((?:[^"\\\n]|\\.)*)"', m.group(1))
    msgs['sqlite'].append(''.join(s))
words = collections.Counter()
src_of = collections.defaultdict(set)
for k, ms in msgs.items():
    for m in ms:
        m = re.sub(r'%[-+ #0-9.*]*(?:l|ll|z|h|q|Q|w)?[a-zA-Z%]', ' ', m)
        for w in re.findall(r'[A-Za-z][A-Za-z0-9_]*', m):
            w = w.lower()
            words[w] += 1; src_of[w].add(k)
print(len(msgs['pg']), len(msgs['maria']), len(msgs['sqlite']), len(words))
ws = sorted(words)
open('words.txt','w').write('\n'.join(ws) + '\n')
