"""`python -m bench`: relay, tree and page benchmarks; prints tables, writes bench/results/<name>.json.

See bench/README.md for what every figure means. Exit status: 0 when the harness ran (targets
missed are reported, not failed), 1 when it could not run, or with --strict when a token was
lost, duplicated or reordered.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import procs, relay, report, stack  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def _csv_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


# Issue 19's runs: N=1 and 5 at one instant, 50 and 200 spread over 1 s (the targets), then 200
# at one instant (the stress figure, last so its backlog cannot touch the others).
ISSUE19_RUNS = f"1,5,50@{report.ISSUE19_SPREAD:g},200@{report.ISSUE19_SPREAD:g},200"


def _relay_runs(text: str, spread: float) -> list[tuple[int, float]]:
    """'1,50@1,200' -> [(1, spread), (50, 1.0), (200, spread)]: N, and the seconds its sends
    are spread over (N@S; without @, --spread). One send has nothing to spread: N=1 is always 0."""
    runs = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        n, _, s = item.partition("@")
        runs.append((int(n), float(s) if s else spread))
    return [(n, s if n > 1 else 0.0) for n, s in runs]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--n", default="1,50,200",
                   help="concurrent users per relay run, comma-separated; N@S spreads that run's sends over S seconds (default 1,50,200)")
    p.add_argument("--spread", type=float, default=0.0,
                   help="seconds over which a relay run's N sends start, evenly (default 0: all at once); N@S in --n overrides")
    p.add_argument("--repeat-small", type=int, default=None,
                   help=f"run each N <= {SMALL_N} this many times and keep the run with the median added TTFT "
                        "(default 1; 5 with --issue19)")
    p.add_argument("--issue19", action="store_true",
                   help=f"issue 19's targets: production relay only, --n {ISSUE19_RUNS}")
    p.add_argument("--modes", default="embedded,production", help="embedded,production (default both)")
    p.add_argument("--tokens", type=int, default=400, help="tokens per reply (default 400)")
    p.add_argument("--rate", type=float, default=50.0, help="tokens/s per stream from the wire server (default 50)")
    p.add_argument("--first-token-delay", type=float, default=0.2, help="wire server's own TTFT, s (default 0.2)")
    p.add_argument("--quick", action="store_true", help="CI smoke: N=1,5, 40 tokens, small tree, 2 page loads")
    p.add_argument("--only", default="relay,micro,tree,page", help="subset of relay,micro,tree,page")
    p.add_argument("--name", default=None, help="results name: bench/results/<name>.json (default: quick or full + time)")
    p.add_argument("--relay-modes-n", default="", help="per-mode N override, e.g. 'embedded=1,50;production=1,50,200'")
    p.add_argument("--no-baseline", action="store_true", help="skip the direct-SDK baseline runs")
    p.add_argument("--timeout", type=float, default=None, help="max seconds to wait for one relay run's replies")
    p.add_argument("--web-workers", type=int, default=1, help="uvicorn workers in production mode (default 1, as the test harness)")
    p.add_argument("--worker-processes", type=int, default=1,
                   help="Celery worker processes in production mode, each with the full thread pool (default 1)")
    p.add_argument("--worker-concurrency", default="auto",
                   help="Celery thread-pool size (default auto = max(64, largest N): no stream waits for a pool slot)")
    p.add_argument("--profile", action="store_true",
                   help="after the measured runs, one extra run at the largest N per mode under py-spy (needs py-spy)")
    p.add_argument("--profile-inline", action="store_true",
                   help="profile the measured runs themselves at the largest N (py-spy adds a little CPU load)")
    p.add_argument("--tree-depths", default=None, help="default 10,1000,10000 (quick: 10,100,1000)")
    p.add_argument("--tree-sizes", default=None, help="default 200,2000 (quick: 200)")
    p.add_argument("--page-loads", type=int, default=None, help="Chromium cold loads (default 5, quick 2)")
    p.add_argument("--no-uvloop", action="store_true", help="plain asyncio loop for the bench client")
    p.add_argument("--strict", action="store_true", help="exit 1 if any token was lost, duplicated or reordered")
    p.add_argument("--keep", action="store_true", help="keep the app's temporary work dirs (logs)")
    a = p.parse_args(argv)
    a.repeat_small = max(1, a.repeat_small or (5 if a.issue19 else 1))
    if a.issue19:
        a.n = ISSUE19_RUNS if a.n == "1,50,200" else a.n
        a.modes = "production" if a.modes == "embedded,production" else a.modes
        a.only = "relay" if a.only == "relay,micro,tree,page" else a.only
    if a.quick:
        if a.n == "1,50,200":
            a.n = "1,5"
        if a.tokens == 400:
            a.tokens = 40
        a.tree_depths = a.tree_depths or "10,100,1000"
        a.tree_sizes = a.tree_sizes or "200"
        a.page_loads = a.page_loads or 2
    a.tree_depths = _csv_ints(a.tree_depths or "10,1000,10000")
    a.tree_sizes = _csv_ints(a.tree_sizes or "200,2000")
    a.page_loads = a.page_loads or 5
    a.runs = _relay_runs(a.n, a.spread)
    a.ns = [n for n, _ in a.runs]
    a.mode_list = [m.strip() for m in a.modes.split(",") if m.strip()]
    for m in a.mode_list:
        if m not in ("embedded", "production"):
            p.error(f"unknown mode {m!r}")
    a.per_mode_n = {}
    for part in filter(None, a.relay_modes_n.split(";")):
        mode, _, ns = part.partition("=")
        a.per_mode_n[mode.strip()] = _relay_runs(ns, a.spread)
    a.parts = {x.strip() for x in a.only.split(",") if x.strip()}
    largest = max(n for runs in (a.runs, *a.per_mode_n.values()) for n, _ in runs)
    a.concurrency = max(64, largest) if a.worker_concurrency == "auto" else int(a.worker_concurrency)
    if a.timeout is None:
        a.timeout = 30 + 10 * (a.first_token_delay + a.tokens / a.rate)
    a.name = a.name or ("quick" if a.quick else "full-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    return a


def run_async(coro, no_uvloop: bool):
    if not no_uvloop:
        try:
            import uvloop

            return asyncio.run(coro, loop_factory=uvloop.new_event_loop)
        except ImportError:
            pass
    return asyncio.run(coro)


def git_info() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changed), "changed_files": len(changed.splitlines())}


def machine_info() -> dict:
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    model = ""
    try:
        model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "mem_total_mb": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": procs.loadavg(),
    }


class Profilers:
    def __init__(self, pids: dict[str, int], out_dir: Path, tag: str):
        from bench import profiling

        self.profiling = profiling
        self.targets = {name: pid for name, pid in pids.items() if name in ("web", "worker")}
        self.out_dir = out_dir
        self.tag = tag
        self.recorders = {}
        self.summary = {}

    def start(self):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.targets.items():
            self.recorders[name] = self.profiling.Recorder(pid, self.out_dir / f"{self.tag}-{name}.txt")
        time.sleep(0.3)

    def stop(self):
        for name, rec in self.recorders.items():
            log = rec.stop()
            self.summary[name] = self.profiling.summarize(rec.out, rec.rate)
            self.summary[name]["raw_file"] = str(rec.out.relative_to(ROOT)) if rec.out.is_relative_to(ROOT) else str(rec.out)
            if "samples" not in self.summary[name] or not self.summary[name].get("samples"):
                self.summary[name]["py_spy_output"] = log[-500:]


SMALL_N = 5  # runs this small are over in a second: one sample of their TTFT is mostly noise


def _median_run(runs: list[dict]) -> dict:
    """Of repeated runs of one N, the one whose added TTFT (app - baseline) is the median,
    whole (its figures stay one run's), with every repeat's difference beside it; except what
    went wrong, summed over all the repeats (a token lost, a send refused or a reply left
    unfinished in any run must show): lost, duplicated, reordered, send failures, tokens
    undelivered at the deadline, and whether any run timed out."""
    if len(runs) == 1:
        return runs[0]
    diffs = [report.ttft_diff(r) for r in runs]
    ordered = sorted(runs, key=lambda r: d if (d := report.ttft_diff(r)) is not None else float("inf"))
    median = ordered[(len(ordered) - 1) // 2]
    median["repeats"] = {"count": len(runs), "ttft_added_p50_minus_baseline_ms": diffs}
    app = median["app"]
    for counter in ("lost", "duplicated", "reordered", "undelivered_at_deadline"):
        app[counter] = sum(r["app"].get(counter) or 0 for r in runs)
    failures: dict = {}
    for run in runs:
        for status, count in (run["app"].get("send_failures") or {}).items():
            failures[status] = failures.get(status, 0) + count
    app["send_failures"] = failures
    info = median.setdefault("app_run", {})
    info["timed_out"] = any(r.get("app_run", {}).get("timed_out") for r in runs)
    exited = [r["app_run"]["app_process_exited_during_run"] for r in runs if r.get("app_run", {}).get("app_process_exited_during_run")]
    if exited:
        info["app_process_exited_during_run"] = exited[0]
    return median


def relay_once(a, server, sim, mode: str, n: int, *, spread: float = 0.0, profile: bool = False, warmup: bool = False) -> dict:
    tokens = 5 if warmup else a.tokens
    tag = f"{mode[0]}{n}{secrets.token_hex(3)}"
    t = time.time()
    users = server.run_script("bench.app_setup", [f"u{tag}x", str(n)])["users"]
    setup_s = round(time.time() - t, 2)
    pids = {**server.pids(), "simulator": sim.pid}
    sim.control("DELETE", "/requests")
    run_id = secrets.token_hex(4)
    profilers = Profilers(pids, RESULTS / f"{a.name}-profiles", f"{mode}-n{n}") if profile else None
    out: dict = {"n": n, "spread_s": spread, "setup_s": setup_s, "loadavg_before": procs.loadavg()}
    counters_before = app_counters(server)
    streams, info = run_async(
        relay.run_app(base_url=server.base_url, users=users, run_id=run_id, timeout=a.timeout, pids=pids, profilers=profilers,
                      db_url=server.database_url or None, spread=spread),
        a.no_uvloop,
    )
    run_async(relay.attach_emissions(sim.url, streams, run_id), a.no_uvloop)
    gone = {name: proc.returncode for name, proc in server.procs.items() if proc.poll() is not None}
    if gone:
        info["app_process_exited_during_run"] = gone  # a negative code is the signal that ended it
    info["drain_s"] = wait_idle(server) if not gone else None
    out["app"] = relay.analyze(streams, tokens=tokens, rate=a.rate, first_token_delay=a.first_token_delay, spread=spread)
    if counters_before:
        time.sleep(1.0)  # PostgreSQL publishes its statistics about once a second
        out["app_server_counters"] = counters_delta(counters_before, app_counters(server), out["app"]["tokens_delivered"])
    out["app_run"] = info
    if profilers:
        out["profile"] = profilers.summary
    web_peak = info["rss_peak_mb"].get("web", 0.0)
    worker_peak = info["rss_peak_mb"].get("worker", 0.0)
    out["memory_mb"] = {
        "web_peak": web_peak,
        "worker_peak": worker_peak if "worker" in pids else None,
        "web_plus_worker_peak": round(web_peak + worker_peak, 1),
        "web_start": info["rss_start_mb"].get("web"),
        "worker_start": info["rss_start_mb"].get("worker"),
        "vm_hwm": info["vm_hwm_mb"],
        "simulator_peak": info["rss_peak_mb"].get("simulator"),
    }
    cpu = info["cpu_s"]
    delivered = max(out["app"]["tokens_delivered"], 1)
    out["app_cpu_ms_per_token"] = {k: round(1000 * cpu[k] / delivered, 3) for k in ("web", "worker", "simulator", "bench_client",
                                                                               "redis-server", "postgres") if k in cpu}
    # Issue 19's budget counts the app's own processes; `all` adds the simulator and this client.
    # A process this machine cannot see (a remote database) would count as 0: not measured then.
    for key, names in (("app_processes", report.APP_PROCESSES), ("all", report.APP_PROCESSES + ("simulator", "bench_client"))):
        seen = all(k in cpu for k in names)
        out["app_cpu_ms_per_token"][key] = round(1000 * sum(cpu[k] for k in names) / delivered, 3) if seen else None
    sim.control("DELETE", "/requests")
    if not a.no_baseline and not (profile and not a.profile_inline):
        time.sleep(1.0)
        model = users[0].get("model", "gpt-4o-mini")
        b_streams, b_info = run_async(
            relay.run_baseline(sim_base_url=sim.base_url, n=n, model=model, run_id=run_id + "b", timeout=a.timeout,
                               pids={"simulator": sim.pid}, spread=spread),
            a.no_uvloop,
        )
        run_async(relay.attach_emissions(sim.url, b_streams, run_id + "b"), a.no_uvloop)
        out["baseline"] = relay.analyze(b_streams, tokens=tokens, rate=a.rate, first_token_delay=a.first_token_delay,
                                        spread=spread)
        out["baseline_run"] = b_info
        btok = max(out["baseline"]["tokens_delivered"], 1)
        out["baseline_cpu_ms_per_token"] = {k: round(1000 * b_info["cpu_s"][k] / btok, 3) for k in ("simulator", "bench_client")}
        sim.control("DELETE", "/requests")
        app_f, base_f = out["app"], out["baseline"]

        def ratio(x, y):
            return round(x / y, 3) if x is not None and y else None

        out["ratios"] = {
            "tokens_per_s": ratio(app_f["tokens_per_s"], base_f["tokens_per_s"]),
            "lag_p50": ratio(app_f["lag_ms"].get("p50"), base_f["lag_ms"].get("p50")),
            "lag_p99": ratio(app_f["lag_ms"].get("p99"), base_f["lag_ms"].get("p99")),
            "ttft_added_p50_minus_baseline_ms": (round(app_f["ttft_added_ms"]["p50"] - base_f["ttft_added_ms"]["p50"], 1)
                                                 if app_f["ttft_added_ms"].get("n") and base_f["ttft_added_ms"].get("n") else None),
        }
    out["loadavg_after"] = procs.loadavg()
    return out


def app_counters(server) -> dict:
    """Server-side counters (production only): Redis commands by type (server-wide: other users
    of this Redis add noise) and PostgreSQL activity of the app's own database."""
    if server.mode != "production":
        return {}
    out: dict = {}
    try:
        import redis

        stats = redis.Redis.from_url(server.env["REDIS_URL"]).info("commandstats")
        out["redis"] = {k.removeprefix("cmdstat_"): {"calls": v["calls"], "usec": v["usec"]} for k, v in stats.items()}
    except Exception as exc:  # noqa: BLE001
        out["redis_error"] = str(exc)
    try:
        import psycopg

        with psycopg.connect(server.database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute("SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, tup_updated, "
                               "tup_deleted FROM pg_stat_database WHERE datname = current_database()").fetchone()
        out["pg"] = dict(zip(("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated",
                              "tup_deleted"), row))
    except Exception as exc:  # noqa: BLE001
        out["pg_error"] = str(exc)
    return out


def counters_delta(before: dict, after: dict, tokens: int) -> dict:
    out: dict = {}
    if "redis" in before and "redis" in after:
        calls = {}
        for cmd, v in after["redis"].items():
            n = v["calls"] - before["redis"].get(cmd, {}).get("calls", 0)
            if n > 0:
                usec = v["usec"] - before["redis"].get(cmd, {}).get("usec", 0)
                calls[cmd] = {"calls": n, "per_token": round(n / max(tokens, 1), 3), "server_usec": usec}
        out["redis_commands"] = dict(sorted(calls.items(), key=lambda kv: -kv[1]["calls"]))
        out["redis_commands_per_token"] = round(sum(v["calls"] for v in calls.values()) / max(tokens, 1), 2)
    if "pg" in before and "pg" in after:
        out["pg"] = {k: after["pg"][k] - before["pg"][k] for k in after["pg"]}
        out["pg_per_token"] = {k: round(v / max(tokens, 1), 3) for k, v in out["pg"].items()}
    return out


def ensure_alive(server, mode_out: dict, a, sim, mode: str, workdir: Path):
    """If an app process has exited (killed from outside, crashed), record it and start a fresh
    stack, so one disruption does not void the rest of the run."""
    dead = {name: proc.returncode for name, proc in server.procs.items() if proc.poll() is not None}
    if not dead:
        return server
    event = {"at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
             "exited": {k: (f"signal {-v}" if v and v < 0 else f"exit {v}") for k, v in dead.items()}}
    mode_out.setdefault("app_restarts", []).append(event)
    print(f"  app process(es) gone: {event['exited']}; restarting the {mode} stack", flush=True)
    stack.stop(server)
    return stack.start(mode, simulator_url=sim.base_url, web_workers=a.web_workers, worker_concurrency=a.concurrency,
                       worker_processes=a.worker_processes,
                       workdir=workdir / f"{mode}-{len(mode_out['app_restarts'])}")


def wait_idle(server, timeout: float = 120.0) -> float | None:
    """Wait until no reply is pending or streaming in the app's database; seconds waited."""
    t = time.time()
    while time.time() - t < timeout:
        rows = server.query("SELECT count(*) FROM chat_message WHERE status IN ('pending', 'streaming')")
        if rows[0][0] == 0:
            return round(time.time() - t, 2)
        time.sleep(0.5)
    return None


def warm_up(a, server, sim, mode: str) -> dict:
    """One short reply through the app and one through the SDK before anything is measured:
    first-request costs (lazy imports, connection pools, template compilation) are not what
    the relay figures are about. Reported under `warmup`, never in the figures."""
    sim.configure(reply_tokens=5)
    try:
        r = relay_once(a, server, sim, mode, 2, warmup=True)
        return {"app_ttft_added_ms": r["app"]["ttft_added_ms"].get("max"), "baseline_ttft_added_ms":
                r.get("baseline", {}).get("ttft_added_ms", {}).get("max")}
    finally:
        sim.configure(reply_tokens=a.tokens)


def print_relay_line(mode, key, r):
    app = r["app"]
    line = (f"  {mode} N={key}: TTFT+ p50 {app['ttft_added_ms'].get('p50')} ms p99 {app['ttft_added_ms'].get('p99')} ms, "
            f"lag p50 {app['lag_ms'].get('p50')} p99 {app['lag_ms'].get('p99')} ms, {app['tokens_per_s']} tok/s, "
            f"lost/dup/reord {app['lost']}/{app['duplicated']}/{app['reordered']}")
    if "baseline" in r:
        b = r["baseline"]
        line += (f" | baseline TTFT+ p50 {b['ttft_added_ms'].get('p50')} lag p99 {b['lag_ms'].get('p99')} "
                 f"{b['tokens_per_s']} tok/s | ratio {r['ratios']['tokens_per_s']}")
    if "repeats" in r:
        line += f" | median of {r['repeats']['count']}: app - baseline {r['repeats']['ttft_added_p50_minus_baseline_ms']} ms"
    print(line, flush=True)


def _failure(exc: BaseException) -> dict:
    """What the JSON records for a part that could not run (called inside its `except`)."""
    return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}


def _timed(run) -> dict:
    """`run()`'s result dict with its wall time added."""
    t = time.time()
    out = run()
    out["wall_s"] = round(time.time() - t, 1)
    return out


def main(argv=None) -> int:
    a = parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results: dict = {
        "name": a.name,
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "git": git_info(),
        "config": {
            "n": a.ns, "spread_s": a.spread, "issue19": a.issue19, "repeat_small": a.repeat_small,
            "relay_runs": {m: [report.run_key(n, s) for n, s in a.per_mode_n.get(m, a.runs)] for m in a.mode_list},
            "modes": a.mode_list, "tokens": a.tokens, "rate_tps": a.rate,
            "first_token_delay_s": a.first_token_delay, "quick": a.quick, "only": sorted(a.parts),
            "web_workers": a.web_workers, "worker_concurrency": a.concurrency, "worker_processes": a.worker_processes,
            "timeout_s": a.timeout,
            "tree_depths": a.tree_depths, "tree_sizes": a.tree_sizes, "page_loads": a.page_loads,
            "bench_loop": "asyncio" if a.no_uvloop else "uvloop", "profile": a.profile, "profile_inline": a.profile_inline,
            "delta_interval_s": float(os.environ.get("PLAYGROUND_DELTA_INTERVAL", 0.05)),
            "save_interval_s": float(os.environ.get("PLAYGROUND_SAVE_INTERVAL", 1.0)),
        },
        "modes": {},
    }
    print(f"bench {a.name}: {os.cpu_count()} cores, load average {results['machine']['loadavg_at_start']}, "
          f"commit {results['git']['commit'][:10]}{' (dirty)' if results['git']['dirty'] else ''}", flush=True)
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{a.name}-{secrets.token_hex(3)}"
    workdir.mkdir(parents=True, exist_ok=True)
    sim = stack.Simulator(workdir, reply_mode="numbered", reply_tokens=a.tokens, tokens_per_second=a.rate,
                          first_token_delay=a.first_token_delay, record_emissions=True, spillover_rpm=0)
    failed = False
    try:
        sim.start()
        for mode in a.mode_list:
            mode_out = results["modes"].setdefault(mode, {})
            t = time.time()
            print(f"[{mode}] starting the app", flush=True)
            server = stack.start(mode, simulator_url=sim.base_url, web_workers=a.web_workers,
                                 worker_concurrency=a.concurrency, worker_processes=a.worker_processes, workdir=workdir / mode)
            mode_out["startup_s"] = round(time.time() - t, 1)
            mode_out["processes"] = {k: v for k, v in server.pids().items()}
            try:
                if "relay" in a.parts:
                    relay_out = mode_out.setdefault("relay", {})
                    runs = a.per_mode_n.get(mode, a.runs)
                    top = max(runs, key=lambda run: run[0]) if runs else None  # the profiled run: the largest N
                    mode_out["warmup"] = warm_up(a, server, sim, mode)
                    for n, spread in runs:
                        key = report.run_key(n, spread)
                        print(f"[{mode}] relay N={n} ({a.tokens} tokens at {a.rate:g}/s"
                              + (f", sends spread over {spread:g} s" if spread else "") + ")", flush=True)
                        server = ensure_alive(server, mode_out, a, sim, mode, workdir)
                        try:
                            relay_out[key] = _median_run([
                                relay_once(a, server, sim, mode, n, spread=spread, profile=a.profile_inline and (n, spread) == top)
                                for _ in range(a.repeat_small if n <= SMALL_N else 1)
                            ])
                            print_relay_line(mode, key, relay_out[key])
                        except Exception as exc:  # noqa: BLE001 - record and go on with the other runs
                            failed = True
                            relay_out[key] = _failure(exc)
                            print(f"  FAILED: {exc}", flush=True)
                    if a.profile and top:
                        n, spread = top
                        key = report.run_key(n, spread)
                        print(f"[{mode}] profiling run N={key} (py-spy; not used for the figures)", flush=True)
                        try:
                            prof = relay_once(a, server, sim, mode, n, spread=spread, profile=True)
                            relay_out.setdefault(key, {})["profile_run"] = prof
                        except Exception as exc:  # noqa: BLE001
                            relay_out.setdefault(key, {})["profile_run"] = _failure(exc)
                            print(f"  profile FAILED: {exc}", flush=True)
                for key, label, run in (
                    ("micro", "micro-benchmarks of the relay's steps",
                     lambda srv: srv.run_script("bench.app_micro", [json.dumps({"repeat": 500 if a.quick else 2000})])),
                    ("tree", f"tree (depths {a.tree_depths}, tree sizes {a.tree_sizes})",
                     lambda srv: _timed(lambda: srv.run_script("bench.app_tree", [json.dumps(
                         {"depths": a.tree_depths, "tree_sizes": a.tree_sizes, "repeat": 3 if a.quick else 7})], timeout=1800))),
                    ("page", "page weight and time to interactive", lambda srv: page_bench(a, srv, sim)),
                ):
                    if key not in a.parts:
                        continue
                    server = ensure_alive(server, mode_out, a, sim, mode, workdir)
                    print(f"[{mode}] {label}", flush=True)
                    try:
                        mode_out[key] = run(server)
                    except Exception as exc:  # noqa: BLE001 - record and go on with the other parts
                        failed = True
                        mode_out[key] = _failure(exc)
                        print(f"  FAILED: {exc}", flush=True)
            finally:
                stack.stop(server)
    except Exception as exc:  # noqa: BLE001
        failed = True
        results["error"] = f"{type(exc).__name__}: {exc}"
        results["traceback"] = traceback.format_exc()[-5000:]
        print(results["traceback"], file=sys.stderr)
    finally:
        sim.stop()
        if not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            results["workdir"] = str(workdir)
    results["targets"] = report.targets(results)
    results["duration_s"] = round(time.time() - started, 1)
    results["loadavg_at_end"] = procs.loadavg()
    path = RESULTS / f"{a.name}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    print()
    print("Relay (ms; TTFT+ = time to first token added over the wire server's own first-token delay)")
    print(report.relay_table(results))
    print("\nSeconds busy (a process at >= 75% of one core, near its GIL's ceiling; the machine at >= 90% of all cores)")
    print(report.saturation_table(results))
    print()
    print("Relay steps, micro-benchmarks")
    print(report.micro_table(results))
    print()
    print("Tree")
    print(report.tree_table(results))
    print()
    print("Page")
    print(report.page_table(results))
    print()
    print("Targets")
    print(report.targets_table(results["targets"]))
    print(f"\nwrote {path.relative_to(ROOT)} in {results['duration_s']} s")
    if failed:
        return 1
    if a.strict and any(t["status"] == "missed" and "token" in t["target"] for t in results["targets"]):
        return 1
    return 0


def page_bench(a, server, sim) -> dict:
    import httpx

    from bench import page

    wait_idle(server)
    users = server.run_script("bench.app_setup", [f"p{secrets.token_hex(3)}x", "1"])["users"]
    u = users[0]
    cookies = {"sessionid": u["sessionid"], "csrftoken": u["csrftoken"]}
    # A session with one finished exchange (Markdown with a code block), like a page in use.
    before = sim.control("GET", "/config")["config"]
    sim.configure(reply_mode="prose", reply_tokens=120, tokens_per_second=0, first_token_delay=0)
    try:
        with httpx.Client(base_url=server.base_url, timeout=30,
                          headers={"Cookie": f"sessionid={u['sessionid']}; csrftoken={u['csrftoken']}",
                                   "X-CSRFToken": u["csrftoken"], "HX-Request": "true"}) as client:
            path = f"/sessions/{u['session_id']}/b/{u['branch_id']}/"
            send_deadline = time.time() + 90
            while client.post(path + "send/", data={"content": "Show me a short example, please."}).status_code != 200:
                if time.time() > send_deadline:
                    raise RuntimeError("the app kept refusing the page's message")
                time.sleep(3)
            deadline = time.time() + 30
            while time.time() < deadline:
                html = client.get(path).text
                if "status-pending" not in html and "status-streaming" not in html:
                    break
                time.sleep(0.2)
    finally:
        sim.configure(**{k: before[k] for k in ("reply_mode", "reply_tokens", "tokens_per_second", "first_token_delay")})
    # Right after a heavy relay run the app may still refuse requests (e.g. PostgreSQL
    # connections exhausted); those refusals are recorded, then the page is measured once it
    # answers.
    refusals = []
    deadline = time.time() + 90
    while True:
        try:
            weight = page.weigh(server.base_url, path, cookies)
            break
        except httpx.HTTPStatusError as exc:
            refusals.append(exc.response.status_code)
            if time.time() > deadline:
                raise
            time.sleep(3)
    out = {"page": path, "weight": weight, "refused_first": refusals}
    if Path(page.CHROMIUM).exists():
        out["browser"] = page.time_to_interactive(server.base_url, path, cookies, a.page_loads)
    else:
        out["browser"] = {"status": "not measured", "why": f"{page.CHROMIUM} is missing (make install-test installs it)"}
    return out


if __name__ == "__main__":
    sys.exit(main())
