"""The benchmark's verdicts and its printed table (the same figures go to the results file)."""

from __future__ import annotations

from typing import Any

KB = 1024
MB = 1024 * 1024


def _num(x: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:,.0f} ms"


# Issue 20's ratios, each a median over the run's rounds of the ratio within a round (the
# phases of a round run back to back; rounds alternate their order). The earlier targets
# against naive Faust and the aiokafka ceiling are retired: their ratios are still printed.
RATIO_TARGETS = (
    ("pulse_view_over_quix", "Pulse, Redis view on, events/s >= 0.5x Quix Streams' naive job", 0.5),
    ("pulse_view_over_pulse", "Pulse, Redis view on, events/s >= 0.9x the view off", 0.9),
    ("pulse_group_over_pulse", "two Pulse workers in one group >= 1.6x one", 1.6),
)


def target(
    name: str, value: float | None, limit: float, shown: str, *, at_most: bool
) -> dict[str, Any]:
    """One target: PASS when value <= limit (at_most) or >= limit; n/a without a value."""
    if value is None:
        verdict = "n/a"
    elif at_most:
        verdict = "PASS" if value <= limit else "FAIL"
    else:
        verdict = "PASS" if value >= limit else "FAIL"
    return {"target": name, "value": value, "limit": limit, "shown": shown, "verdict": verdict}


def evaluate(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets over a results document."""
    ratios = res.get("ratios", {})
    pulse = res.get("pulse", {})
    scale = res.get("scale", {})
    users = scale.get("users")
    at = f"at {users:,} users" if users else "at the scale users"
    by_round = res.get("ratios_by_round") or [ratios]
    out = []
    for key, name, limit in RATIO_TARGETS:
        r = ratios.get(key)
        seen = [x[key] for x in by_round if x.get(key) is not None]
        shown = _num(r, "{:.2f}x")
        if len(seen) > 1:
            shown += (
                f" (median of {len(seen)} rounds: " + ", ".join(f"{x:.2f}x" for x in seen) + ")"
            )
        out.append(target(name, r, limit, shown, at_most=False))
    lat = pulse.get("latency", {})
    p99 = lat.get("consume_to_emit", {}).get("p99_s")
    t = target(
        f"p99 consume-to-emit <= 250 ms at {lat.get('offered_rate', 5000):,.0f} events/s offered",
        p99,
        0.25,
        _ms(p99),
        at_most=True,
    )
    if lat and not lat.get("kept_up"):
        # Records waited in the topic: the worker's histogram starts at consumption.
        t["verdict"] = "FAIL"
        t["shown"] += (
            f", but the worker fell behind the offered load (caught up "
            f"{_num(lat.get('caught_up_after_s'), '{:.1f} s')} after the last send; "
            f"produce-to-changelog p99 {_ms(lat['produce_to_changelog']['p99_s'])})"
        )
    out.append(t)
    sizes = [s.get("mean_bytes") for s in (pulse.get("state"), scale.get("state")) if s]
    worst = max(sizes) if sizes else None
    out.append(
        target(
            "<= 512 bytes serialized state per user (mean, worst of both scales)",
            worst,
            512,
            _num(worst, "{:,.0f} B"),
            at_most=True,
        )
    )
    growth = scale.get("rss_per_user_bytes")
    out.append(
        target(
            f"RSS growth <= 2 KB per user {at}",
            growth,
            2 * KB,
            _num(growth, "{:,.0f} B"),
            at_most=True,
        )
    )
    sweeps = scale.get("sweeps", {})
    for kind, label in (("routine", "routine ticks"), ("day_boundary", "day-boundary ticks")):
        best = sweeps.get(f"{kind}_cpu_seconds")
        out.append(
            target(
                f"sweep CPU <= 1 s {at} ({label}, worst)",
                best,
                1.0,
                _num(best, "{:.3f} s"),
                at_most=True,
            )
        )
    rec = scale.get("recovery", {})
    secs = rec.get("probes_s") if rec.get("complete") else None
    shown = _num(secs, "{:.1f} s") if rec.get("complete") or not rec else "incomplete"
    store = res["config"].get("store", "memory://")
    out.append(
        target(f"recovery after kill -9 <= 60 s {at}, {store} store", secs, 60, shown, at_most=True)
    )
    if rec and not rec.get("complete"):
        out[-1]["verdict"] = "FAIL"
    return out


def render(res: dict[str, Any]) -> str:
    """The human-readable table."""
    cfg = res["config"]
    lines = [
        f"Pulse benchmark: {cfg['events']:,} events, {cfg['users']:,} users, "
        f"{cfg['partitions']} partitions, seed {cfg['seed']}, on the embedded Tansu broker "
        f"({res['machine']['cpus']} CPUs); wall time {res.get('wall_seconds', 0):,.0f} s"
    ]
    inp = res.get("input")
    if inp:
        lines.append(
            f"Input: {inp['type_counts']}; {inp['out_of_order']:,} records out of event-time "
            f"order; up to {inp['max_events_per_user']:,} events per user; loaded at "
            f"{inp['load_rate']:,.0f} records/s"
        )
    lines += [
        "Timing: " + res["timing_method"],
        "",
        f"{'contender':<28}{'events/s':>11}{'seconds':>9}{'CPU s':>8}{'CPU us/ev':>11}"
        f"{'peak RSS':>10}{'broker CPU s':>14}  status",
    ]
    for t in res.get("throughput", []):
        name = t["name"] if t.get("round", 1) == 1 else f"{t['name']} (r{t['round']})"
        lines.append(
            f"{name:<28}{_num(t['events_per_s']):>11}{_num(t['seconds'], '{:.1f}'):>9}"
            f"{_num(t['cpu_seconds'], '{:.1f}'):>8}{_num(t['cpu_us_per_event'], '{:.0f}'):>11}"
            f"{_num(t['peak_rss_bytes'] and t['peak_rss_bytes'] / MB, '{:.0f} MB'):>10}"
            f"{_num(t['broker_cpu_seconds'], '{:.1f}'):>14}  {t['status']}"
            + (f" ({t['note']})" if t["note"] else "")
        )
    ratios = res.get("ratios", {})
    if ratios:
        shown = [
            f"{k.replace('_over_', '/').replace('_', ' ')} "
            + (f"{v:.2%}" if k.endswith("ceiling") else f"{v:.2f}x")
            for k, v in ratios.items()
            if v is not None
        ]
        rounds = len(res.get("ratios_by_round", [])) or 1
        how = "same run" if rounds == 1 else f"the median over {rounds} rounds of each round's"
        lines.append(f"Ratios of events/s ({how}): " + ", ".join(shown))
    pulse = res.get("pulse", {})
    lines.append("")
    lines.append("Pulse worker")
    lat = pulse.get("latency")
    if lat:
        c, p = lat["consume_to_emit"], lat["produce_to_changelog"]
        lines.append(
            f"  offered {lat['offered_rate']:,.0f} events/s for {lat['offered_seconds']:.0f} s "
            f"(achieved {lat['achieved_rate']:,.0f}/s); after the last send, all consumed in "
            f"{_num(lat['caught_up_after_s'], '{:.1f} s')} and committed in "
            f"{_num(lat['drained_after_s'], '{:.1f} s')} (timeout {lat['drain_timeout_s']:.0f} s)"
            + ("" if lat["kept_up"] else ": the worker FELL BEHIND the offered load")
        )
        lines.append(
            f"  consume-to-emit (worker histogram, {c['observations']:,.0f} outputs): "
            f"p50 {_ms(c['p50_s'])}, p99 {_ms(c['p99_s'])}"
            + (
                f" (interpolated in its bucket {_ms(c['p99_bucket_s'][0])} to "
                f"{_ms(c['p99_bucket_s'][1])})"
                if c.get("p99_bucket_s")
                else ""
            )
        )
        lines.append(
            f"  produce-to-changelog-visible ({p['matched']:,} events matched, {p['unseen']:,} "
            f"not seen): p50 {_ms(p['p50_s'])}, p99 {_ms(p['p99_s'])}, max {_ms(p['max_s'])}"
        )
    scale = res.get("scale", {})
    for where, part in (("main", pulse), ("scale", scale)):
        st = part.get("state")
        if st:
            lines.append(
                f"  state on the changelog, {st['users']:,} users ({where} run): mean "
                f"{st['mean_bytes']:,.0f} B, p50 {_num(st['p50_bytes'])} B, p99 "
                f"{_num(st['p99_bytes'])} B, max {st['max_bytes']:,} B "
                f"({st['changelog_records']:,} changelog records)"
            )
        if part.get("rss_bytes") is not None:
            lines.append(
                f"  RSS with {part['users']:,} users: {part['rss_bytes'] / MB:,.0f} MB; idle "
                f"worker {part['idle_rss_bytes'] / MB:,.0f} MB; growth "
                f"{part['rss_per_user_bytes']:,.0f} B per user"
            )
    load = scale.get("load")
    if load:
        lines.append(
            f"  scale load: {scale['events']:,} events for {scale['users']:,} users at "
            f"{_num(load['events_per_s'])} events/s ({load['status']})"
        )
    rec = scale.get("recovery")
    if rec:
        lines.append(
            f"  recovery after kill -9 of the worker with {rec['users_expected']:,} users: "
            f"changelog restore from {_num(rec.get('restore_started_s'), '{:.1f}')} to "
            f"{_num(rec.get('restore_done_s'), '{:.1f} s')} after the kill, "
            f"'Worker ready' after {_num(rec.get('ready_s'), '{:.1f} s')}, probes applied on "
            f"recovered state after {_num(rec.get('probes_s'), '{:.1f} s')}; users in the "
            f"recovered table (gauges) {_num(rec.get('users_in_gauges'))}; complete: "
            f"{rec.get('complete')}"
        )
    if scale.get("idle_cpu_per_s") is not None:
        lines.append(
            f"  idle worker with {scale['users']:,} users: {scale['idle_cpu_per_s']:.1%} of a core"
        )
    for s in scale.get("sweeps", {}).get("runs", []):
        lines.append(
            f"  sweep {s['label']:<22} CPU {_num(s.get('cpu_seconds'), '{:.3f} s'):>9}, wall "
            f"{s['wall_seconds']:.2f} s, {s['users_swept']:,} users swept"
            + (
                f" ({s['cpu_us_per_swept_user']:.0f} us CPU each)"
                if s["users_swept"] >= 100
                else ""
            )
            + (f" [{s['status']}: {s.get('note', '')}]" if s["status"] != "ok" else "")
        )
    for err in res.get("errors", []):
        lines.append(f"  ERROR {err}")
    lines.append("")
    lines.append("Targets")
    for t in res.get("targets", []):
        lines.append(f"  {t['verdict']:<5} {t['target']}: {t['shown']}")
    return "\n".join(lines)
