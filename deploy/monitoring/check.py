#!/usr/bin/env python3
"""Checks of deploy/monitoring/ that promtool does not make (run by scripts/ops-check.sh).

  check.py dashboard DASHBOARD.json         the dashboard's conventions
  check.py panel-rules DASHBOARD.json       every panel expression as a rules file, for `promtool check rules`
  check.py panel-exprs DASHBOARD.json RANGE every panel expression as JSON lines, Grafana variables replaced
  check.py rules RULES.yml RUNBOOKS.md      labels, annotations and runbook sections of the alert rules

Exit status 1 with one line per problem when a check fails.
"""
import json
import re
import sys

# Metrics the dashboard must show (issue 11: throughput, lag by partition,
# watermark delay, alerts by rule and severity, dead letters by reason, output
# health and retries, checkpoint age and size, state size, RSS).
REQUIRED_METRICS = [
    "aiwatch_events_consumed_total",
    "aiwatch_consumer_lag",
    "aiwatch_watermark_seconds",
    "aiwatch_alerts_total",
    "aiwatch_dead_letters_total",
    "aiwatch_output_up",
    "aiwatch_output_errors_total",
    "aiwatch_last_checkpoint_timestamp_seconds",
    "aiwatch_checkpoint_bytes",
    "aiwatch_state_bytes",
    "process_resident_memory_bytes",
]
# What the engine alerts must cover (issue 11, item 2, and the state limit).
REQUIRED_ALERT_METRICS = {
    "lag growing": "aiwatch_consumer_lag",
    "watermark stalled": "aiwatch_watermark_seconds",
    "output down": "aiwatch_output_up",
    "checkpoint stale": "aiwatch_last_checkpoint_timestamp_seconds",
    "dead-letter rate": "aiwatch_dead_letters_total",
    "alerts dead-lettered": "aiwatch_alerts_dead_lettered_total",
    "restarts": "process_start_time_seconds",
    "readiness": "aiwatch_ready",
    "state size": "aiwatch_state_bytes",
}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms"}
DATASOURCE_REFS = {"${datasource}", "$datasource"}
SEVERITIES = {"critical", "error", "warning", "info"}
PRIORITIES = {"critical", "high", "medium", "low"}
RUNBOOK_PREFIX = "https://github.com/aiwatch/aiwatch/blob/main/deploy/monitoring/runbooks.md#"


def panels_of(dash):
    """Every panel, rows' nested panels included."""
    for p in dash.get("panels", []):
        yield p
        for q in p.get("panels", []) or []:
            yield q


def variables(expr):
    return {m.group(1) or m.group(2) for m in re.finditer(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", expr)}


def check_dashboard(path):
    dash = json.load(open(path, encoding="utf-8"))
    problems = []
    for key in ("uid", "title", "schemaVersion", "panels", "templating"):
        if not dash.get(key):
            problems.append(f"dashboard: no `{key}`")
    templ = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = templ.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("dashboard: no `datasource` variable of type datasource for prometheus")
    for name, v in templ.items():
        if name != "datasource" and v.get("datasource") and v["datasource"].get("uid") not in DATASOURCE_REFS:
            problems.append(f"variable {name}: datasource is not ${{datasource}}")
    defined = set(templ) | GRAFANA_BUILTINS
    ids = set()
    exprs = []
    for p in panels_of(dash):
        pid = p.get("id")
        where = f"panel {pid} ({p.get('title', '?')})"
        if pid in ids or not isinstance(pid, int):
            problems.append(f"{where}: id missing or repeated")
        ids.add(pid)
        gp = p.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) for k in ("x", "y", "w", "h")) or gp.get("w", 0) <= 0 or gp.get("h", 0) <= 0 or gp.get("x", 0) + gp.get("w", 0) > 24:
            problems.append(f"{where}: gridPos missing or outside the 24 columns")
        if p.get("type") == "row":
            continue
        if not (p.get("title") or "").strip():
            problems.append(f"{where}: no title")
        if len((p.get("description") or "").strip()) < 20:
            problems.append(f"{where}: no description (at least a sentence)")
        if (p.get("datasource") or {}).get("uid") not in DATASOURCE_REFS:
            problems.append(f"{where}: datasource is not ${{datasource}}")
        unit = ((p.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
        if not unit:
            problems.append(f"{where}: no unit (fieldConfig.defaults.unit)")
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{where}: no query")
        refs = set()
        for t in targets:
            expr = (t.get("expr") or "").strip()
            if not expr:
                problems.append(f"{where}: a query without an expression")
                continue
            if t.get("refId") in refs or not t.get("refId"):
                problems.append(f"{where}: refId missing or repeated")
            refs.add(t.get("refId"))
            if "datasource" in t and (t["datasource"] or {}).get("uid") not in DATASOURCE_REFS:
                problems.append(f"{where} {t.get('refId')}: datasource is not ${{datasource}}")
            for var in variables(expr) - defined:
                problems.append(f"{where} {t.get('refId')}: uses ${var}, which is not a variable of the dashboard")
            exprs.append(expr)
    everything = "\n".join(exprs)
    for metric in REQUIRED_METRICS:
        if not re.search(rf"\b{metric}\b", everything):
            problems.append(f"dashboard: no panel shows {metric}")
    return problems


def panel_exprs(path, rate_interval):
    dash = json.load(open(path, encoding="utf-8"))
    subst = {"__rate_interval": rate_interval, "__interval": rate_interval, "__range": rate_interval, "instance": ".*"}
    for p in panels_of(dash):
        for t in p.get("targets") or []:
            expr = t.get("expr")
            if not expr:
                continue
            for var, val in subst.items():
                expr = expr.replace("${" + var + "}", val).replace("$" + var, val)
            yield {"panel": p.get("title"), "refId": t.get("refId"), "expr": expr}


def panel_rules(path):
    """A rules file with one recording rule per panel expression: `promtool check rules` parses them all."""
    rules = []
    for i, e in enumerate(panel_exprs(path, "5m")):
        rules.append({"record": f"dashboard:panel_{i}", "expr": e["expr"], "labels": {"panel": e["panel"], "ref": e["refId"]}})
    return {"groups": [{"name": "dashboard-expressions", "rules": rules}]}


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def check_rules(rules_path, runbooks_path):
    import yaml

    doc = yaml.safe_load(open(rules_path, encoding="utf-8"))
    headings = {}
    for line in open(runbooks_path, encoding="utf-8"):
        if line.startswith("## "):
            headings[slug(line[3:])] = line[3:].strip()
    problems = []
    alerts = {}
    for g in doc.get("groups", []):
        for r in g.get("rules", []):
            if "alert" not in r:
                continue
            name = r["alert"]
            if name in alerts:
                problems.append(f"{name}: defined twice")
            alerts[name] = r
            labels, ann = r.get("labels") or {}, r.get("annotations") or {}
            if labels.get("category") != "engine":
                problems.append(f"{name}: label category is not `engine`")
            if labels.get("severity") not in SEVERITIES:
                problems.append(f"{name}: label severity {labels.get('severity')!r} is not one of {sorted(SEVERITIES)}")
            if labels.get("priority") not in PRIORITIES:
                problems.append(f"{name}: label priority {labels.get('priority')!r} is not one of {sorted(PRIORITIES)}")
            for key in ("summary", "description", "runbook_url"):
                if not (ann.get(key) or "").strip():
                    problems.append(f"{name}: no `{key}` annotation")
            url = ann.get("runbook_url") or ""
            if not url.startswith(RUNBOOK_PREFIX):
                problems.append(f"{name}: runbook_url does not point into deploy/monitoring/runbooks.md")
            anchor = url[len(RUNBOOK_PREFIX):]
            if anchor != name.lower():
                problems.append(f"{name}: runbook_url anchor #{anchor} is not #{name.lower()}")
            if anchor not in headings:
                problems.append(f"{name}: runbooks.md has no section `## {name}` (anchor #{anchor})")
    for anchor, heading in headings.items():
        if heading not in alerts:
            problems.append(f"runbooks.md: section `## {heading}` has no alert of that name")
    exprs = "\n".join(str(r.get("expr", "")) for r in alerts.values())
    for what, metric in REQUIRED_ALERT_METRICS.items():
        if not re.search(rf"\b{metric}\b", exprs):
            problems.append(f"no alert covers {what} ({metric})")
    return problems


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "dashboard":
        problems = check_dashboard(argv[2])
    elif cmd == "panel-rules":
        import yaml

        yaml.safe_dump(panel_rules(argv[2]), sys.stdout, sort_keys=False, allow_unicode=True, width=1000)
        return 0
    elif cmd == "panel-exprs":
        for e in panel_exprs(argv[2], argv[3] if len(argv) > 3 else "1m"):
            print(json.dumps(e))
        return 0
    elif cmd == "rules":
        problems = check_rules(argv[2], argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for p in problems:
        print(f"{argv[2]}: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
