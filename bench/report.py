"""The issue's targets (met / missed / not measured) and the printed tables."""

from __future__ import annotations

# Issue 19's CPU budget counts these: the app and the servers it needs (not the wire server
# standing in for the provider, nor the bench client standing in for the browsers).
APP_PROCESSES = ("web", "worker", "postgres", "redis-server")
ISSUE19_SPREAD = 1.0


def run_key(n: int, spread: float) -> str:
    """A relay run's key in `modes.<mode>.relay`: '200' (all sends at once) or '200@1s'."""
    return str(n) if not spread else f"{n}@{spread:g}s"


def ttft_diff(run: dict) -> float | None:
    """A run's added TTFT p50 minus its baseline's (None without a baseline)."""
    return run.get("ratios", {}).get("ttft_added_p50_minus_baseline_ms")


def _run_order(key: str) -> tuple[int, float]:
    n, _, spread = key.partition("@")
    return int(n), float(spread.rstrip("s") or 0)


def _t(target, status, value=None, limit=None, where=None, note=None):
    row = {"target": target, "status": status, "value": value, "limit": limit}
    if where:
        row["where"] = where
    if note:
        row["note"] = note
    return row


def _check(value, limit, *, le=True):
    if value is None:
        return "not measured"
    return "met" if (value <= limit if le else value >= limit) else "missed"


def targets(results: dict) -> list[dict]:
    out = []
    modes = results.get("modes", {})
    relay_prod = modes.get("production", {}).get("relay", {})
    # Loss: every run, every mode, app and baseline.
    runs = [(m, n, r) for m, d in modes.items() for n, r in d.get("relay", {}).items() if "app" in r]
    if runs:
        bad = {f"{m} N={n}": r["app"]["lost"] + r["app"]["duplicated"] + r["app"]["reordered"] for m, n, r in runs}
        late = {f"{m} N={n}": r["app"].get("undelivered_at_deadline", 0) for m, n, r in runs}
        total = sum(bad.values())
        note = {"lost+dup+reordered": {k: v for k, v in bad.items() if v}} if total else {}
        refused = {f"{m} N={n}": r["app"].get("send_failures") for m, n, r in runs if r["app"].get("send_failures")}
        if refused:
            note["sends refused (no reply started; not counted as lost)"] = refused
        if sum(late.values()):
            note["not delivered before the run's deadline (not counted as lost)"] = {k: v for k, v in late.items() if v}
        out.append(_t("relay: zero lost / duplicated / reordered tokens (every mode and N)",
                      "met" if total == 0 else "missed", total, 0, note=note or None))
        failed = sum(sum(v.values()) for v in refused.values())
        out.append(_t("relay (extra check, not an issue target): every send accepted and every reply complete",
                      "met" if not failed and not sum(late.values()) else "missed", failed, 0,
                      note={"sends refused": refused, "tokens late at the deadline": {k: v for k, v in late.items() if v}}
                      if failed or sum(late.values()) else None))
    else:
        out.append(_t("relay: zero lost / duplicated / reordered tokens", "not measured"))
    out.extend(_issue19_targets(relay_prod))

    tree_mode = "production" if "depths" in modes.get("production", {}).get("tree", {}) else "embedded"
    tree = modes.get(tree_mode, {}).get("tree")
    if tree and "depths" in tree:
        d = tree["depths"]
        lo, hi = (str(min(map(int, d))), str(max(map(int, d)))) if d else (None, None)
        where = f"{tree_mode} ({tree.get('db')}), depth {hi} vs {lo}"
        for key, label in (("fork_view", "fork (view, as the page posts it)"), ("fork_service", "fork (branching.branch_fork)"),
                           ("path", "branch path load for the page (selectors.message_path_window)")):
            a, b = d.get(lo, {}).get(key, {}), d.get(hi, {}).get(key, {})
            if "ms_median" in a and "ms_median" in b and hi == "10000" and lo == "10":
                ratio = round(b["ms_median"] / a["ms_median"], 2) if a["ms_median"] else None
                out.append(_t(f"tree: {label} time at depth 10,000 <= 1.5 x depth 10", _check(ratio, 1.5), ratio, 1.5, where,
                              note=f"{a['ms_median']} ms -> {b['ms_median']} ms; queries {a.get('queries')} -> {b.get('queries')}"
                                   + (f"; rows {a['rows']} -> {b['rows']}" if "rows" in a and "rows" in b else "")))
            elif a.get("status") == "pending" or b.get("status") == "pending":
                out.append(_t(f"tree: {label} at depth 10,000 <= 1.5 x depth 10", "pending", note=a.get("why") or b.get("why")))
            else:
                out.append(_t(f"tree: {label} at depth 10,000 <= 1.5 x depth 10", "not measured",
                              note=f"depths run: {sorted(map(int, d))}"))
        # The window holds min(d, PLAYGROUND_PAGE_MESSAGES) rows: depth 10 loads 10, the deeper chains
        # 100. The same number of rows at 1,000 and 10,000 shows whether depth itself costs anything.
        a, b = d.get("1000", {}).get("path", {}), d.get("10000", {}).get("path", {})
        if "ms_median" in a and "ms_median" in b and a.get("rows") == b.get("rows") and a["ms_median"]:
            ratio = round(b["ms_median"] / a["ms_median"], 2)
            out.append(_t("tree: page window load at depth 10,000 <= 1.5 x depth 1,000 (same rows)", _check(ratio, 1.5), ratio, 1.5,
                          f"{tree_mode} ({tree.get('db')}), depth 10000 vs 1000",
                          note=f"{a['ms_median']} ms -> {b['ms_median']} ms; {a['rows']} rows each"))
        q = [row.get(key, {}).get("queries") for row in d.values() for key in ("path", "path_full") if key in row]
        out.append(_t("tree: branch path (page window and full) is one query at every depth",
                      "met" if q and all(x == 1 for x in q) else "missed", max(q or [0]), 1, where))
        view = tree.get("tree_view", {}).get("2000", {})
        if "view" in view:
            v = view["view"]["ms_median"]
            out.append(_t("tree: tree view of 2,000 nodes < 300 ms server time", "met" if v < 300 else "missed", v, 300,
                          f"{tree_mode} ({tree.get('db')})", note=f"{view['view'].get('queries')} queries, {view['view'].get('bytes')} bytes"))
        else:
            out.append(_t("tree: tree view of 2,000 nodes < 300 ms server time", view.get("status", "not measured"), note=view.get("why")))
    else:
        out.append(_t("tree: fork/path/tree-view targets", "not measured"))

    page_mode = "production" if "weight" in modes.get("production", {}).get("page", {}) else "embedded"
    page = modes.get(page_mode, {}).get("page")
    if page and "weight" in page:
        gz = page["weight"]["totals"]["gzip_bytes"]
        out.append(_t("page: HTML + JS + CSS under 150 KB compressed", "met" if gz < 150 * 1024 else "missed",
                      round(gz / 1024, 1), 150, page_mode, note="KB, gzip -6 of every file the page loads"))
        ext = page["weight"]["external_urls"]
        out.append(_t("page: no CDN", "met" if not ext else "missed", len(ext), 0, page_mode, note=ext or None))
    else:
        out.append(_t("page: weight under 150 KB compressed, no CDN", "not measured"))
    return out


def _issue19_targets(relay_prod: dict) -> list[dict]:
    """Issue 19's table, production mode, each figure from its own run (N, and sends spread
    over 1 s where the issue says so); a run not in this invocation is "not measured"."""
    out = []

    def run(n: int, spread: float = 0.0) -> tuple[dict | None, str, str | None]:
        key = run_key(n, spread)
        where = f"production N={key}"
        r = relay_prod.get(key)
        if r is None:
            return None, where, "run not in this invocation (python -m bench --issue19 runs them all)"
        if "app" not in r:
            return None, where, r.get("error", "the run failed")
        return r, where, None

    def row(target, n, spread, limit, value_of, *, le=True, extra=None):
        r, where, why = run(n, spread)
        value = value_of(r) if r else None
        if r and value is None:
            why = "no baseline in this run (--no-baseline)" if "ratios" not in r else "no figure"
        if r and extra:
            where += f" ({extra(r)})"
        out.append(_t(f"relay: {target}", _check(value, limit, le=le), value, limit, where, note=why))

    def tps_ratio(r):
        return r.get("ratios", {}).get("tokens_per_s")

    row("added TTFT p50, app - baseline, N=1 <= 20 ms", 1, 0, 20, ttft_diff)
    row("added TTFT p50, app - baseline, N=5 <= 50 ms", 5, 0, 50, ttft_diff)
    row("added TTFT p50, app - baseline, N=50 spread 1 s <= 150 ms", 50, ISSUE19_SPREAD, 150, ttft_diff)
    for n in (50, 200):
        row(f"delivered tokens/s >= 0.95 x baseline, N={n} spread 1 s", n, ISSUE19_SPREAD, 0.95, tps_ratio, le=False)
    row("CPU per delivered token, web + worker + postgres + redis <= 0.12 ms", 200, ISSUE19_SPREAD, 0.12,
        lambda r: r.get("app_cpu_ms_per_token", {}).get("app_processes"),
        extra=lambda r: f"with simulator + bench client: {_g(r, 'app_cpu_ms_per_token', 'all')} ms")
    stress = relay_prod.get(run_key(200, 0), {})
    row("web + worker peak RSS at N=200 <= 400 MB", 200, ISSUE19_SPREAD, 400,
        lambda r: r.get("memory_mb", {}).get("web_plus_worker_peak"),
        extra=lambda r: f"N=200 at once, no target: {_g(stress, 'memory_mb', 'web_plus_worker_peak')} MB")
    return out


# --- printing ---------------------------------------------------------------------------------


def _g(d: dict, *path, default="-"):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def relay_table(results: dict) -> str:
    head = ("mode", "N", "who", "TTFT+ p50", "p99", "lag p50", "p95", "p99", "tok/s", "ideal", "app/base",
            "lost/dup/reord", "web MB", "worker MB", "CPU s web/wkr/sim/client", "CPU ms/tok app/all")
    rows = [head]
    for mode, data in results.get("modes", {}).items():
        for n, r in sorted(data.get("relay", {}).items(), key=lambda kv: _run_order(kv[0])):
            for who in ("app", "baseline"):
                f = r.get(who)
                if not f:
                    continue
                cpu = r.get(f"{who}_run", {}).get("cpu_s", {})
                rows.append((
                    mode if who == "app" else "", n if who == "app" else "", who,
                    _g(f, "ttft_added_ms", "p50"), _g(f, "ttft_added_ms", "p99"),
                    _g(f, "lag_ms", "p50"), _g(f, "lag_ms", "p95"), _g(f, "lag_ms", "p99"),
                    _g(f, "tokens_per_s"), _g(f, "tokens_per_s_ideal"),
                    _g(r, "ratios", "tokens_per_s") if who == "app" else "",
                    f"{f['lost']}/{f['duplicated']}/{f['reordered']}" + (f" +{f['undelivered_at_deadline']} late" if f.get("undelivered_at_deadline") else "")
                    + (f" sendfail {sum(f['send_failures'].values())}" if f.get("send_failures") else ""),
                    _g(r, "memory_mb", "web_peak") if who == "app" else "",
                    _g(r, "memory_mb", "worker_peak") if who == "app" else "",
                    "/".join(str(cpu.get(k, "-")) for k in ("web", "worker", "simulator", "bench_client")),
                    f"{_g(r, 'app_cpu_ms_per_token', 'app_processes')}/{_g(r, 'app_cpu_ms_per_token', 'all')}" if who == "app" else "",
                ))
    return _fmt(rows)


def saturation_table(results: dict) -> str:
    """Seconds each process spent busy during a relay run (>= 75% of one core: a web or
    worker process is then bound by its GIL; `machine`: >= 90% of all cores), and the run's
    wall time: which part was the bottleneck, and for how long."""
    names = ("web", "worker", "postgres", "simulator", "bench_client", "machine")
    rows = [("mode", "N", "who", "wall s", *names)]
    for mode, data in results.get("modes", {}).items():
        for n, r in sorted(data.get("relay", {}).items(), key=lambda kv: _run_order(kv[0])):
            for who in ("app", "baseline"):
                run = r.get(f"{who}_run", {})
                busy = _g(run, "cpu_timeline", "busy_seconds", default=None)
                if busy is None:
                    continue
                rows.append((mode if who == "app" else "", n if who == "app" else "", who, run.get("wall_s", "-"),
                             *(busy.get(k, "-") for k in names)))
    return _fmt(rows) if len(rows) > 1 else "(no timeline)"


def _fmt(rows) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def tree_table(results: dict) -> str:
    rows = [("mode", "what", "depth/nodes", "median ms", "queries")]
    for mode, data in results.get("modes", {}).items():
        tree = data.get("tree")
        if not tree or "depths" not in tree:
            continue
        for d, row in sorted(tree["depths"].items(), key=lambda kv: int(kv[0])):
            for key in ("path", "path_full", "earlier", "fork_service", "fork_view", "open_fork_page"):
                fig = row.get(key)
                if fig is None:
                    continue
                label = f"{key} ({fig['rows']} rows)" if "rows" in fig else key
                rows.append((mode, label, d, fig.get("ms_median", fig.get("status", "-")), fig.get("queries", "-")))
        for size, row in sorted(tree.get("tree_view", {}).items(), key=lambda kv: int(kv[0])):
            for key in ("view", "layout_only"):
                fig = row.get(key, {}) if isinstance(row, dict) else {}
                rows.append((mode, f"tree {key}", size, fig.get("ms_median", row.get("status", "-")), fig.get("queries", "-")))
    return _fmt(rows) if len(rows) > 1 else "(no tree results)"


def page_table(results: dict) -> str:
    rows = [("mode", "raw KB", "gzip KB", "as served KB", "TTI ms", "DCL ms", "ws open ms", "external")]
    for mode, data in results.get("modes", {}).items():
        page = data.get("page")
        if not page or "weight" not in page:
            continue
        t = page["weight"]["totals"]
        tti = page.get("browser", {})
        rows.append((mode, round(t["raw_bytes"] / 1024, 1), round(t["gzip_bytes"] / 1024, 1), round(t["wire_bytes"] / 1024, 1),
                     tti.get("tti_ms_median", "-"), tti.get("dom_content_loaded_ms_median", "-"), tti.get("ws_open_ms_median", "-"),
                     len(page["weight"]["external_urls"])))
    return _fmt(rows) if len(rows) > 1 else "(no page results)"


def targets_table(rows: list[dict]) -> str:
    out = [("status", "target", "value", "limit", "where")]
    for r in rows:
        out.append((r["status"].upper(), r["target"], r.get("value", "") if r.get("value") is not None else "-",
                    r.get("limit") if r.get("limit") is not None else "-", r.get("where", "")))
    widths = [max(len(str(r[i])) for r in out) for i in range(len(out[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in out)


def micro_table(results: dict) -> str:
    modes = [m for m, d in results.get("modes", {}).items() if isinstance(d.get("micro"), dict) and "render_delta" in d["micro"]]
    if not modes:
        return "(no micro results)"
    ops = [k for k, v in results["modes"][modes[0]]["micro"].items() if isinstance(v, dict)]
    rows = [("step (us per op)", *[f"{m} cpu" for m in modes], *[f"{m} wall" for m in modes])]
    for op in ops:
        rows.append((op, *[_g(results["modes"][m]["micro"], op, "cpu_us") for m in modes],
                     *[_g(results["modes"][m]["micro"], op, "wall_us") for m in modes]))
    return _fmt(rows)
