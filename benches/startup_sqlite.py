#!/usr/bin/env python3
"""Start-up of `weft run` on the SQLite driver: without the code cache (eager, and lazy with and
without background compilation), first run (cache empty), second run (cached). Prints the median and minimum of five alternating runs of the time
to the program's first output line (an upper bound on time to first instruction) and to
completion. Build first: `cargo build --release -p weft-cli`. See docs/startup.md."""
import os, shutil, statistics, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEFT = os.path.join(ROOT, "target", "release", "weft")
SCRATCH = tempfile.mkdtemp(prefix="weft-startup-")
CACHE = os.path.join(SCRATCH, "cache")
DB = os.path.join(SCRATCH, "db")


def run(env_extra, options=()):
    env = {k: v for k, v in os.environ.items() if k not in ("WEFT_NO_CACHE", "WEFT_CACHE_DIR")}
    env.update(env_extra)
    shutil.rmtree(DB, ignore_errors=True)
    os.makedirs(DB)
    args = [WEFT, "run", *options, "--dir", DB + "::/data", "programs/wasm/sqlite-driver.wasm", "/data/test.db"]
    start = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    child.stdout.readline()
    first = time.perf_counter()
    rest = child.stdout.read()
    child.wait()
    done = time.perf_counter()
    assert child.returncode == 0 and rest.rstrip().endswith(b"ok"), child.stderr.read()
    return (first - start) * 1e3, (done - start) * 1e3


rows = {"no cache": [], "no cache, -C lazy": [], "no cache, lazy, no bg": [],
        "first run (cache empty)": [], "second run (cached)": []}
for _ in range(5):
    rows["no cache"].append(run({"WEFT_NO_CACHE": "1"}))
    rows["no cache, -C lazy"].append(run({"WEFT_NO_CACHE": "1"}, ["-C", "lazy"]))
    rows["no cache, lazy, no bg"].append(run({"WEFT_NO_CACHE": "1"}, ["-C", "lazy,lazy-background=n"]))
    shutil.rmtree(CACHE, ignore_errors=True)
    rows["first run (cache empty)"].append(run({"WEFT_CACHE_DIR": CACHE}))
    rows["second run (cached)"].append(run({"WEFT_CACHE_DIR": CACHE}))
for name, times in rows.items():
    first = [f for f, _ in times]
    whole = [w for _, w in times]
    print(f"{name:24} first output: median {statistics.median(first):7.1f} ms (min {min(first):7.1f})"
          f"   completion: median {statistics.median(whole):7.1f} ms (min {min(whole):7.1f})")
shutil.rmtree(SCRATCH, ignore_errors=True)
