"""Turn the results dict into the console table, the markdown tables and the target verdicts."""

from __future__ import annotations

from typing import Any

LABELS = {"direct": "upstream direct", "bare": "bare proxy", "sluice": "Sluice", "sluice-log": "Sluice + access log"}
MODE_LABELS = {"json": "non-streaming", "stream": "streaming"}


def added_latency(results: dict[str, Any]) -> None:
    """Add, per proxied target, its p50/p99 over the direct upstream's (same mode and concurrency)."""
    direct = results["targets"].get("direct")
    if not direct:
        return
    for name, target in results["targets"].items():
        if name == "direct":
            continue
        for mode, by_conc in target.get("wrk", {}).items():
            for conc, row in by_conc.items():
                base = direct.get("wrk", {}).get(mode, {}).get(conc)
                if base:
                    row["added_p50_ms"] = row["p50_ms"] - base["p50_ms"]
                    row["added_p99_ms"] = row["p99_ms"] - base["p99_ms"]
        ttft, base_ttft = target.get("ttft"), direct.get("ttft")
        if ttft and base_ttft:
            ttft["added_ttft_p50_ms"] = ttft["ttft_p50_ms"] - base_ttft["ttft_p50_ms"]
            ttft["added_ttft_p99_ms"] = ttft["ttft_p99_ms"] - base_ttft["ttft_p99_ms"]


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets: added p50 ≤ 1 ms at concurrency 1; ≥ 50% of the bare proxy's req/s at 32."""
    out: list[dict[str, Any]] = []
    targets = results["targets"]
    sluice, bare = targets.get("sluice"), targets.get("bare")
    if not sluice:
        return out
    for mode, by_conc in sluice.get("wrk", {}).items():
        row = by_conc.get("1")
        if row and "added_p50_ms" in row:
            value = row["added_p50_ms"]
            out.append({"target": f"added p50 at c=1, {MODE_LABELS[mode]}", "want": "≤ 1.00 ms",
                        "got": f"{value:.2f} ms", "holds": value <= 1.0})
    ttft = sluice.get("ttft") or {}
    if "added_ttft_p50_ms" in ttft:
        value = ttft["added_ttft_p50_ms"]
        out.append({"target": "added TTFT p50 at c=1", "want": "≤ 1.00 ms", "got": f"{value:.2f} ms",
                    "holds": value <= 1.0})
    high = max((c for c in results["connections"] if c > 1), default=None)
    if bare and high is not None:
        for mode, by_conc in sluice.get("wrk", {}).items():
            mine, theirs = by_conc.get(str(high)), bare.get("wrk", {}).get(mode, {}).get(str(high))
            if mine and theirs:
                share = mine["rps"] / theirs["rps"]
                out.append({"target": f"req/s at c={high} vs bare proxy, {MODE_LABELS[mode]}", "want": "≥ 50%",
                            "got": f"{share:.0%}", "holds": share >= 0.5})
    return out


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _added(value: float | None) -> str:
    return "" if value is None else f"{value:+.2f}"


def wrk_table(results: dict[str, Any]) -> list[str]:
    lines = ["| server | mode | conns | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | server CPU µs/req |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for mode in results["modes"]:
        for conc in results["connections"]:
            for name, target in results["targets"].items():
                row = target.get("wrk", {}).get(mode, {}).get(str(conc))
                if not row:
                    continue
                cpu = row.get("server_cpu_us_per_req")
                lines.append(f"| {LABELS[name]} | {MODE_LABELS[mode]} | {conc} | {row['rps']:,.0f} | "
                             f"{_ms(row['p50_ms'])} | {_ms(row['p99_ms'])} | {_added(row.get('added_p50_ms'))} | "
                             f"{_added(row.get('added_p99_ms'))} | {'' if cpu is None else f'{cpu:,.0f}'} |")
    return lines


def ttft_table(results: dict[str, Any]) -> list[str]:
    lines = ["| server | requests | TTFB p50 ms | TTFT p50 ms | TTFT p99 ms | added TTFT p50 ms | added TTFT p99 ms "
             "| full stream p50 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, target in results["targets"].items():
        t = target.get("ttft")
        if not t:
            continue
        lines.append(f"| {LABELS[name]} | {t['requests']} | {_ms(t['ttfb_p50_ms'])} | {_ms(t['ttft_p50_ms'])} | "
                     f"{_ms(t['ttft_p99_ms'])} | {_added(t.get('added_ttft_p50_ms'))} | "
                     f"{_added(t.get('added_ttft_p99_ms'))} | {_ms(t['total_p50_ms'])} |")
    return lines


def verdict_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | want | got | holds |", "|---|---|---|---|"]
    lines += [f"| {r['target']} | {r['want']} | {r['got']} | {'yes' if r['holds'] else '**no**'} |" for r in rows]
    return lines


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    head = [f"Run {results['started']}: {m['cpu']}, {m['nproc']} CPUs, Python {m['python']}, "
            f"{results['duration_s']} s per wrk run, emulator chunk delay {results.get('chunk_delay_ms', 0)} ms, layout `{results['layout']}` ({results['layout_note']}).", ""]
    parts = head + ["### wrk", ""] + wrk_table(results)
    if any(t.get("ttft") for t in results["targets"].values()):
        parts += ["", "### Streaming, time to first token (concurrency 1)", ""] + ttft_table(results)
    if results.get("verdicts"):
        parts += ["", "### Targets", ""] + verdict_table(results["verdicts"])
    return "\n".join(parts) + "\n"
