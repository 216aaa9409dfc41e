"""The benchmark's report: Markdown (every figure and ratio), JSON (raw), and a PNG plot of
throughput and p99 latency against concurrency for each scenario, ceilings dashed."""

import json
from pathlib import Path

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def _ratio(results, scenario, level):
    """The application's requests per second over pgbench's transactions per second (same work)."""
    ceiling = results["ceilings"].get(scenario, {}).get(level)
    run = results["runs"].get(scenario, {}).get(level)
    if not ceiling or not run or not ceiling["tps"]:
        return None
    return run["rps"] / ceiling["tps"]


def _twin_run(results, scenario, level):
    from bench.run import SCENARIOS

    twin_scenario = SCENARIOS[scenario][3]
    return results.get("twin_runs", {}).get(twin_scenario, {}).get(level) if twin_scenario else None


def _twin_failed(twin):
    """More than 1 % of the twin's answers were errors: it answered fast by failing, so no comparison
    with it means anything. (A deadlock or two is the naive twin's own: it locks sender, then receiver.)"""
    return twin.get("errors", 0) > 0.01 * max(twin.get("requests", 0), 1)


def _twin_ratio(results, scenario, level):
    """The project's requests per second over its naive twin's, measured side by side; None where the
    twin answered errors (a twin that fails fast is no measure)."""
    twin = _twin_run(results, scenario, level)
    run = results["runs"].get(scenario, {}).get(level)
    if not twin or not run or not twin["rps"] or _twin_failed(twin):
        return None
    return run["rps"] / twin["rps"]


def _queries(results, scenario):
    counted = results["queries"].get(scenario)
    if isinstance(counted, dict):
        return f"{counted['queries']} ({counted['round_trips']})"
    return "" if counted is None else str(counted)


def payout_summary(results):
    """A 1,000-line payout's time against 1,000 single transfers from the same distributor."""
    from bench.run import PAYOUT_LINES

    run = results["runs"].get("payouts", {}).get(1)
    single = results.get("payout_single_transfers")
    if not run or not single or not single["rps"]:
        return None
    singles_seconds = results.get("payout_lines", PAYOUT_LINES) / single["rps"]
    return {
        "payout_p50_s": run["p50_ms"] / 1000,
        "payout_p99_s": run["p99_ms"] / 1000,
        "singles_seconds": singles_seconds,
        "share": run["p50_ms"] / 1000 / singles_seconds,
    }


def verdicts(results, targets, verify_target_seconds):
    """PASS/FAIL for correctness (errors, exactly-once, a clean ledger), MET/MISSED for each
    performance target of the issue, judged on this run's numbers."""
    from bench.run import (
        KEYED_OVERHEAD_TARGET,
        PAYOUT_TARGET_SECONDS,
        PAYOUT_TARGET_SHARE,
        PURCHASE_QUERY_BUDGET,
        TWIN_TARGETS,
    )

    lines = []

    def judge(ok, text):  # correctness: a FAIL makes the run exit non-zero
        lines.append(f"{'PASS' if ok else 'FAIL'}: {text}")

    def target(ok, text):  # a performance target of the issue, reported as met or missed
        lines.append(f"{'MET' if ok else 'MISSED'}: {text}")

    for scenario, runs in results["runs"].items():
        errors = sum(run["errors"] for run in runs.values())
        judge(errors == 0, f"{scenario}: {errors} errors over {sum(r['requests'] for r in runs.values())} requests")
        for level, check in results["checks"].get(scenario, {}).items():
            if level == "ceiling_verify":
                judge(check["ok"], f"{scenario}: ledger clean after the pgbench ceiling runs")
                continue
            if check:
                judge(check["exactly_once"], f"{scenario} @ {level}: journal grew by exactly the successes")
                judge(check["verify"]["ok"], f"{scenario} @ {level}: verify_ledger clean")
    for scenario, minimum in TWIN_TARGETS.items():
        for level, run in results["runs"].get(scenario, {}).items():
            twin = _twin_run(results, scenario, level)
            if twin and _twin_failed(twin):  # a comparison with a twin that fails fast would mean nothing
                first = (twin.get("error_samples") or [""])[0].split(":")[0]
                judge(False, f"{scenario} @ {level}: the naive twin answered {twin['errors']} errors ({first})")
                continue
            ratio = _twin_ratio(results, scenario, level)
            if ratio is None:
                continue
            target(ratio >= minimum, f"{scenario} @ {level}: {ratio:.2f}x the naive twin (target >= {minimum}x)")
            target(
                run["p99_ms"] <= twin["p99_ms"],
                f"{scenario} @ {level}: p99 {run['p99_ms']:.0f} ms, the twin's {twin['p99_ms']:.0f} ms (no worse)",
            )
    keyed, unkeyed = results["runs"].get("transfers", {}), results["runs"].get("transfers_unkeyed", {})
    for level in sorted(set(keyed) & set(unkeyed)):
        cost = unkeyed[level]["rps"] / keyed[level]["rps"] if keyed[level]["rps"] else float("inf")
        target(
            cost <= KEYED_OVERHEAD_TARGET,
            f"transfers @ {level}: a keyed transfer costs {cost:.2f}x an unkeyed one "
            f"(target <= {KEYED_OVERHEAD_TARGET}x)",
        )
    for scenario, goal in targets.items():
        runs = results["runs"].get(scenario)
        if not runs:
            continue
        if "min_ratio_at_8" in goal and 8 in runs:
            ratio = _ratio(results, scenario, 8)
            if ratio is not None:
                target(
                    ratio >= goal["min_ratio_at_8"],
                    f"{scenario} @ 8: {ratio:.0%} of its raw-SQL ceiling (target {goal['min_ratio_at_8']:.0%})",
                )
        if "max_p99_ms_at_32" in goal and 32 in runs:
            p99 = runs[32]["p99_ms"]
            target(
                p99 < goal["max_p99_ms_at_32"],
                f"{scenario} @ 32: p99 {p99:.0f} ms (target < {goal['max_p99_ms_at_32']} ms)",
            )
        if "max_p95_ms_at_8" in goal and 8 in runs:
            p95 = runs[8]["p95_ms"]
            target(
                p95 < goal["max_p95_ms_at_8"],
                f"{scenario} @ 8: p95 {p95:.1f} ms (target < {goal['max_p95_ms_at_8']} ms)",
            )
    payout = payout_summary(results)
    if payout:
        target(
            payout["payout_p50_s"] < PAYOUT_TARGET_SECONDS,
            f"payouts: 1,000 lines in {payout['payout_p50_s']:.2f} s at p50 (target < {PAYOUT_TARGET_SECONDS:g} s)",
        )
        target(
            payout["share"] < PAYOUT_TARGET_SHARE,
            f"payouts: {payout['share']:.1%} of the time of 1,000 single transfers "
            f"({payout['singles_seconds']:.1f} s one after another; target < {PAYOUT_TARGET_SHARE:.0%})",
        )
    purchase = results["queries"].get("purchases")
    if isinstance(purchase, dict):
        target(
            purchase["queries"] <= PURCHASE_QUERY_BUDGET,
            f"purchases: {purchase['queries']} queries on the acceptance path (target <= {PURCHASE_QUERY_BUDGET})",
        )
    if results.get("busy_hour"):
        from bench.busy_hour import verdicts as busy_hour_verdicts

        for kind, ok, text in busy_hour_verdicts(results["busy_hour"]):
            (judge if kind == "judge" else target)(ok, text)
    verify = results["verify_initial"]
    judge(verify["ok"], f"verify_ledger clean on the seeded journal of {results['seed']['transfers']:,} transfers")
    target(
        verify["seconds"] < verify_target_seconds,
        f"verify_ledger on {results['seed']['transfers']:,} transfers: {verify['seconds']:.1f} s "
        f"(target < {verify_target_seconds} s), peak RSS {verify['rss_mb'][0]:.0f} -> {verify['rss_mb'][1]:.0f} MB",
    )
    return lines


def markdown_table(results, titles):
    rows = [
        "| scenario | clients | req/s | p50 ms | p95 ms | p99 ms | errors | queries (round trips) "
        "| twin req/s | twin p99 ms | x twin |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario, runs in results["runs"].items():
        for level, run in runs.items():
            twin = _twin_run(results, scenario, level)
            ratio = _twin_ratio(results, scenario, level)
            rows.append(
                f"| {titles[scenario]} | {level} | {run['rps']:.0f} | {run['p50_ms']:.1f} | {run['p95_ms']:.1f} | "
                f"{run['p99_ms']:.1f} | {run['errors']} | {_queries(results, scenario)} | "
                f"{'' if not twin else format(twin['rps'], '.0f')} | "
                f"{'' if not twin else format(twin['p99_ms'], '.1f')} | "
                f"{'' if ratio is None else format(ratio, '.2f')} |"
            )
    return "\n".join(rows)


def ceiling_table(results, titles):
    rows = [
        "| raw-SQL ceiling (pgbench) | clients | tps | p50 ms | p95 ms | p99 ms | failed | app req/s | app / ceiling |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario, levels in results["ceilings"].items():
        for level, c in levels.items():
            run = results["runs"].get(scenario, {}).get(level)
            ratio = _ratio(results, scenario, level)
            rows.append(
                f"| {titles[scenario]} | {level} | {c['tps']:.0f} | {c['p50_ms']:.2f} | {c['p95_ms']:.2f} | "
                f"{c['p99_ms']:.2f} | {c['failed']} | {'' if not run else format(run['rps'], '.0f')} | "
                f"{'' if ratio is None else format(ratio, '.0%')} |"
            )
    return "\n".join(rows)


def cpu_table(results, titles):
    """CPU milliseconds per answered request by where it ran, the project's beside its twin's (bench/run.py,
    run_load_metered): the two cores are shared, so requests per second follow their sum."""
    rows = [
        "| scenario | clients | web | database | load generator | twin: web | database | load generator |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    parts = ("web", "database", "load generator")
    for scenario, runs in results["runs"].items():
        for level, run in runs.items():
            spent = run.get("cpu_ms_per_request")
            if not spent:
                continue
            twin = _twin_run(results, scenario, level) or {}
            twin_spent = twin.get("cpu_ms_per_request") if not _twin_failed(twin) else None
            theirs = [f"{twin_spent[part]:.1f}" if twin_spent else "" for part in parts]
            ours = [f"{spent[part]:.1f}" for part in parts]
            rows.append(f"| {titles[scenario]} | {level} | {' | '.join(ours)} | {' | '.join(theirs)} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def cpu_section(results, titles):
    table = cpu_table(results, titles)
    if not table:
        return []
    caption = (
        "CPU milliseconds per answered request, by where it ran (the server's processes, PostgreSQL's, the load "
        "generator's; the warm-up second included), read from /proc around each run:"
    )
    return [caption, "", table, ""]


def extras_table(results):
    """Keyed against unkeyed transfers, and the bulk payout against single transfers."""
    rows = ["| measure | value |", "| --- | ---: |"]
    keyed, unkeyed = results["runs"].get("transfers", {}), results["runs"].get("transfers_unkeyed", {})
    for level in sorted(set(keyed) & set(unkeyed)):
        cost = unkeyed[level]["rps"] / keyed[level]["rps"] if keyed[level]["rps"] else float("inf")
        rows.append(
            f"| transfers @ {level}: unkeyed {unkeyed[level]['rps']:.0f} req/s, keyed {keyed[level]['rps']:.0f} req/s; "
            f"a keyed transfer costs | {cost:.2f}x |"
        )
    # Issue 16 asks where the floor is when a ratio cannot be reached: a transfer costs at least the
    # floor's request (gunicorn, the load generator, Django and DRF's dispatch, one query), so it can
    # be at most this many times as fast as the twin's, had everything of its own cost nothing.
    for level, floor in sorted(results["runs"].get("floor", {}).items()):
        twin = _twin_run(results, "transfers", level)
        if twin and twin["rps"] and not _twin_failed(twin):
            rows.append(
                f"| the floor @ {level}: {floor['rps']:.0f} req/s, the twin's transfer {twin['rps']:.0f} req/s; the "
                f"most a transfer of this stack could be x twin | {floor['rps'] / twin['rps']:.2f}x |"
            )
    for level, run in sorted(results["runs"].get("topups", {}).items()):
        if "credit_p50_ms" in run:
            rows.append(
                f"| top-ups @ {level}: {run['rps']:.0f} completed/s; credit latency, webhook -> balance, "
                f"p50 / p95 / p99 | {run['credit_p50_ms']:.1f} / {run['credit_p95_ms']:.1f} / "
                f"{run['credit_p99_ms']:.1f} ms |"
            )
    payout = payout_summary(results)
    if payout:
        rows += [
            f"| a 1,000-line payout, p50 (p99) | {payout['payout_p50_s']:.3f} s ({payout['payout_p99_s']:.3f} s) |",
            f"| 1,000 single hot-wallet transfers one after another | {payout['singles_seconds']:.2f} s |",
            f"| the payout's share of that | {payout['share']:.1%} |",
        ]
    return "\n".join(rows)


def plot(results, titles, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, tail) = plt.subplots(1, 2, figsize=(13, 6.5))
    for scenario, runs in results["runs"].items():
        levels = sorted(runs)
        line = throughput.plot(levels, [runs[level]["rps"] for level in levels], marker="o", label=titles[scenario])
        tail.plot(levels, [runs[level]["p99_ms"] for level in levels], marker="o", label=titles[scenario])
        twin = {level: _twin_run(results, scenario, level) for level in levels}
        twin_levels = [level for level in levels if twin[level]]
        if twin_levels and scenario != "transfers_unkeyed":
            colour = line[0].get_color()
            throughput.plot(twin_levels, [twin[lv]["rps"] for lv in twin_levels], linestyle=":", color=colour)
            tail.plot(twin_levels, [twin[lv]["p99_ms"] for lv in twin_levels], linestyle=":", color=colour)
        ceiling = results["ceilings"].get(scenario)
        if ceiling:
            c_levels = sorted(ceiling)
            colour = line[0].get_color()
            throughput.plot(
                c_levels,
                [ceiling[level]["tps"] for level in c_levels],
                linestyle="--",
                color=colour,
                label=f"{titles[scenario]}: pgbench ceiling",
            )
            tail.plot(c_levels, [ceiling[level]["p99_ms"] for level in c_levels], linestyle="--", color=colour)
    busy = results.get("busy_hour") or {}
    for mode, marker in (("polling", "*"), ("callbacks", "P")):
        if busy.get(mode):
            measured = busy[mode]["measured"]
            for name, shape in (("purchases", marker), ("transfers", "x")):
                run = measured[name]
                label = f"9. busy hour ({mode}): {'accepted purchases' if name == 'purchases' else 'transfers'}"
                throughput.plot([busy["clients"]], [run["rps"]], marker=shape, markersize=11, linestyle="", label=label)
                tail.plot([busy["clients"]], [run["p99_ms"]], marker=shape, markersize=11, linestyle="")
    for axis, label in ((throughput, "requests (transactions) per second"), (tail, "p99 latency, ms")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("concurrent clients")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    throughput.set_title("Throughput (dotted: the naive twin; dashed: raw SQL in pgbench)")
    tail.set_title("p99 latency")
    handles, labels = throughput.get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=8, loc="lower center", ncol=3)
    figure.suptitle(f"Recharge backend benchmark, {results['date']}, {results['machine']['cores']} cores")
    figure.tight_layout(rect=(0, 0.16, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _threads(concurrency):
    """A worker's thread count, or one per mode ("polling 256, callbacks 128")."""
    if isinstance(concurrency, dict):
        return ", ".join(f"{mode} {count}" for mode, count in concurrency.items())
    return str(concurrency)


def busy_hour_table(results):
    """Scenario 9 (bench/busy_hour.py): its own stacks, one row per mode and phase."""
    busy = results.get("busy_hour")
    if not busy:
        return ""
    rows = [
        f"### 9. Busy hour: gunicorn 2x4, one worker process ({_threads(busy['worker_concurrency'])} threads, "
        f"nice {busy.get('worker_nice', 0)}), the sandbox at {busy['gateway_latency_ms']} ms, "
        f"{busy['clients']} clients",
        "",
        "| mode | phase | purchases accepted/s | accept p95 ms | transfers/s (same stack) | transfers p95 ms "
        "| errors | all final after (s) | purchases by status | received twice | held left | ledger |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for mode in ("polling", "callbacks"):
        found = busy.get(mode)
        if not found:
            continue
        for phase in ("measured", "worker_killed", "broker_stopped"):
            result = found[phase]
            checks = result["checks"]
            if phase == "measured":
                accepted, transfers = result["purchases"], result["transfers"]
                cells = [f"{accepted['rps']:.1f}", f"{accepted['p95_ms']:.0f}", f"{transfers['rps']:.1f}"]
                cells += [f"{transfers['p95_ms']:.0f}", str(accepted["errors"])]
            else:
                cells = [f"{result['accepted_rps']:.1f}", f"{result['p95_ms']:.0f}", "", "", str(result["errors"])]
            final = result["final_after_seconds"]
            cells += [
                "never" if final is None else f"{final:.1f}",
                ", ".join(f"{status} {count}" for status, count in sorted(checks["statuses"].items())),
                str(checks["received_twice"]),
                checks["held_left"],
                "clean" if checks["ledger_clean"] else "NOT CLEAN",
            ]
            rows.append(f"| {mode} | {phase.replace('_', ' ')} | " + " | ".join(cells) + " |")
    cpu_rows = []
    for mode in ("polling", "callbacks"):
        cpu = (busy.get(mode) or {}).get("measured", {}).get("cpu_ms_per_request")
        for kind in ("transfer", "purchase") if cpu else ():
            tiers = cpu.get(kind) or {}
            cells = [f"{tiers.get(tier, 0):.1f}" for tier in ("web", "worker", "database", "operator")]
            cpu_rows.append(f"| {mode} | {kind} | " + " | ".join(cells) + f" | {sum(tiers.values()):.1f} |")
    if cpu_rows:
        rows += [
            "",
            "CPU per request in the measured phase, ms (a purchase's until it is final: the worker's and "
            "the database's work runs on after the load; the operator: the sandbox's callback deliveries, in a "
            "process of their own in callback mode, as a real aggregator's run on its machines):",
            "",
            "| mode | request | web | worker | database | operator | all |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
            *cpu_rows,
        ]
    return "\n".join(rows)


def render(results, titles, verdict_lines):
    m = results["machine"]
    seed = results["seed"]
    verify = results["verify_initial"]
    server = results["server"]
    args = results["args"]
    lines = [
        "# Benchmark report",
        "",
        f"- **Date:** {results['date']}",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores, {m['memory']}; {m['os']}",
        f"- **Software:** Python {m['python']}, Django {m['django']}, PostgreSQL {m['postgresql']}",
        f"- **Server:** gunicorn, {server['workers']} workers x {server['threads']} thread(s), persistent connections; "
        "the naive twin (bench/naive/) served by the same shape, on its own database on the same PostgreSQL",
        f"- **Machine load** (1-minute average) before the run: {results.get('load_before', ['?'])[0]}, "
        f"after: {results.get('load_after', ['?'])[0]}",
        f"- **Load:** aiohttp clients in a separate process on loopback; {args['duration']:g} s measured per run "
        f"after a 1 s warm-up; concurrency {args['concurrency']}",
        f"- **Data:** {seed['users']:,} users with funded wallets, {seed['transfers']:,} journal rows before the load "
        f"(seeded in {seed['seconds']:.0f} s); the busy wallet's history: {results['history_rows']:,} transfers",
        f"- **verify_ledger** on the seeded journal: {'clean' if verify['ok'] else 'NOT CLEAN'} in "
        f"{verify['seconds']:.1f} s, peak RSS {verify['rss_mb'][0]:.0f} MB before, {verify['rss_mb'][1]:.0f} MB after",
        "",
        "## Results",
        "",
        markdown_table(results, titles),
        "",
        "x twin = the project's requests per second / its naive twin's (bench/naive/: what the product "
        "descriptions' own code does) for the same request at the same concurrency, run right after it. "
        "Queries are those Django logs (BEGIN, COMMIT and savepoints included); round trips add the persistent "
        "connection's health check.",
        "",
        extras_table(results),
        "",
        *cpu_section(results, titles),
        "App / ceiling = the application's requests per second / pgbench's transactions per second for the same "
        "work in raw SQL (bench/pgbench/), at the same concurrency, on the same server, in the same run.",
        "",
        ceiling_table(results, titles),
        "",
        busy_hour_table(results),
        "",
        "## Targets",
        "",
        *[f"- {line}" for line in verdict_lines],
        "",
        "![throughput and p99 against concurrency](latest.png)",
        "",
    ]
    return "\n".join(lines)


def write_report(results, folder: Path, *, update_readme=False, readme=None):
    from bench.run import SCENARIOS, TARGETS, VERIFY_TARGET_SECONDS

    titles = {name: spec[0] for name, spec in SCENARIOS.items()}
    results["verdicts"] = verdicts(results, TARGETS, VERIFY_TARGET_SECONDS)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    plot(results, titles, folder / "latest.png")
    markdown = render(results, titles, results["verdicts"])
    (folder / "latest.md").write_text(markdown)
    written = [folder / "latest.md", folder / "latest.json", folder / "latest.png"]
    if update_readme and readme is not None:
        text = readme.read_text()
        if README_START in text and README_END in text:
            head, rest = text.split(README_START, 1)
            _, tail = rest.split(README_END, 1)
            summary = (
                f"Latest run ({results['date']}, {results['machine']['cores']} cores, gunicorn "
                f"{results['server']['workers']}x{results['server']['threads']}, {results['seed']['transfers']:,}-row "
                f"journal, verify_ledger {results['verify_initial']['seconds']:.1f} s):\n\n"
            )
            readme.write_text(f"{head}{README_START}\n{summary}{markdown_table(results, titles)}\n{README_END}{tail}")
            written.append(readme)
    return written


def load_results(path: Path) -> dict:
    """latest.json as written (JSON turned the concurrency keys into strings)."""
    results = json.loads(Path(path).read_text())
    for section in ("runs", "twin_runs", "ceilings", "checks"):
        results[section] = {
            scenario: {(int(level) if level.isdigit() else level): value for level, value in levels.items()}
            for scenario, levels in results.get(section, {}).items()
        }
    return results


def main():
    """Re-render a saved run: python bench/report.py bench/results/latest.json [--update-readme]"""
    import argparse
    import sys

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("json")
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args()
    path = Path(args.json)
    written = write_report(load_results(path), path.parent, update_readme=args.update_readme, readme=root / "README.md")
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
