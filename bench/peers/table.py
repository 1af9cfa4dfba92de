#!/usr/bin/env python3
"""Summarizes bench/peers/matrix.sh's cells: one row per protocol and server,
medians over the rounds (each figure's per-round values in brackets when
there is more than one round).

    bench/peers/table.py CELLS.jsonl TABLE.md TABLE.json
"""
import json
import statistics
import sys

PROTO = {"flv": "HTTP-FLV", "rtmp": "RTMP", "rtsp": "RTSP (TCP)", "srt": "SRT"}


def med(xs):
    return statistics.median(xs) if xs else 0


def fmt(xs, f="{:.0f}"):
    m = f.format(med(xs))
    if len(xs) > 1:
        return m + " (" + ", ".join(f.format(x) for x in xs) + ")"
    return m


def main():
    cells = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    groups = {}
    for c in cells:
        groups.setdefault((c["proto"], c["server"]), []).append(c)
    rows, out = [], []
    protos = list(dict.fromkeys(c["proto"] for c in cells))
    for p in protos:
        for (proto, srv), cs in groups.items():
            if proto != p:
                continue
            fl = [c["flvload"] for c in cs]
            r = {
                "proto": proto, "server": srv, "readers": cs[0]["readers"], "rounds": len(cs),
                "cpu_us_per_reader_s": [c["cpu_us_per_reader_s"] for c in cs],
                "steady_cpu_us_per_reader_s": [c.get("steady_cpu_us_per_reader_s", 0) for c in cs],
                "peak_rss_mb": [c["peak_rss_mb"] for c in cs],
                "first_key_ms_median": [f.get("first_keyframe_ms_median", 0) for f in fl],
                "first_key_ms_p95": [f.get("first_keyframe_ms_p95", 0) for f in fl],
                "key_within_1s": [f.get("readers_with_keyframe_within_1s", 0) for f in fl],
                "delivered_ratio_median": [c["delivered_ratio_median"] for c in cs],
                "delivered_ratio_min": [c["delivered_ratio_min"] for c in cs],
                "errors": [f.get("errors", 0) for f in fl],
                "connected": [f.get("connected", 0) for f in fl],
                "ts_cc_errors": [f.get("ts_cc_errors", 0) for f in fl],
                "srt_receiver_drops": [f.get("srt_receiver_drops", 0) for f in fl],
                "load1": [c["load1_before"] for c in cs] + [c["load1_after"] for c in cs],
                "loadtool_cpu_s": [c.get("loadtool_cpu_s", 0) for c in cs],
            }
            rows.append(r)
    out.append("| protocol | server | readers | CPU µs per reader-second | steady (second half) | peak RSS MB | first keyframe median / p95 ms "
               "| keyframe within 1 s | delivered (median / min connected reader) | errors | load tool CPU s | load (1 min) |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        extra = ""
        if r["proto"] == "srt":
            extra = f"; TS CC gaps {fmt(r['ts_cc_errors'])}, SRT receiver drops {fmt(r['srt_receiver_drops'])}"
        loopback = r["server"] == "loopback"
        out.append("| " + " | ".join([
            PROTO.get(r["proto"], r["proto"]), r["server"],
            str(r["readers"]) if min(r["connected"]) == r["readers"] else f"{r['readers']} (connected: {', '.join(map(str, r['connected']))})",
            fmt(r["cpu_us_per_reader_s"]), fmt(r["steady_cpu_us_per_reader_s"]), fmt(r["peak_rss_mb"]),
            "—" if loopback else fmt(r["first_key_ms_median"], "{:.1f}") + " / " + fmt(r["first_key_ms_p95"], "{:.1f}"),
            "—" if loopback else fmt(r["key_within_1s"]),
            fmt(r["delivered_ratio_median"], "{:.2f}") + " / " + fmt(r["delivered_ratio_min"], "{:.2f}"),
            fmt(r["errors"]) + extra,
            fmt(r["loadtool_cpu_s"], "{:.1f}") if any(r["loadtool_cpu_s"]) else "—",
            f"{min(r['load1']):.1f}–{max(r['load1']):.1f}",
        ]) + " |")
    open(sys.argv[2], "w").write("\n".join(out) + "\n")
    json.dump(rows, open(sys.argv[3], "w"), indent=1)


if __name__ == "__main__":
    main()
