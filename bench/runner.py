#!/usr/bin/env python3
"""Side-by-side cycle runner, used by bench/run when ../shared/bench is absent.

Per repetition and tool (order alternating between repetitions): fresh copy of the day-1
dataset, init, initial backup, no-change backup, mutate to day 2, incremental backup,
restore latest, verify. Each timed command's wall time, user+sys CPU and peak RSS of its
process tree (wait4) are recorded with the repository size; the summary gives medians
and, per phase, the median of the per-repetition wall-time ratios against the baseline.
Same options and output shape as the shared run_bench.py; independent implementation.
"""
import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "gen_dataset.py")
PHASES = ["init", "backup_initial", "backup_nochange", "backup_incremental", "restore"]
MiB = 1 << 20


def subst(text, ctx):
    for k, v in ctx.items():
        text = text.replace("{" + k + "}", str(v))
    return text


def timed_run(cmd, env, log, timeout, shell):
    with open(log, "ab") as out:
        out.write(f"\n$ {cmd}\n".encode())
        out.flush()
        t0 = time.monotonic()
        p = subprocess.Popen(cmd if shell else shlex.split(cmd), shell=shell, env=env, stdin=subprocess.DEVNULL,
                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        expired = threading.Event()

        def kill():
            expired.set()
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        t = threading.Timer(timeout, kill)
        t.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            t.cancel()
        wall = time.monotonic() - t0
        try:
            os.killpg(p.pid, signal.SIGKILL)  # leftovers of the group are not kept
        except (ProcessLookupError, PermissionError):
            pass
    rc = "timeout" if expired.is_set() else os.waitstatus_to_exitcode(status)
    return {"wall": round(wall, 3), "user": round(ru.ru_utime, 3), "sys": round(ru.ru_stime, 3),
            "cpu": round(ru.ru_utime + ru.ru_stime, 3), "maxrss_mib": round(ru.ru_maxrss / 1024, 1), "rc": rc}


def tree_bytes(path):
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(path) for f in fs)


def marker_dir(root):
    for d, _, fs in os.walk(root):
        if ".perfbench-root" in fs:
            return d
    return None


def gen(*args):
    return json.loads(subprocess.run([sys.executable, GEN, *args], check=True, capture_output=True, text=True).stdout)


def cycle(name, spec, rep, a, pristine, logdir):
    run = f"{name}-r{rep}"
    src, restore, cache = (os.path.join(a.work, x) for x in ("src", f"restore-{run}", f"cache-{run}"))
    ctx = {"work": a.work, "src": src, "restore": restore, "cache": cache, "run": run}
    ctx["repo"] = subst(spec.get("repo", "{work}/repo-{run}"), ctx)
    for p in (src, restore, cache) + ((ctx["repo"],) if ctx["repo"].startswith("/") else ()):
        shutil.rmtree(p, ignore_errors=True)
    subprocess.run(["cp", "-a", pristine, src], check=True)
    os.makedirs(restore)
    os.makedirs(cache)
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    env.update({k: subst(str(v), ctx) for k, v in spec.get("env", {}).items()})
    shell = bool(spec.get("shell", False))
    log = os.path.join(logdir, f"{run}.log")
    res = {"tool": name, "rep": rep, "repo": ctx["repo"]}

    def phase(ph, key):
        subprocess.run(["sync"], check=False)
        r = timed_run(subst(spec[key], ctx), env, log, a.timeout, shell)
        res[ph] = r
        print(f"  {name:12s} rep{rep} {ph:19s} wall {r['wall']:8.2f}s  cpu {r['cpu']:8.2f}s  peak "
              f"{r['maxrss_mib']:8.1f} MiB  {'ok' if r['rc'] == 0 else 'FAILED rc=%s (see %s)' % (r['rc'], log)}",
              flush=True)
        return r["rc"] == 0

    def size():
        if spec.get("repo_size"):
            out = subprocess.run(subst(spec["repo_size"], ctx), shell=True, env=env, capture_output=True, text=True)
            try:
                return int(out.stdout.split()[-1])
            except (ValueError, IndexError):
                return None
        return tree_bytes(ctx["repo"]) if os.path.isdir(ctx["repo"]) else None

    ok = phase("init", "init") and phase("backup_initial", "backup")
    res["repo_bytes_initial"] = size() if ok else None
    ok = ok and phase("backup_nochange", "backup")
    if ok:
        res["day2"] = gen("mutate", src)
    ok = ok and phase("backup_incremental", "backup")
    res["repo_bytes_after_incremental"] = size() if ok else None
    if ok and phase("restore", "restore"):
        root = marker_dir(restore)
        out = subprocess.run([sys.executable, GEN, "verify", src, root], capture_output=True, text=True).stdout \
            if root else json.dumps({"ok": False, "error": "marker not found"})
        res["verify"] = json.loads(out)
        print(f"  {name:12s} rep{rep} verify restore: {'ok' if res['verify']['ok'] else 'MISMATCH ' + out}", flush=True)
    if spec.get("cleanup"):
        subprocess.run(subst(spec["cleanup"], ctx), shell=True, env=env, check=False)
    if not a.keep:
        for p in (restore, cache) + ((ctx["repo"],) if ctx["repo"].startswith("/") else ()):
            shutil.rmtree(p, ignore_errors=True)
    return res


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summary(results, tools, base, day1):
    out = [f"dataset day 1: {day1['bytes'] / MiB:.1f} MiB in {day1['files']} files, {day1['dirs']} dirs", "",
           f"| tool | phase | wall s (median) | MiB/s | cpu s | peak RSS MiB | wall ratio vs {base} (median of pairs) |",
           "|---|---|---:|---:|---:|---:|---:|"]
    by = {t: [r for r in results if r["tool"] == t] for t in tools}
    for t in tools:
        for ph in PHASES:
            good = [r[ph] for r in by[t] if ph in r and r[ph]["rc"] == 0]
            if not good:
                continue
            w = median([g["wall"] for g in good])
            size = day1["bytes"] if ph == "backup_initial" else (
                median([r.get("day2", {}).get("bytes") for r in by[t]]) if ph == "restore" else None)
            thr = f"{size / MiB / w:.1f}" if size and w else ""
            pairs = []
            for r in by[t]:
                b = next((x for x in by.get(base, []) if x["rep"] == r["rep"]), None)
                if b and ph in r and ph in b and r[ph]["rc"] == 0 and b[ph]["rc"] == 0 and b[ph]["wall"] > 0:
                    pairs.append(r[ph]["wall"] / b[ph]["wall"])
            ratio = "1.00" if t == base else (f"{median(pairs):.2f}" if pairs else "")
            out.append(f"| {t} | {ph} | {w:.2f} | {thr} | {median([g['cpu'] for g in good]):.2f} | "
                       f"{max(g['maxrss_mib'] for g in good):.0f} | {ratio} |")
    out += ["", "| tool | repo after initial MiB | ratio dataset/repo | repo growth by incremental MiB | restores verified |",
            "|---|---:|---:|---:|---|"]
    for t in tools:
        ri = median([r.get("repo_bytes_initial") for r in by[t]])
        ra = median([r.get("repo_bytes_after_incremental") for r in by[t]])
        ver = [r.get("verify", {}).get("ok") for r in by[t]]
        out.append(f"| {t} | {ri / MiB:.1f} | {day1['bytes'] / ri:.2f} | {(ra - ri) / MiB:.1f} | "
                   f"{sum(1 for v in ver if v)}/{len(ver)} |" if ri and ra else f"| {t} | n/a | n/a | n/a | {ver} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True)
    ap.add_argument("--tools", default="lifeboat,restic")
    ap.add_argument("--baseline", default=None)
    ap.add_argument("--config", default=os.path.join(HERE, "tools.toml"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    a.work = os.path.abspath(a.work)
    os.makedirs(a.work, exist_ok=True)
    with open(a.config, "rb") as f:
        cfg = tomllib.load(f)["tools"]
    tools = [t for t in a.tools.split(",") if t]
    unknown = [t for t in tools if t not in cfg]
    if unknown:
        sys.exit(f"unknown tools {unknown}; known: {', '.join(cfg)}")
    base = a.baseline or tools[0]
    pristine = os.path.join(a.work, f"lifeboat-pristine-s{a.seed}-x{a.scale}")
    stamp_file = pristine + ".json"
    if not os.path.exists(stamp_file):
        shutil.rmtree(pristine, ignore_errors=True)
        print(f"generating dataset (seed={a.seed}, scale={a.scale}) ...", flush=True)
        day1 = gen("create", pristine, "--seed", str(a.seed), "--scale", str(a.scale))
        with open(stamp_file, "w") as f:
            json.dump(day1, f)
    day1 = json.load(open(stamp_file))
    stamp = time.strftime("%Y%m%dT%H%M%S")
    logdir = os.path.join(a.work, f"logs-{stamp}")
    os.makedirs(logdir)
    results = []
    for rep in range(1, a.reps + 1):
        for t in (tools if rep % 2 else tools[::-1]):
            results.append(cycle(t, cfg[t], rep, a, pristine, logdir))
    shutil.rmtree(os.path.join(a.work, "src"), ignore_errors=True)
    text = summary(results, tools, base, day1)
    out = os.path.join(a.work, f"results-{stamp}.json")
    with open(out, "w") as f:
        json.dump({"dataset": day1, "args": vars(a), "results": results, "summary": text}, f, indent=1)
    print("\n" + text + f"\n\nraw results: {out}\nlogs: {logdir}")


if __name__ == "__main__":
    main()
