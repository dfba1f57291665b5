"""bench_gateway's printed table: one row per figure, "before" (with ``--before REF``) and "now" side by side,
the target, and whether "now" meets it."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

Row = tuple[str, str, str, str, str]


def table(results: dict[str, Any]) -> str:
    t = results["targets"]
    before = results.get("before")
    rows: list[Row] = [("measure", f"before ({before})" if before else "", "now", "target", "met")]
    rows += prep_rows(results.get("image_prep", {}), t)
    if "throughput" in results:
        rows += throughput_rows(results["throughput"], t)
    if "cpu" in results:
        rows += cpu_rows(results["cpu"], t)
    if "rss" in results:
        rows += rss_rows(results["rss"], t)
    if "prefix_cache" in results:
        rows += prefix_rows(results["prefix_cache"])
    if not before:
        rows = [(m, "", now, target, met) for m, _, now, target, met in rows]
    load = results["loadavg_1min"]
    footer = f"load average (1 min) at start / end: {load.get('start')} / {load.get('end')}; per section: "
    footer += ", ".join(f"{k} {v[0]}->{v[1]}" for k, v in load.items() if isinstance(v, list))
    return render(rows) + "\n" + footer


def render(rows: list[Row]) -> str:
    keep = [i for i in range(5) if i != 1 or any(row[1] for row in rows[1:])]
    widths = {i: max(len(row[i]) for row in rows) for i in keep}
    return "\n".join("  ".join(row[i].ljust(widths[i]) for i in keep).rstrip() for row in rows)


def met(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "NO")


def prep_rows(prep: dict[str, Any], t: dict[str, float]) -> list[Row]:
    rows: list[Row] = []
    for name, r in prep.items():
        extra = " (byte-identical)" if r["byte_identical"] else ""
        value = f"{r['naive_ms']:.1f} / {r['ours_ms']:.1f} ms = {r['ratio']:.2f}x{extra}"
        if name == "24MP JPEG":
            rows.append(
                (
                    f"prep {name}: naive / ours",
                    "",
                    value,
                    "<= 0.25x",
                    met(r["ratio"] <= t["prep_24mp_ratio_max"]),
                )
            )
        elif name == "1MP JPEG":
            rows.append((f"prep {name}: naive / ours", "", value, "byte-identical", met(r["byte_identical"])))
        else:
            rows.append((f"prep {name}: naive / ours", "", value, "-", ""))
    return rows


def throughput_rows(th: dict[str, Any], t: dict[str, float]) -> list[Row]:
    direct = statistics.median(th["direct_rps"])
    variants = th["variants"]

    def ratio(name: str) -> str:
        v = variants.get(name)
        return f"{statistics.median(v['gateway_rps']):.1f} / {direct:.1f} = {v['ratio']:.2f}" if v else ""

    def added(name: str) -> str:
        v = variants.get(name)
        return f"{v['added_p50_ms']:.1f} / {v['added_p99_ms']:.1f} ms" if v else ""

    now = variants["now"]
    return [
        (
            f"req/s c={th['concurrency']}, 100 ms backend: gateway / direct",
            ratio("before"),
            ratio("now"),
            f">= {t['throughput_ratio_min']:.2f}",
            met(now["ratio"] >= t["throughput_ratio_min"]),
        ),
        (
            f"latency added at c={th['concurrency']}, p50 / p99",
            added("before"),
            added("now"),
            f"p50 <= {t['added_p50_ms_max']:g} ms",
            met(now["added_p50_ms"] <= t["added_p50_ms_max"]),
        ),
    ]


def cpu_rows(c: dict[str, Any], t: dict[str, float]) -> list[Row]:
    variants = c["variants"]

    def cpu(name: str) -> str:
        v = variants.get(name)
        return f"{v['gateway_cpu_ms_per_request']:.2f} ms" if v else ""

    def rps(name: str) -> str:
        v = variants.get(name)
        return f"{v['rps']:.0f}" if v else ""

    now, two = variants["now"], c["workers_2"]
    return [
        (
            "gateway CPU per request, image work excluded",
            cpu("before"),
            cpu("now") + f" (image work {c['image_cpu_ms_per_request']:.2f} ms more)",
            f"<= {t['cpu_ms_per_request_max']:g} ms",
            met(now["gateway_cpu_ms_per_request"] <= t["cpu_ms_per_request_max"]),
        ),
        (f"req/s c={c['concurrency']}, 0 ms backend, 1 worker", rps("before"), rps("now"), "-", ""),
        (
            f"req/s c={c['concurrency']}, 0 ms backend, --workers 2 / 1",
            "",
            f"{two['rps']:.0f} / {now['rps']:.0f} = {c['workers_2_over_1_rps']:.2f}x"
            f" (busy cores {two['machine_busy_cores']:.2f} / {now['machine_busy_cores']:.2f})",
            "~2x",
            "",
        ),
    ]


def rss_rows(m: dict[str, Any], t: dict[str, float]) -> list[Row]:
    ok = m["peak_rss_mb"] <= t["peak_rss_mb_max"] and m["errors"] == 0
    label = f"peak RSS, {m['clients']} x {m['image'].split(',')[1].strip()} JPEGs"
    return [(label, "", f"{m['peak_rss_mb']:.0f} MB, {m['errors']} failed", "<= 600 MB, 0 failed", met(ok))]


def prefix_rows(p: dict[str, Any]) -> list[Row]:
    old, new = p["before"], p["now"]
    n, blocks = new["requests"], p["block_size"]
    cacheable = p["block_aligned_ceiling_rate"]
    return [
        (
            f"vLLM prefix-cache hits, {n} x {p['style']} ({p['image']})",
            f"{old['hit_tokens']} / {old['queried_tokens']} = {old['hit_rate']:.1%} (image first)",
            f"{new['hit_tokens']} / {new['queried_tokens']} = {new['hit_rate']:.1%}",
            f">= {new['share_before_image']:.1%} (before image)",
            met(new["hit_rate"] >= new["share_before_image"]),
        ),
        (
            f"  prompt tokens before the image, of {new['tokens_per_request']}",
            f"{old['tokens_before_image']}",
            f"{new['tokens_before_image']} (in whole {blocks}-token blocks: {cacheable:.1%} of the prompt)",
            "",
            "",
        ),
    ]


def publish(results: dict[str, Any], output: Path, rendered: str) -> None:
    """Writes a run's JSON to ``output`` and prints its table: the end of every benchmark script."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(rendered)
    print(f"\nJSON: {output}")
