"""The benchmark's report: Markdown (every figure and ratio), JSON (raw), and a PNG plot of
throughput and p99 latency against concurrency for each scenario, ceilings dashed."""

import json
from pathlib import Path

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def _ratio(results, scenario, level):
    ceiling = results["ceilings"].get(scenario, {}).get(level)
    run = results["runs"].get(scenario, {}).get(level)
    if not ceiling or not run or not ceiling["tps"]:
        return None
    return run["rps"] / ceiling["tps"]


def _peak_ratio(results, scenario):
    """The most the application did at any concurrency over the most pgbench did at any."""
    ceiling = results["ceilings"].get(scenario)
    runs = results["runs"].get(scenario)
    if not ceiling or not runs:
        return None
    return max(run["rps"] for run in runs.values()) / max(c["tps"] for c in ceiling.values())


def verdicts(results, targets, verify_target_seconds):
    """PASS/FAIL for correctness (errors, exactly-once, a clean ledger), MET/MISSED for each
    performance target of the issue, judged on this run's numbers."""
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
    for scenario, goal in targets.items():
        runs = results["runs"].get(scenario)
        if not runs:
            continue
        if "min_ratio" in goal:
            for level in runs:
                ratio = _ratio(results, scenario, level)
                if ratio is not None:
                    target(
                        ratio >= goal["min_ratio"],
                        f"{scenario} @ {level}: {ratio:.0%} of the raw-SQL ceiling (target {goal['min_ratio']:.0%})",
                    )
            peak = _peak_ratio(results, scenario)
            if peak is not None:
                target(
                    peak >= goal["min_ratio"],
                    f"{scenario}, best against best: {peak:.0%} of the most pgbench did at any concurrency "
                    f"(target {goal['min_ratio']:.0%})",
                )
        if "max_p99_ms_at_32" in goal and 32 in runs:
            p99 = runs[32]["p99_ms"]
            target(
                p99 < goal["max_p99_ms_at_32"],
                f"{scenario} @ 32: p99 {p99:.0f} ms (target < {goal['max_p99_ms_at_32']} ms)",
            )
        if "max_p95_ms" in goal:
            for level, run in runs.items():
                target(
                    run["p95_ms"] < goal["max_p95_ms"],
                    f"{scenario} @ {level}: p95 {run['p95_ms']:.1f} ms (target < {goal['max_p95_ms']} ms)",
                )
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
        "| scenario | clients | req/s | p50 ms | p95 ms | p99 ms | errors | queries/req | pgbench tps | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario, runs in results["runs"].items():
        for level, run in runs.items():
            ceiling = results["ceilings"].get(scenario, {}).get(level)
            ratio = _ratio(results, scenario, level)
            ceiling_tps = f"{ceiling['tps']:.0f}" if ceiling else ""
            ratio_text = f"{ratio:.0%}" if ratio is not None else ""
            rows.append(
                f"| {titles[scenario]} | {level} | {run['rps']:.0f} | {run['p50_ms']:.1f} | {run['p95_ms']:.1f} | "
                f"{run['p99_ms']:.1f} | {run['errors']} | {results['queries'].get(scenario, '')} | "
                f"{ceiling_tps} | {ratio_text} |"
            )
    return "\n".join(rows)


def ceiling_table(results, titles):
    rows = [
        "| raw-SQL ceiling (pgbench) | clients | tps | p50 ms | p95 ms | p99 ms | failed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario, levels in results["ceilings"].items():
        for level, c in levels.items():
            rows.append(
                f"| {titles[scenario]} | {level} | {c['tps']:.0f} | {c['p50_ms']:.2f} | {c['p95_ms']:.2f} | "
                f"{c['p99_ms']:.2f} | {c['failed']} |"
            )
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
    for axis, label in ((throughput, "requests (transactions) per second"), (tail, "p99 latency, ms")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("concurrent clients")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    throughput.set_title("Throughput (dashed: raw SQL in pgbench)")
    tail.set_title("p99 latency")
    handles, labels = throughput.get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=8, loc="lower center", ncol=3)
    figure.suptitle(f"Recharge backend benchmark, {results['date']}, {results['machine']['cores']} cores")
    figure.tight_layout(rect=(0, 0.16, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


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
        f"- **Server:** gunicorn, {server['workers']} workers x {server['threads']} thread(s), persistent connections",
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
        "Ratio = the application's requests per second / pgbench's transactions per second for the same work "
        "in raw SQL, at the same concurrency, on the same server, in the same run.",
        "",
        ceiling_table(results, titles),
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

    titles = {name: title for name, (title, _, _) in SCENARIOS.items()}
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
    for section in ("runs", "ceilings", "checks"):
        results[section] = {
            scenario: {(int(level) if level.isdigit() else level): value for level, value in levels.items()}
            for scenario, levels in results[section].items()
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
