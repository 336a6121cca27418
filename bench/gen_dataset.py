#!/usr/bin/env python3
"""Deterministic backup-benchmark dataset, Lifeboat's own generator.

Used by bench/run when the shared harness (../shared/bench) is not present. It follows
the same recipe as the shared generator (same parts, sizes, character and day-2
mutation) so figures stay comparable, but it is an independent implementation: the
bytes differ from the shared generator's, the shape does not.

  gen_dataset.py create DIR [--seed 42] [--scale 1.0]   day 1 (prints JSON stats)
  gen_dataset.py mutate DIR                              day 1 -> day 2 in place
  gen_dataset.py verify EXPECTED ACTUAL                  byte-compare two trees (JSON)
  gen_dataset.py stats DIR

Parts at scale 1 (about 926 MiB, 20,012 files, ~9,000 directories):
  db/dumps/app_db.sql      239 MiB  pg_dump-style COPY text (customers/orders/events)
  db/dumps/app_db.1.sql    234 MiB  yesterday's dump, a near-duplicate
  db/pgdata/base/16384/*   4 x 32 MiB of 8 KiB heap-like pages
  logs/app.log             64 MiB access log
  media/blob_*.bin         4 x 32 MiB incompressible
  app/svcNN/...            168 MiB in 20,000 files: text (log-normal sizes, median
                           ~3 KiB), binary assets, 400 vendored files shared by
                           services, tiny and empty files
The mutation rotates the dump (a rename) and writes a new one (hot-region and scattered
updates, a deleted block, +2% rows), rewrites ~5% of pgdata pages in clustered runs and
appends 2% more, appends 4 MiB of log, adds a 16 MiB media blob, and modifies 5%,
deletes 2% and adds 2% of the small files. Only changed files are touched.
"""
import argparse
import hashlib
import json
import math
import os
import random
import sys

MiB = 1 << 20
DAY1 = 1767312000  # 2026-01-02T00:00:00Z
DAY = 86400
MASK = (1 << 64) - 1
MARKER = ".perfbench-root"  # the dataset root marker; also carries the generator state

FIRST = ["Anna", "Ben", "Carla", "Dmitri", "Eva", "Farid", "Greta", "Hugo", "Ines", "Jonas",
         "Kira", "Lars", "Mona", "Nils", "Olga", "Paul", "Quinn", "Rosa", "Sven", "Tara"]
LAST = ["Meyer", "Novak", "Okafor", "Petrov", "Quist", "Rossi", "Silva", "Tanaka", "Ueda",
        "Vogel", "Weber", "Xu", "Yilmaz", "Zeller", "Abbott", "Brandt", "Costa", "Dubois"]
CITIES = ["Berlin", "Lisbon", "Osaka", "Lagos", "Lima", "Oslo", "Quito", "Riga", "Tunis",
          "Perth", "Cork", "Graz", "Porto", "Leeds", "Turku", "Brno"]
STATUS = ["new", "paid", "packed", "shipped", "delivered", "returned", "cancelled"]
EVENTS = ["page_view", "add_to_cart", "checkout", "login", "logout", "search", "refund"]
PATHS = ["/", "/api/v1/orders", "/api/v1/customers", "/static/app.js", "/static/app.css",
         "/login", "/search", "/api/v1/events", "/health", "/checkout"]
WORDS = ("the a of to and in is for on with as by this that from config value return "
         "function import export class struct impl let const var if else match while for "
         "error result option string number list map request response handler service "
         "client server cache index update delete create select where order group limit "
         "timeout retry backoff metric label event queue worker job schedule policy").split()


def mix(*parts):
    """64-bit hash of integers (splitmix-style), deterministic across runs."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (p & MASK)) * 0xBF58476D1CE4E5B9 & MASK
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & MASK
        x ^= x >> 29
    return x


def set_mtime(path, t):
    os.utime(path, (t, t), follow_symlinks=False)


def write_file(path, data, t):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    set_mtime(path, t)


# ---------------------------------------------------------------- database dump

def dump_row(seed, table, rid, ver):
    x = mix(seed, table, rid, ver)
    ts = DAY1 - 400 * DAY + (rid * 37 + ver * 3600) % (400 * DAY)
    if table == 0:
        f, l = FIRST[x % 20], LAST[(x >> 8) % 18]
        return (f"{rid}\t{f} {l}\t{f.lower()}.{l.lower()}{(x >> 16) % 1000}@example.org\t"
                f"{CITIES[(x >> 26) % 16]}\t{ts}\n")
    if table == 1:
        return (f"{rid}\t{(x >> 4) % 50000 + 1}\t{(x >> 20) % 100000 / 100:.2f}\t"
                f"{STATUS[(x >> 40) % 7]}\t{ts}\t{ver}\n")
    return (f"{rid}\t{(x >> 4) % 400000 + 1}\t{EVENTS[(x >> 24) % 7]}\t"
            f"{{\"src\":\"web\",\"ms\":{(x >> 32) % 900},\"ok\":{'true' if x & 1 else 'false'}}}\t{ts}\n")


TABLES = [("customers", "(id, name, email, city, created_at)", 0.10),
          ("orders", "(id, customer_id, amount, status, created_at, rev)", 0.40),
          ("events", "(id, order_id, kind, payload, at)", 0.50)]


def dump_plan(seed, scale):
    """Rows per table on day 0 so that day 1's dump is ~239 MiB at scale 1."""
    rows = []
    for t, (_, _, share) in enumerate(TABLES):
        avg = sum(len(dump_row(seed, t, i, 0)) for i in range(1, 2001)) / 2000
        rows.append(max(10, int(239 * MiB * scale * share / 1.02 / avg)))
    return rows


def dump_state(seed, rows0, day):
    """Rows, row versions and deleted ranges of each table on `day` (0, 1, 2...)."""
    state = []
    for t, n0 in enumerate(rows0):
        n = int(n0 * 1.02 ** day)
        ver, deleted = {}, []
        for d in range(1, day + 1):
            r = random.Random(mix(seed, 77, t, d))
            nd = int(n0 * 1.02 ** d)
            if t == 1:  # hot region: the newest 5% of orders change status
                lo = int(nd * 0.95)
                for i in range(lo, nd, 3):
                    ver[i] = d
            for _ in range(32):  # scattered single-row updates
                ver[r.randrange(1, nd)] = d
            start = r.randrange(1, max(2, nd - 2000))
            deleted.append((start, start + min(1500, nd // 500)))
        state.append((n, ver, deleted))
    return state


def write_dump(path, seed, rows0, day, t):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n"
                "SET client_encoding = 'UTF8';\n\n")
        for ti, (n, ver, deleted) in enumerate(dump_state(seed, rows0, day)):
            name, cols, _ = TABLES[ti]
            f.write(f"COPY public.{name} {cols} FROM stdin;\n")
            buf = []
            for rid in range(1, n + 1):
                if any(a <= rid < b for a, b in deleted):
                    continue
                buf.append(dump_row(seed, ti, rid, ver.get(rid, 0)))
                if len(buf) >= 4096:
                    f.write("".join(buf))
                    buf.clear()
            f.write("".join(buf))
            f.write("\\.\n\n")
        f.write("--\n-- PostgreSQL database dump complete\n--\n")
    set_mtime(path, t)


# ---------------------------------------------------------------- pgdata pages

PAGE = 8192


def page(seed, rel, no, ver):
    """An 8 KiB heap-like page: header, line pointers, a little free space, tuples packed
    from the end (text columns plus a few random bytes each, about 3x compressible)."""
    x = mix(seed, 555, rel, no, ver)
    r = random.Random(x)
    tuples, used = [], 0
    i = 0
    limit = PAGE - 24 - 400 - (x % 600)
    while True:
        y = mix(x, i)
        t = b"%08x%04x|%d|%s|%s|%d|%s|" % (
            no, i, no * 100 + i, STATUS[y % 7].encode(), CITIES[(y >> 5) % 16].encode(),
            (y >> 12) % 100000, FIRST[(y >> 30) % 20].encode()) + r.randbytes(8 + y % 8)
        t = t.ljust((len(t) + 7) // 8 * 8, b"\0")
        if used + len(t) + 4 * (i + 1) > limit:
            break
        tuples.append(t)
        used += len(t)
        i += 1
    ntup = len(tuples)
    header = (x & 0xFFFFFFFF).to_bytes(8, "little") + ver.to_bytes(2, "little") + \
        (24 + 4 * ntup).to_bytes(2, "little") + (PAGE - used).to_bytes(2, "little") + b"\0" * 10
    lp = b"".join((PAGE - used + 16 * k).to_bytes(4, "little") for k in range(ntup))
    body = b"".join(reversed(tuples))
    return header + lp + b"\0" * (PAGE - len(header) - len(lp) - len(body)) + body


def pg_files(root):
    return [os.path.join(root, "db", "pgdata", "base", "16384", str(16400 + i)) for i in range(4)]


# ---------------------------------------------------------------- log and media

def log_bytes(seed, start_line, nbytes):
    out, size, i = [], 0, start_line
    while size < nbytes:
        x = mix(seed, 999, i)
        line = (f"10.{x % 256}.{(x >> 8) % 256}.{(x >> 16) % 256} - - [{DAY1 - 7 * DAY + i // 40}] "
                f"\"GET {PATHS[(x >> 24) % 10]}?id={(x >> 28) % 10000} HTTP/1.1\" "
                f"{[200, 200, 200, 304, 404, 500][(x >> 40) % 6]} {(x >> 44) % 50000} "
                f"\"-\" \"client/{(x >> 50) % 9}.0\" rt={(x >> 54) % 999}ms req={x % 16777216:06x}\n").encode()
        out.append(line)
        size += len(line)
        i += 1
    return b"".join(out)[:nbytes], i


# ---------------------------------------------------------------- small files

def small_dirs(seed, scale):
    """~9,000 directories under app/ (scaled), nested a few levels deep."""
    r = random.Random(mix(seed, 1))
    nsvc = max(2, int(40 * min(1.0, scale * 5)))
    target = max(nsvc * 3, int(9000 * scale))
    dirs = [f"app/svc{s:02d}" for s in range(nsvc)]
    while len(dirs) < target:
        parent = r.choice(dirs)
        if parent.count("/") >= 6:
            continue
        dirs.append(f"{parent}/{r.choice(['src', 'lib', 'pkg', 'docs', 'conf', 'test', 'assets'])}{r.randrange(100)}")
    return sorted(set(dirs))


def small_text(seed, fid, size, ver):
    r = random.Random(mix(seed, 4242, fid, ver))
    out, n = [], 0
    while n < size:
        line = " " * (4 * r.randrange(4)) + " ".join(r.choices(WORDS, k=r.randrange(3, 12))) + \
            (";" if r.random() < 0.5 else "") + "\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def small_specs(seed, scale, dirs):
    """(relative path, kind, size, content id) for day 1's 20,000 small files."""
    r = random.Random(mix(seed, 2))
    n = max(20, int(20000 * scale))
    nsvc = len([d for d in dirs if d.count("/") == 1])
    vendored = [(f"vendor/lib{v:03d}.js", int(min(200_000, math.exp(r.gauss(8.0, 1.0))))) for v in range(max(4, int(40 * scale)))]
    specs = []
    for i in range(n):
        u = r.random()
        d = r.choice(dirs)
        if u < 0.02:
            kind, size = "empty", 0
        elif u < 0.06:
            kind, size = "tiny", r.randrange(1, 64)
        elif u < 0.10:
            kind, size = "bin", int(min(4 * MiB, math.exp(r.gauss(9.5, 1.2))))
        elif u < 0.10 + 400 / 20000:
            name, size = vendored[i % len(vendored)]
            svc = "/".join(d.split("/")[:2])
            specs.append((f"{svc}/{name}", "vendor", size, 100000 + i % len(vendored)))
            continue
        else:
            kind, size = "text", int(min(2 * MiB, math.exp(r.gauss(math.log(3072), 1.43))))
        ext = {"empty": ".keep", "tiny": ".txt", "bin": ".png", "text": r.choice([".rs", ".go", ".py", ".yaml", ".md", ".json"])}[kind]
        specs.append((f"{d}/f{i:05d}{ext}", kind, size, i))
    # the scaled total must land near 168 MiB: scale text sizes to the budget
    total = sum(s[2] for s in specs)
    factor = 168 * MiB * scale / max(1, total)
    specs = [(p, k, int(s * factor) if k in ("text", "bin") else s, c) for p, k, s, c in specs]
    del nsvc
    return specs


def small_content(seed, kind, size, cid, ver):
    if kind in ("empty", "tiny", "text"):
        return small_text(seed, cid, size, ver)
    if kind == "vendor":
        return small_text(seed, cid, size, 0)
    return random.Random(mix(seed, 31, cid, ver)).randbytes(size)


def small_plan(seed, scale, day):
    """Small files as of `day`, and what day `day` changed: (specs, modified, deleted, added)."""
    specs = small_specs(seed, scale, small_dirs(seed, scale))
    modified, deleted, added = [], [], []
    for d in range(2, day + 1):
        r = random.Random(mix(seed, 9, d))
        n = len(specs)
        idx = list(range(n))
        r.shuffle(idx)
        nmod, ndel = int(n * 0.05), int(n * 0.02)
        modified = [specs[i] for i in idx[:nmod] if specs[i][1] != "empty"]
        gone = set(idx[nmod:nmod + ndel])
        deleted = [specs[i] for i in sorted(gone)]
        dirs = sorted({os.path.dirname(x[0]) for x in specs if x[0].startswith("app/")})
        added = []
        for j in range(int(n * 0.02)):
            size = int(min(2 * MiB, math.exp(r.gauss(math.log(3072), 1.43))))
            added.append((f"{r.choice(dirs)}/new{d}_{j:05d}.rs", "text", size, 200000 + d * 10000 + j))
        specs = [x for i, x in enumerate(specs) if i not in gone] + added
    return specs, modified, deleted, added


# ---------------------------------------------------------------- commands

def tree_stats(root):
    nbytes = files = dirs = 0
    for d, dn, fn in os.walk(root):
        dirs += len(dn)
        for f in fn:
            files += 1
            nbytes += os.lstat(os.path.join(d, f)).st_size
    return {"bytes": nbytes, "files": files, "dirs": dirs}


def set_dir_mtimes(root, t):
    for d, _, _ in os.walk(root, topdown=False):
        set_mtime(d, t)


def create(dest, seed, scale):
    if os.path.exists(dest) and os.listdir(dest):
        sys.exit(f"{dest} exists and is not empty")
    os.makedirs(dest, exist_ok=True)
    rows0 = dump_plan(seed, scale)
    write_dump(os.path.join(dest, "db/dumps/app_db.1.sql"), seed, rows0, 0, DAY1 - DAY)
    write_dump(os.path.join(dest, "db/dumps/app_db.sql"), seed, rows0, 1, DAY1)
    npages = max(4, int(32 * MiB * scale) // PAGE)
    for rel, path in enumerate(pg_files(dest)):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            for no in range(npages):
                f.write(page(seed, rel, no, 0))
        set_mtime(path, DAY1)
    data, next_line = log_bytes(seed, 0, int(64 * MiB * scale))
    write_file(os.path.join(dest, "logs/app.log"), data, DAY1)
    for i in range(4):
        write_file(os.path.join(dest, f"media/blob_{i}.bin"),
                   random.Random(mix(seed, 7, i)).randbytes(int(32 * MiB * scale)), DAY1)
    for d in small_dirs(seed, scale):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    for p, kind, size, cid in small_plan(seed, scale, 1)[0]:
        write_file(os.path.join(dest, p), small_content(seed, kind, size, cid, 0), DAY1)
    state = {"generator": "lifeboat", "seed": seed, "scale": scale, "day": 1, "rows0": rows0,
             "npages": npages, "log_line": next_line}
    write_file(os.path.join(dest, MARKER), json.dumps(state).encode() + b"\n", DAY1)
    set_dir_mtimes(dest, DAY1)
    st = tree_stats(dest)
    st.update(seed=seed, scale=scale, day=1)
    print(json.dumps(st))


def mutate(dest):
    with open(os.path.join(dest, MARKER)) as f:
        meta = json.load(f)
    seed, scale, day = meta["seed"], meta["scale"], meta["day"] + 1
    t = DAY1 + (day - 1) * DAY
    r = random.Random(mix(seed, 8, day))
    dumps = os.path.join(dest, "db/dumps")
    os.replace(os.path.join(dumps, "app_db.sql"), os.path.join(dumps, "app_db.1.sql"))
    write_dump(os.path.join(dumps, "app_db.sql"), seed, meta["rows0"], day, t)
    npages = meta["npages"]
    for rel, path in enumerate(pg_files(dest)):
        with open(path, "r+b") as f:
            rewritten = 0
            while rewritten < npages * 0.05:
                start, run = r.randrange(npages), r.randrange(4, 32)
                for no in range(start, min(npages, start + run)):
                    f.seek(no * PAGE)
                    f.write(page(seed, rel, no, day))
                    rewritten += 1
            f.seek(npages * PAGE)
            for no in range(npages, npages + max(1, int(npages * 0.02))):
                f.write(page(seed, rel, no, day))
        set_mtime(path, t)
    meta["npages"] = npages + max(1, int(npages * 0.02))
    data, meta["log_line"] = log_bytes(seed, meta["log_line"], int(4 * MiB * scale))
    log = os.path.join(dest, "logs/app.log")
    with open(log, "ab") as f:
        f.write(data)
    set_mtime(log, t)
    write_file(os.path.join(dest, f"media/blob_{3 + day}.bin"),
               random.Random(mix(seed, 7, 3 + day)).randbytes(int(16 * MiB * scale)), t)
    _, modified, deleted, added = small_plan(seed, scale, day)
    for p, kind, size, cid in modified:
        write_file(os.path.join(dest, p), small_content(seed, kind, size, cid, day), t)
    for p, *_ in deleted:
        os.remove(os.path.join(dest, p))
    for p, kind, size, cid in added:
        write_file(os.path.join(dest, p), small_content(seed, kind, size, cid, 0), t)
    meta["day"] = day
    write_file(os.path.join(dest, MARKER), json.dumps(meta).encode() + b"\n", t)
    st = tree_stats(dest)
    st.update(seed=seed, scale=scale, day=day)
    print(json.dumps(st))


def verify(expected, actual):
    def listing(root):
        out = {}
        for d, dn, fn in os.walk(root):
            rel = os.path.relpath(d, root)
            for n in dn + fn:
                p = os.path.join(d, n)
                st = os.lstat(p)
                kind = "l" if os.path.islink(p) else ("d" if os.path.isdir(p) else "f")
                out[os.path.normpath(os.path.join(rel, n))] = (kind, st.st_size if kind == "f" else 0)
        return out
    a, b = listing(expected), listing(actual)
    missing = sorted(set(a) - set(b))
    extra = sorted(set(b) - set(a))
    differ = []
    for p in sorted(set(a) & set(b)):
        if a[p] != b[p]:
            differ.append(p)
        elif a[p][0] == "l":
            if os.readlink(os.path.join(expected, p)) != os.readlink(os.path.join(actual, p)):
                differ.append(p)
        elif a[p][0] == "f":
            h = [hashlib.sha256(), hashlib.sha256()]
            for k, root in enumerate((expected, actual)):
                with open(os.path.join(root, p), "rb") as f:
                    while chunk := f.read(MiB):
                        h[k].update(chunk)
            if h[0].digest() != h[1].digest():
                differ.append(p)
    res = {"ok": not (missing or extra or differ), "entries": len(a),
           "missing": missing[:10], "extra": extra[:10], "differ": differ[:10]}
    print(json.dumps(res))
    return res["ok"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("dest")
    c.add_argument("--seed", type=int, default=42)
    c.add_argument("--scale", type=float, default=1.0)
    m = sub.add_parser("mutate")
    m.add_argument("dest")
    v = sub.add_parser("verify")
    v.add_argument("expected")
    v.add_argument("actual")
    s = sub.add_parser("stats")
    s.add_argument("dest")
    a = ap.parse_args()
    if a.cmd == "create":
        create(a.dest, a.seed, a.scale)
    elif a.cmd == "mutate":
        mutate(a.dest)
    elif a.cmd == "verify":
        sys.exit(0 if verify(a.expected, a.actual) else 1)
    else:
        print(json.dumps(tree_stats(a.dest)))


if __name__ == "__main__":
    main()
