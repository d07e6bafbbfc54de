#!/usr/bin/env bash
# Checks the operations kit (deploy/, issue 11) with the real tools, and checks
# each check: every one runs on the shipped files, where it must pass, and on a
# copy with a planted defect, where it must fail.
#
#   scripts/ops-check.sh            # everything, the live test included (what .ci/run calls)
#   scripts/ops-check.sh --no-live  # the static checks only (seconds, once the tools are cached)
#
# Tools it installs itself, cached outside the repo (AIWATCH_OPS_CACHE, default
# /var/tmp/aiwatch-ops), so a second run is fast:
#   - Debian's prometheus (promtool) and prometheus-alertmanager (amtool), with
#     apt-get when root;
#   - kubernetes-validate from PyPI, in a venv;
#   - helm, built with `go install helm.sh/helm/v3/cmd/helm@HELM_VERSION`.
# systemd-analyze comes with Debian's systemd.
#
# The live test builds aiwatch (debug, CARGO_TARGET_DIR default
# /var/tmp/aiwatch-target as scripts/test.sh) unless AIWATCH_BIN names a
# binary, starts its own Kafka broker with scripts/kafka.sh on
# AIWATCH_OPS_KAFKA_PORT (default 19692), a Prometheus on loopback with the
# shipped rules, and two aiwatch processes; everything it starts is stopped at
# exit. A panel expression that returns no data fails the run, except when
# AIWATCH_OPS_NODATA=report (the default with AIWATCH_BIN, for a binary built
# before every metric landed) or when its metric is in PENDING_METRICS below.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

HELM_VERSION=v3.22.0
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBE_VERSION=1.33.0               # the Kubernetes version helm renders for
SECURITY_THRESHOLD=20             # systemd-analyze security: exposure at most 2.0 (of 10)
# Metrics of work not merged yet (issue 8's adapters): their panels may return
# no data without failing the live test (AIWATCH_OPS_PENDING adds names).
# Remove a name once it lands.
PENDING_METRICS="aiwatch_skipped_records_total ${AIWATCH_OPS_PENDING:-}"

CACHE="${AIWATCH_OPS_CACHE:-/var/tmp/aiwatch-ops}"
KAFKA_PORT="${AIWATCH_OPS_KAFKA_PORT:-19692}"
PROM_PORT="${AIWATCH_OPS_PROM_PORT:-19690}"
METRICS_A_PORT=$((PROM_PORT + 4))
METRICS_B_PORT=$((PROM_PORT + 5))
REFUSER_PORT=$((PROM_PORT + 6))
CLOSED_PORT=$((PROM_PORT + 7))
LIVE=1
[[ "${1:-}" == "--no-live" ]] && LIVE=0

WORK="$(mktemp -d /tmp/aiwatch-ops-check.XXXXXX)"
PIDS=()
KAFKA_STARTED=""
KAFKA_ENV=(AIWATCH_KAFKA_PORT="$KAFKA_PORT" AIWATCH_KAFKA_DIR="/tmp/aiwatch-kafka-ops-${KAFKA_PORT}")
START=$SECONDS

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ -n "$KAFKA_STARTED" ]]; then
    env "${KAFKA_ENV[@]}" scripts/kafka.sh stop >/dev/null 2>&1 || true
  fi
  if [[ -n "${AIWATCH_OPS_KEEP:-}" ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf 'ops-check [%3ss]: %s\n' "$((SECONDS - START))" "$*" >&2; }
die() { log "error: $*"; exit 1; }

PASSED=0
FAILED=0
FAILURES=()
# ok NAME CMD...: CMD must succeed on the shipped files.
ok() {
  local name="$1"; shift
  if "$@" >"$WORK/out" 2>&1; then
    PASSED=$((PASSED + 1)); printf '  pass  %s\n' "$name"
  else
    FAILED=$((FAILED + 1)); FAILURES+=("$name"); printf '  FAIL  %s\n' "$name"; sed 's/^/        /' "$WORK/out" | tail -n 30
  fi
}
# shown NAME CMD...: as ok, and prints what CMD said either way.
shown() {
  ok "$@"
  [[ "${FAILURES[*]:-}" == *"$1"* ]] || sed 's/^/        /' "$WORK/out" | tail -n 40
}
# planted NAME PATTERN CMD...: CMD runs on a copy with a defect; it must fail, and
# say why: its output must match PATTERN (an extended regex), so a check that
# fails for another reason does not count.
planted() {
  local name="$1" pattern="$2"; shift 2
  if "$@" >"$WORK/out" 2>&1; then
    FAILED=$((FAILED + 1)); FAILURES+=("planted: $name"); printf '  FAIL  planted defect not caught: %s\n' "$name"; sed 's/^/        /' "$WORK/out" | tail -n 10
  elif ! grep -qE -- "$pattern" "$WORK/out"; then
    FAILED=$((FAILED + 1)); FAILURES+=("planted: $name"); printf '  FAIL  planted defect failed for another reason than /%s/: %s\n' "$pattern" "$name"; sed 's/^/        /' "$WORK/out" | tail -n 10
  else
    PASSED=$((PASSED + 1)); printf '  pass  planted defect caught: %s: %s\n' "$name" "$(grep -m1 -E -- "$pattern" "$WORK/out" | sed "s|$WORK/||g; s/^ *//" | cut -c1-120)"
  fi
}
# fresh DIR: an empty scratch folder under $WORK.
fresh() { rm -rf "${WORK:?}/${1:?}"; mkdir -p "$WORK/$1"; echo "$WORK/$1"; }
# edit FILE PYTHON-EXPR: rewrite FILE with s = FILE's text; the expression's value is written back.
edit() {
  python3 - "$1" "$2" <<'EOF'
import sys
path, expr = sys.argv[1], sys.argv[2]
s = open(path, encoding="utf-8").read()
t = eval(expr, {"s": s})
if t == s:
    sys.exit(f"edit: the planted defect changed nothing in {path}: {expr}")
open(path, "w", encoding="utf-8").write(t)
EOF
}

# ---------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------
install_tools() {
  mkdir -p "$CACHE"
  local need=()
  command -v promtool >/dev/null && command -v prometheus >/dev/null || need+=(prometheus)
  command -v amtool >/dev/null || need+=(prometheus-alertmanager)
  command -v systemd-analyze >/dev/null || need+=(systemd)
  if ((${#need[@]})); then
    [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null || die "install ${need[*]} (Debian packages), or run as root so this script can"
    log "installing ${need[*]} with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >"$CACHE/apt.log" 2>&1 ||
      { tail -n 20 "$CACHE/apt.log" >&2; die "apt-get install ${need[*]} failed"; }
  fi

  VENV="$CACHE/venv"
  if ! "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$KUBERNETES_VALIDATE_VERSION"; then
    log "installing kubernetes-validate ${KUBERNETES_VALIDATE_VERSION} into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}" >"$CACHE/pip.log" 2>&1 ||
      { tail -n 20 "$CACHE/pip.log" >&2; die "pip install kubernetes-validate failed"; }
  fi
  PY="$VENV/bin/python"        # has PyYAML (a kubernetes-validate dependency)
  KV="$VENV/bin/kubernetes-validate"

  HELM="$CACHE/helm-${HELM_VERSION}/helm"
  if [[ ! -x "$HELM" ]]; then
    command -v go >/dev/null || die "go is needed once to build helm ${HELM_VERSION}"
    log "building helm ${HELM_VERSION} with go install (a few minutes, once)"
    mkdir -p "$CACHE/helm-${HELM_VERSION}"
    GOBIN="$CACHE/helm-${HELM_VERSION}" GOPATH="$CACHE/gopath" GOCACHE="$CACHE/gocache" GOFLAGS=-modcacherw GOTOOLCHAIN=local \
      go install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >"$CACHE/helm-build.log" 2>&1 ||
      { tail -n 20 "$CACHE/helm-build.log" >&2; die "go install helm failed"; }
  fi
  log "tools: $(promtool --version 2>&1 | head -1 | cut -d' ' -f1-3), $(amtool --version 2>&1 | head -1 | cut -d' ' -f1-3), helm $("$HELM" version --template '{{.Version}}'), kubernetes-validate $("$KV" --version 2>&1 | tr -d '\n'), $(systemd-analyze --version | head -1)"
}

# ---------------------------------------------------------------------------
# Prometheus: config, rules, rule tests, runbooks
# ---------------------------------------------------------------------------
prom_config() { promtool check config "$1"; }
prom_rules() { promtool check rules "$1"; }
prom_test() { (cd "$1" && promtool test rules aiwatch.rules.test.yml); }
rule_conventions() { "$PY" "$2/check.py" rules "$1/aiwatch.rules.yml" "$1/runbooks.md"; }

check_prometheus() {
  echo "Prometheus rules and config"
  local M="$ROOT/deploy/monitoring" d
  ok "promtool check config deploy/prometheus.yml (loads the rules)" prom_config deploy/prometheus.yml
  d=$(fresh prom-config); cp -r deploy/prometheus.yml deploy/monitoring "$d/"
  edit "$d/prometheus.yml" 's.replace("evaluation_interval: 15s", "evaluation_interval: 15 seconds")'
  planted "prometheus.yml with a malformed duration" 'not a valid duration' prom_config "$d/prometheus.yml"
  d=$(fresh prom-config-rules); cp -r deploy/prometheus.yml deploy/monitoring "$d/"
  edit "$d/monitoring/aiwatch.rules.yml" 's.replace("expr: aiwatch_output_up == 0", "expr: aiwatch_output_up == ")'
  planted "prometheus.yml loading a rule with broken PromQL" 'aiwatch.rules.yml.*(parse error|unexpected)|unexpected end of input' prom_config "$d/prometheus.yml"

  ok "promtool check rules deploy/monitoring/aiwatch.rules.yml" prom_rules "$M/aiwatch.rules.yml"
  d=$(fresh rules-syntax); cp "$M/aiwatch.rules.yml" "$d/"
  edit "$d/aiwatch.rules.yml" 's.replace("sum by (job, instance, topic) (aiwatch_consumer_lag) > 10000", "sum by (job, instance, topic) (aiwatch_consumer_lag > 10000", 1)'
  planted "a rule with an unbalanced parenthesis" 'unclosed left parenthesis|unexpected' prom_rules "$d/aiwatch.rules.yml"

  ok "promtool test rules deploy/monitoring/aiwatch.rules.test.yml" prom_test "$M"
  d=$(fresh rules-test); cp "$M/aiwatch.rules.yml" "$M/aiwatch.rules.test.yml" "$d/"
  edit "$d/aiwatch.rules.yml" 's.replace("expr: aiwatch_output_up == 0\n        for: 5m", "expr: aiwatch_output_up == 0\n        for: 15m")'
  planted "AiwatchOutputDown waiting 15m instead of 5m (the unit test must see it)" 'alertname: AiwatchOutputDown' prom_test "$d"
  d=$(fresh rules-test2); cp "$M/aiwatch.rules.yml" "$M/aiwatch.rules.test.yml" "$d/"
  edit "$d/aiwatch.rules.yml" 's.replace("> 0.01", "> 0.2")'
  planted "AiwatchDeadLetterRate threshold at 20%" 'alertname: AiwatchDeadLetterRate' prom_test "$d"

  ok "alert labels, annotations and one runbook section per alert" rule_conventions "$M" "$M"
  d=$(fresh runbooks); cp "$M/aiwatch.rules.yml" "$M/runbooks.md" "$d/"
  edit "$d/runbooks.md" 's.replace("## AiwatchOutputDown\n", "## Output down\n")'
  planted "runbooks.md without the AiwatchOutputDown section" 'no section `## AiwatchOutputDown`' rule_conventions "$d" "$M"
  d=$(fresh runbooks2); cp "$M/aiwatch.rules.yml" "$M/runbooks.md" "$d/"
  edit "$d/aiwatch.rules.yml" 's.replace("severity: warning\n          priority: medium", "severity: medium\n          priority: medium", 1)'
  planted "an alert with severity medium (not an on-call severity)" 'label severity .medium.' rule_conventions "$d" "$M"
}

# ---------------------------------------------------------------------------
# Alertmanager: config, routes, templates, secrets
# ---------------------------------------------------------------------------
am_config() { amtool check-config "$1"; }
# am_routes CONFIG: the routing table the example promises.
am_routes() {
  local cfg="$1"
  while IFS='|' read -r want labels; do
    [[ -n "$want" ]] || continue
    # shellcheck disable=SC2086
    amtool config routes test --config.file="$cfg" --verify.receivers="$want" $labels || { echo "route for {$labels}: expected $want"; return 1; }
  done <<'EOF'
pagerduty-compliance,slack-security|alertname=xtenant.context rule_id=xtenant.context source=aiwatch category=xtenant priority=critical severity=critical alert_id=3f2a tenant_id=acme
slack-compliance|alertname=logging.missing_response rule_id=logging.missing_response source=aiwatch category=logging priority=low severity=info alert_id=9b1c tenant_id=acme
opsgenie-compliance,slack-platform|alertname=change.unauthorized rule_id=change.unauthorized source=aiwatch category=change priority=high severity=error alert_id=77d0
pagerduty-sre|alertname=AiwatchOutputDown category=engine severity=critical priority=critical instance=aiwatch-0 output=alertmanager
slack-sre|alertname=AiwatchDeadLetterRate category=engine severity=warning priority=medium instance=aiwatch-0
EOF
}
am_demo_routes() {
  amtool config routes test --config.file="$1" --verify.receivers=alert-log alertname=xtenant.context category=xtenant priority=critical severity=critical alert_id=1 &&
    amtool config routes test --config.file="$1" --verify.receivers=alert-log alertname=AiwatchOutputDown category=engine severity=critical priority=critical
}
# am_render DIR: the templates render a critical violation with its id, priority and runbook.
am_render() {
  local out
  out=$(cd "$1" && amtool template render --template.glob='templates/*.tmpl' --template.data=testdata/critical-violation.json \
    --template.text='{{ template "aiwatch.title" . }}
{{ template "aiwatch.text" . }}') || return 1
  printf '%s\n' "$out"
  grep -q 'CRITICAL SOC 2 xtenant: xtenant.response (tenant acme)' <<<"$out" &&
    grep -q '7f3c2a9e51d04b8c' <<<"$out" &&
    grep -q 'Runbook: https://' <<<"$out" || { echo "rendered text lacks the title, the alert_id or the runbook"; return 1; }
}
# am_secrets FILE...: every credential comes from a *_file key, never inline.
am_secrets() {
  ! grep -nE '^\s*(-\s+)?(routing_key|service_key|api_key|api_url|slack_api_url|opsgenie_api_key|password|bearer_token|auth_token|token)\s*:' "$@" ||
    { echo "an inline secret above: use the *_file form"; return 1; }
}

check_alertmanager() {
  echo "Alertmanager"
  local A="$ROOT/deploy/alertmanager" d
  ok "amtool check-config deploy/alertmanager/alertmanager.yml" am_config "$A/alertmanager.yml"
  ok "amtool check-config deploy/alertmanager.yml (demo stack)" am_config deploy/alertmanager.yml
  d=$(fresh am-config); cp -r "$A/." "$d/"
  edit "$d/alertmanager.yml" 's.replace("receiver: slack-platform", "receiver: slack-platfrom")'
  planted "a route to a receiver that does not exist" 'undefined receiver "slack-platfrom"' am_config "$d/alertmanager.yml"

  ok "amtool config routes test --verify.receivers: critical and low violations, two engine alerts" am_routes "$A/alertmanager.yml"
  ok "amtool config routes test --verify.receivers: demo stack" am_demo_routes deploy/alertmanager.yml
  d=$(fresh am-routes); cp -r "$A/." "$d/"
  edit "$d/alertmanager.yml" 's.replace("repeat_interval: 4h\n      continue: true", "repeat_interval: 4h")'
  planted "a critical violation route without continue (the team channel never hears)" 'expected pagerduty-compliance,slack-security' am_routes "$d/alertmanager.yml"
  d=$(fresh am-routes2); cp -r "$A/." "$d/"
  edit "$d/alertmanager.yml" "s.replace(\"- matchers: ['severity=\\\"critical\\\"']\", \"- matchers: ['severity=\\\"page\\\"']\")"
  planted "engine pages matched on a severity that is never sent" 'expected pagerduty-sre' am_routes "$d/alertmanager.yml"

  ok "amtool template render (a critical violation)" am_render "$A"
  d=$(fresh am-render); cp -r "$A/." "$d/"
  edit "$d/templates/aiwatch.tmpl" 's.replace("{{ end }}{{ if .Labels.rule_id }}", "{{ if .Labels.rule_id }}", 1)'
  planted "a template with an unclosed if" 'unexpected EOF' am_render "$d"
  d=$(fresh am-render2); cp -r "$A/." "$d/"
  edit "$d/templates/aiwatch.tmpl" 's.replace("{{ .Labels.alert_id }}", "{{ .Labels.alertid }}")'
  planted "a template that drops the alert_id" 'lacks the title, the alert_id' am_render "$d"

  ok "no inline secrets in the Alertmanager configs" am_secrets "$A/alertmanager.yml" deploy/alertmanager.yml
  d=$(fresh am-secrets); cp -r "$A/." "$d/"
  edit "$d/alertmanager.yml" 's.replace("- routing_key_file: /etc/alertmanager/secrets/pagerduty-sre-routing-key", "- routing_key: 0123456789abcdef0123456789abcdef")'
  planted "a PagerDuty routing key written inline" 'routing_key: 0123' am_secrets "$d/alertmanager.yml"
}

# ---------------------------------------------------------------------------
# Dashboard
# ---------------------------------------------------------------------------
dash_conventions() { "$PY" "$ROOT/deploy/monitoring/check.py" dashboard "$1"; }
dash_parse() {
  "$PY" "$ROOT/deploy/monitoring/check.py" panel-rules "$1" >"$WORK/panel-rules.yml" && promtool check rules "$WORK/panel-rules.yml"
}

check_dashboard() {
  echo "Grafana dashboard"
  local D="$ROOT/deploy/monitoring/aiwatch-dashboard.json" d
  ok "dashboard conventions (\${datasource}, unit and description on every panel, the required metrics)" dash_conventions "$D"
  d=$(fresh dash1); cp "$D" "$d/"
  edit "$d/aiwatch-dashboard.json" 's.replace("\"unit\": \"bytes\"", "\"unit\": \"\"", 1)'
  planted "a panel without a unit" 'no unit' dash_conventions "$d/aiwatch-dashboard.json"
  d=$(fresh dash2); cp "$D" "$d/"
  edit "$d/aiwatch-dashboard.json" 's.replace("\"uid\": \"${datasource}\"", "\"uid\": \"P1809F7CD0C75ACF3\"", 3)'
  planted "a panel bound to one data source's uid" 'datasource is not' dash_conventions "$d/aiwatch-dashboard.json"
  d=$(fresh dash3); cp "$D" "$d/"
  edit "$d/aiwatch-dashboard.json" '__import__("re").sub(r"\"description\": \"Resident memory[^\"]*\"", "\"description\": \"\"", s)'
  planted "a panel without a description" 'Memory \(RSS\)\): no description' dash_conventions "$d/aiwatch-dashboard.json"
  d=$(fresh dash4); cp "$D" "$d/"
  edit "$d/aiwatch-dashboard.json" 's.replace("process_resident_memory_bytes{", "process_virtual_memory_bytes{")'
  planted "no RSS panel" 'no panel shows process_resident_memory_bytes' dash_conventions "$d/aiwatch-dashboard.json"

  ok "every panel expression parses (promtool check rules on a wrapper)" dash_parse "$D"
  d=$(fresh dash5); cp "$D" "$d/"
  edit "$d/aiwatch-dashboard.json" 's.replace("rate(aiwatch_output_errors_total{instance=~\\\"$instance\\\"}[$__rate_interval])", "rate(aiwatch_output_errors_total{instance=~\\\"$instance\\\"})")'
  planted "a panel with rate() of an instant vector" 'range vector' dash_parse "$d/aiwatch-dashboard.json"
}

# ---------------------------------------------------------------------------
# Helm chart
# ---------------------------------------------------------------------------
CHART_COPIES=("monitoring/aiwatch.rules.yml:files/aiwatch.rules.yml" "monitoring/aiwatch-dashboard.json:files/aiwatch-dashboard.json" "policy.toml:files/policy.example.toml")
# helm_copies DEPLOY CHART: the chart's copies are byte-identical to deploy/'s canonical files.
helm_copies() {
  local pair
  for pair in "${CHART_COPIES[@]}"; do
    cmp "$1/${pair%%:*}" "$2/${pair##*:}" || { echo "$2/${pair##*:} differs from deploy/${pair%%:*}: cp deploy/${pair%%:*} deploy/helm/aiwatch/${pair##*:}"; return 1; }
  done
}
helm_lint() { "$HELM" lint --strict "$1" && "$HELM" lint --strict "$1" --set serviceMonitor.enabled=true,prometheusRule.enabled=true,dashboard.enabled=true; }
# helm_validate CHART [HELM ARGS]: render and validate every object against the Kubernetes schemas.
helm_validate() {
  local chart="$1"; shift
  "$HELM" template aiwatch "$chart" --kube-version "$KUBE_VERSION" "$@" >"$WORK/rendered.yaml" || return 1
  "$KV" --strict --quiet - <"$WORK/rendered.yaml"
}
# helm_content CHART: what the rendered objects must hold (probes, PVC, securityContext,
# static membership, PDB), and the monitoring objects equal to deploy/monitoring/.
helm_content() {
  "$HELM" template aiwatch "$1" --kube-version "$KUBE_VERSION" --set serviceMonitor.enabled=true,prometheusRule.enabled=true,dashboard.enabled=true >"$WORK/rendered-all.yaml" || return 1
  "$PY" - "$WORK/rendered-all.yaml" "$ROOT/deploy/monitoring" "$WORK/prometheusrule.yml" <<'EOF' || return 1
import json, sys, yaml
docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
mon = sys.argv[2]
bad = []
def need(cond, what):
    if not cond:
        bad.append(what)
for kind in ("StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget", "ServiceAccount", "ServiceMonitor", "PrometheusRule"):
    need(kind in docs, f"no {kind}")
sts = docs.get("StatefulSet", {})
pod = sts.get("spec", {}).get("template", {}).get("spec", {})
c = (pod.get("containers") or [{}])[0]
for p in ("startupProbe", "livenessProbe", "readinessProbe"):
    need(p in c, f"container has no {p}")
need(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readinessProbe is not /readyz")
need(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "livenessProbe is not /healthz")
need(any(v["metadata"]["name"] == "state" for v in sts.get("spec", {}).get("volumeClaimTemplates", [])), "no PVC template for state")
need(any(m["mountPath"] == "/var/lib/aiwatch" and m["name"] == "state" for m in c.get("volumeMounts", [])), "state PVC not mounted at /var/lib/aiwatch")
psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
need(psc.get("runAsNonRoot") is True and isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] > 0, "pod does not run as a numeric non-root user")
need(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "no RuntimeDefault seccomp profile")
need(csc.get("readOnlyRootFilesystem") is True, "root filesystem is writable")
need(csc.get("allowPrivilegeEscalation") is False, "privilege escalation allowed")
need(csc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities not all dropped")
need(pod.get("automountServiceAccountToken") is False, "service account token mounted")
env = {e["name"]: e for e in c.get("env", [])}
need(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name", "POD_NAME is not the pod name")
toml = next((d["data"]["aiwatch.toml"] for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap" and "aiwatch.toml" in d.get("data", {})), "")
need('"group.instance.id" = "${POD_NAME}"' in toml, "group.instance.id is not ${POD_NAME}")
need('state_dir = "/var/lib/aiwatch"' in toml, "state_dir is not /var/lib/aiwatch")
need(docs.get("PodDisruptionBudget", {}).get("spec", {}).get("maxUnavailable") == 1, "PDB maxUnavailable is not 1")
want_rules = yaml.safe_load(open(f"{mon}/aiwatch.rules.yml"))
need(docs.get("PrometheusRule", {}).get("spec") == want_rules, "PrometheusRule spec differs from deploy/monitoring/aiwatch.rules.yml")
yaml.safe_dump(docs.get("PrometheusRule", {}).get("spec", {}), open(sys.argv[3], "w"))
dash = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap" and "aiwatch-dashboard.json" in d.get("data", {})]
need(dash and json.loads(dash[0]["data"]["aiwatch-dashboard.json"]) == json.load(open(f"{mon}/aiwatch-dashboard.json")), "dashboard ConfigMap differs from deploy/monitoring/aiwatch-dashboard.json")
for b in bad:
    print("rendered chart:", b)
sys.exit(1 if bad else 0)
EOF
  promtool check rules "$WORK/prometheusrule.yml"
}

check_helm() {
  echo "Helm chart"
  local C="$ROOT/deploy/helm/aiwatch" d
  ok "chart copies of the rules, dashboard and example policy are identical to deploy/" helm_copies "$ROOT/deploy" "$C"
  d=$(fresh helm-copies); cp -r "$C/." "$d/"
  edit "$d/files/aiwatch.rules.yml" 's.replace("for: 5m", "for: 6m", 1)'
  planted "a chart copy of the rules that drifted" 'differs from deploy/monitoring/aiwatch.rules.yml' helm_copies "$ROOT/deploy" "$d"

  ok "helm lint --strict (defaults, and every optional object on)" helm_lint "$C"
  d=$(fresh helm-lint); cp -r "$C/." "$d/"
  edit "$d/templates/pdb.yaml" 's.replace("{{- end }}\n", "\n", 1)'
  planted "a template with an unclosed if" 'parse error' helm_lint "$d"

  ok "helm template | kubernetes-validate --strict - (defaults)" helm_validate "$C"
  ok "helm template | kubernetes-validate --strict - (secrets, secret files, options)" helm_validate "$C" \
    --set 'secretEnv[0].name=AIWATCH_KAFKA_PASSWORD,secretEnv[0].secretName=aiwatch-kafka,secretEnv[0].key=password,secretFilesSecretName=aiwatch-tls' \
    --set 'config.kafkaOptions.security\.protocol=SASL_SSL,config.kafkaSecretOptions.sasl\.password=AIWATCH_KAFKA_PASSWORD,persistence.storageClassName=fast'
  d=$(fresh helm-validate); cp -r "$C/." "$d/"
  edit "$d/templates/statefulset.yaml" 's.replace("          readinessProbe:\n", "          readynessProbe:\n", 1)'
  planted "a misspelt field in the StatefulSet (strict schema)" 'readynessProbe|did not validate' helm_validate "$d"
  planted "replicas: 2 (one aiwatch per consumer group)" 'replicas must be 1' helm_validate "$C" --set replicas=2

  ok "rendered chart: probes, PVC, securityContext, POD_NAME static membership, PDB, PrometheusRule and dashboard = deploy/monitoring" helm_content "$C"
  d=$(fresh helm-content); cp -r "$C/." "$d/"
  edit "$d/templates/statefulset.yaml" 's.replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")'
  planted "a writable root filesystem" 'root filesystem is writable' helm_content "$d"
  d=$(fresh helm-content2); cp -r "$C/." "$d/"
  edit "$d/templates/prometheusrule.yaml" 's.replace("fromYaml | toYaml", "fromYaml | toYaml | replace \"5m\" \"10m\"")'
  planted "a PrometheusRule that is not the rules file" 'PrometheusRule spec differs' helm_content "$d"
}

# ---------------------------------------------------------------------------
# systemd
# ---------------------------------------------------------------------------
# systemd_verify UNIT BINARY: verify a copy whose ExecStart is BINARY; any warning fails.
systemd_verify() {
  local d; d=$(fresh systemd-verify-run)
  sed "s|^ExecStart=/usr/local/bin/aiwatch |ExecStart=$2 |" "$1" >"$d/aiwatch.service"
  grep -q "^ExecStart=$2 " "$d/aiwatch.service" || { echo "no ExecStart=/usr/local/bin/aiwatch to repoint"; return 1; }
  local out; out=$(systemd-analyze verify "$d/aiwatch.service" 2>&1) || { echo "$out"; return 1; }
  [[ -z "$out" ]] || { echo "$out"; return 1; }
}
systemd_security() {
  systemd-analyze security --offline=true --threshold="$SECURITY_THRESHOLD" "$1" >"$WORK/security.txt" 2>&1 || { tail -n 3 "$WORK/security.txt"; return 1; }
  tail -n 1 "$WORK/security.txt"
  local key
  for key in DynamicUser=yes StateDirectory=aiwatch ProtectSystem=strict NoNewPrivileges=yes; do
    grep -qx "$key" "$1" || { echo "no $key"; return 1; }
  done
}

check_systemd() {
  echo "systemd unit"
  local U="$ROOT/deploy/systemd/aiwatch.service" d bin
  bin="$(aiwatch_bin_for_systemd)"
  ok "systemd-analyze verify (ExecStart -> $bin)" systemd_verify "$U" "$bin"
  d=$(fresh systemd1); cp "$U" "$d/aiwatch.service"
  edit "$d/aiwatch.service" 's.replace("ProtectSystem=strict", "ProtectSystem=strict\nProtectSytem=full")'
  planted "a misspelt directive" 'Unknown key .ProtectSytem.' systemd_verify "$d/aiwatch.service" "$bin"
  planted "ExecStart pointing at a binary that does not exist" 'is not executable' systemd_verify "$U" "$WORK/no-such-aiwatch"

  ok "systemd-analyze security --offline=true --threshold=$SECURITY_THRESHOLD" systemd_security "$U"
  d=$(fresh systemd2); cp "$U" "$d/aiwatch.service"
  edit "$d/aiwatch.service" '"\n".join(l for l in s.split("\n") if not l.startswith(("Protect", "Private", "Restrict", "SystemCall", "CapabilityBoundingSet")))'
  planted "the sandboxing directives removed" 'exposure level' systemd_security "$d/aiwatch.service"
}

# ---------------------------------------------------------------------------
# Compose and Dockerfile (no Docker daemon here: structural checks)
# ---------------------------------------------------------------------------
compose_check() {
  "$PY" - "$1" "$ROOT/scripts/kafka.sh" <<'EOF'
import os, re, sys, yaml
path = sys.argv[1]
base = os.path.dirname(path)
doc = yaml.safe_load(open(path))
svcs = doc.get("services", {})
kafka_version = re.search(r'KAFKA_VERSION="\$\{AIWATCH_KAFKA_VERSION:-([^}]+)\}"', open(sys.argv[2]).read()).group(1)
bad = []
for name, s in svcs.items():
    deps = s.get("depends_on") or []
    for d in (deps if isinstance(deps, list) else deps.keys()):
        if d not in svcs:
            bad.append(f"{name} depends on unknown service {d}")
    if isinstance(deps, dict):
        for d, cond in deps.items():
            c = cond.get("condition")
            hc = svcs.get(d, {}).get("healthcheck") or {}
            if c == "service_healthy" and (hc.get("disable") or not hc.get("test")):
                bad.append(f"{name} waits for {d} to be healthy, but {d} has no healthcheck")
    hc = s.get("healthcheck") or {}
    if s.get("restart") != "no" and (hc.get("disable") or not hc.get("test")):
        bad.append(f"{name} has no healthcheck")
    for v in s.get("volumes") or []:
        src = v.split(":")[0]
        if src.startswith("."):
            if not os.path.exists(os.path.join(base, src)):
                bad.append(f"{name} mounts {src}, which does not exist")
        elif src not in (doc.get("volumes") or {}):
            bad.append(f"{name} mounts volume {src}, which is not declared")
    for p in s.get("ports") or []:
        if not str(p).startswith("127.0.0.1:"):
            bad.append(f"{name} publishes {p} beyond 127.0.0.1")
    img = s.get("image", "")
    if "kafka" in img and img != f"apache/kafka:{kafka_version}":
        bad.append(f"{name} runs {img}, the tests run Kafka {kafka_version} (scripts/kafka.sh)")
init = " ".join(svcs.get("topic-init", {}).get("command") or [])
if "ai-audit" not in init or "--create" not in init:
    bad.append("no topic-init service creating ai-audit")
vols = " ".join(" ".join(s.get("volumes") or []) for s in svcs.values())
for want in ("monitoring/aiwatch-dashboard.json", "grafana/provisioning", "./monitoring:/etc/prometheus/monitoring"):
    if want not in vols:
        bad.append(f"nothing mounts {want}")
if not any(v.startswith("aiwatch-state:/var/lib/aiwatch") for v in svcs.get("aiwatch", {}).get("volumes", [])):
    bad.append("aiwatch's state is not a volume at /var/lib/aiwatch")
for b in bad:
    print("compose:", b)
sys.exit(1 if bad else 0)
EOF
}
dockerfile_check() {
  local f="$1" ign="$2" user
  user=$(grep -E '^USER ' "$f" | tail -1 | awk '{print $2}')
  [[ "$user" =~ ^[1-9][0-9]*(:[0-9]+)?$ ]] || { echo "final USER '$user' is not a numeric non-root uid"; return 1; }
  grep -qE '^EXPOSE 9464' "$f" || { echo "no EXPOSE 9464"; return 1; }
  local l
  for l in title description source version revision licenses; do
    grep -q "org.opencontainers.image.$l=" "$f" || { echo "no OCI label org.opencontainers.image.$l"; return 1; }
  done
  for l in .git target; do
    grep -qxF "$l" "$ign" || { echo ".dockerignore does not exclude $l"; return 1; }
  done
  grep -q 'state_dir = "/var/lib/aiwatch"' deploy/aiwatch.toml deploy/aiwatch-compose.toml || { echo "example state_dir is not /var/lib/aiwatch"; return 1; }
}

check_containers() {
  echo "Compose and Dockerfile"
  local d
  ok "compose: dependencies, healthchecks, mounts, topic-init, Grafana, Kafka version = scripts/kafka.sh" compose_check deploy/docker-compose.yml
  d=$(fresh compose1); cp -r deploy/. "$d/"
  edit "$d/docker-compose.yml" 's.replace("image: apache/kafka:4.4.0", "image: apache/kafka:4.1.1", 1)'
  planted "compose running another Kafka version than the tests" 'the tests run Kafka 4.4.0' compose_check "$d/docker-compose.yml"
  d=$(fresh compose2); cp -r deploy/. "$d/"
  edit "$d/docker-compose.yml" 's.replace("      test: [\"CMD\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:9093/-/ready\"]", "      disable: true")'
  planted "compose waiting on an Alertmanager health that is never checked" 'waits for alertmanager to be healthy' compose_check "$d/docker-compose.yml"
  ok "Dockerfile: numeric non-root USER, EXPOSE, OCI labels; .dockerignore" dockerfile_check deploy/Dockerfile .dockerignore
  d=$(fresh docker1); cp deploy/Dockerfile .dockerignore "$d/"
  edit "$d/Dockerfile" 's.replace("USER 10001:10001", "USER aiwatch")'
  planted "USER by name" 'is not a numeric non-root uid' dockerfile_check "$d/Dockerfile" "$d/.dockerignore"
}

# ---------------------------------------------------------------------------
# aiwatch itself: the binary, and the configs through `aiwatch config check`
# ---------------------------------------------------------------------------
AIWATCH=""
aiwatch_bin() {
  if [[ -n "$AIWATCH" ]]; then echo "$AIWATCH"; return; fi
  if [[ -n "${AIWATCH_BIN:-}" ]]; then
    [[ -x "$AIWATCH_BIN" ]] || die "AIWATCH_BIN=$AIWATCH_BIN is not executable"
    AIWATCH="$AIWATCH_BIN"
  else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/aiwatch-target}"
    log "building aiwatch (cargo build --locked --bin aiwatch, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    cargo build --locked --bin aiwatch >&2
    AIWATCH="$CARGO_TARGET_DIR/debug/aiwatch"
  fi
  echo "$AIWATCH"
}
# systemd verify needs an executable, not necessarily a fresh build: the static
# checks use the built binary when there is one and /bin/true's stand-in otherwise.
aiwatch_bin_for_systemd() {
  if [[ -n "$AIWATCH" ]]; then echo "$AIWATCH"
  elif [[ -n "${AIWATCH_BIN:-}" && -x "${AIWATCH_BIN}" ]]; then echo "$AIWATCH_BIN"
  elif [[ -x "${CARGO_TARGET_DIR:-/var/tmp/aiwatch-target}/debug/aiwatch" ]]; then echo "${CARGO_TARGET_DIR:-/var/tmp/aiwatch-target}/debug/aiwatch"
  else command -v true
  fi
}
config_check() {
  local d; d=$(fresh cfg-run)
  cp deploy/policy.toml "$d/policy.toml"
  sed -e 's|^policy = .*|policy = "policy.toml"|' -e "s|^state_dir = .*|state_dir = \"$d/state\"|" "$1" >"$d/aiwatch.toml"
  POD_NAME=aiwatch-0 "$AIWATCH" config check --config "$d/aiwatch.toml"
}
helm_config() {
  "$PY" - "$WORK/rendered.yaml" "$1" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap" and "aiwatch.toml" in d.get("data", {}):
        open(sys.argv[2], "w").write(d["data"]["aiwatch.toml"])
EOF
}
check_configs() {
  echo "Run configs (aiwatch config check)"
  if ! "$AIWATCH" config check --help >/dev/null 2>&1; then
    printf '  skip  %s has no `config check` yet (issue 11 item 7, branch ops): the example, compose and Helm configs are not parsed\n' "$AIWATCH"
    return 0
  fi
  "$HELM" template aiwatch deploy/helm/aiwatch --kube-version "$KUBE_VERSION" >"$WORK/rendered.yaml"
  helm_config "$WORK/helm-aiwatch.toml"
  local f d
  for f in deploy/aiwatch.toml deploy/aiwatch-compose.toml "$WORK/helm-aiwatch.toml"; do
    ok "aiwatch config check ${f#"$WORK/"}" config_check "$f"
  done
  d=$(fresh cfg-bad); cp deploy/aiwatch.toml "$d/"
  edit "$d/aiwatch.toml" 's.replace("lateness_seconds = 60", "latenes_seconds = 60")'
  planted "a misspelt key in the run config" 'latenes_seconds|unknown field' config_check "$d/aiwatch.toml"
}

# ---------------------------------------------------------------------------
# The live test
# ---------------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
http_get() { curl -fsS --max-time 5 "$@"; }
# wait_for SECONDS DESCRIPTION CMD...: poll CMD every second.
wait_for() {
  local limit="$1" what="$2"; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "timed out after ${limit}s waiting for $what"; return 1; }
    sleep 1
  done
}
prom_query() { curl -fsS --max-time 10 "http://127.0.0.1:${PROM_PORT}/api/v1/query" --data-urlencode "query=$1"; }
metric_value() { http_get "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
consumed_at_least() { local v; v=$(metric_value "$1" aiwatch_events_consumed_total); [[ -n "$v" ]] && (( ${v%.*} >= $2 )); }

# live_panels FILE: every expression of the dashboard FILE returns data; prints those that do not.
live_panels() {
  "$PY" "$ROOT/deploy/monitoring/check.py" panel-exprs "$1" 30s >"$WORK/exprs.jsonl"
  "$PY" - "$WORK/exprs.jsonl" "$PROM_PORT" "$PENDING_METRICS" "$NODATA_MODE" "${LIVE_WAIT:-20}" <<'EOF'
import json, sys, time, urllib.parse, urllib.request
exprs = [json.loads(l) for l in open(sys.argv[1])]
port, pending, mode = sys.argv[2], sys.argv[3].split(), sys.argv[4]
def query(e):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": e})
    r = json.load(urllib.request.urlopen(url, timeout=10))
    if r.get("status") != "success":
        raise RuntimeError(r)
    return r["data"]["result"]
empty = []
deadline = time.time() + float(sys.argv[5])
while True:
    empty = [e for e in exprs if not query(e["expr"])]
    waiting = [e for e in empty if not any(m in e["expr"] for m in pending)]
    if not waiting or time.time() > deadline:
        break
    time.sleep(3)
failing = []
for e in empty:
    why = next((m for m in pending if m in e["expr"]), None)
    tag = f"pending metric {why}" if why else ("reported only (AIWATCH_OPS_NODATA=report)" if mode == "report" else "FAIL")
    print(f"no data: {e['panel']} {e['refId']}: {e['expr']}  [{tag}]")
    if not why and mode != "report":
        failing.append(e)
print(f"{len(exprs) - len(empty)} of {len(exprs)} panel expressions returned data")
sys.exit(1 if failing else 0)
EOF
}
# live_rules FILE: every rule loaded from FILE was evaluated without error.
live_rules() {
  "$PY" - "$PROM_PORT" "$1" "${LIVE_WAIT:-70}" <<'EOF'
import json, sys, time, urllib.request, yaml
port, path = sys.argv[1], sys.argv[2]
want = sum(len(g["rules"]) for g in yaml.safe_load(open(path))["groups"])
deadline = time.time() + float(sys.argv[3])     # the recording group is evaluated every 30 s
while True:
    groups = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=10))["data"]["groups"]
    rules = [r for g in groups if g["file"] == path for r in g["rules"]]
    bad = [r for r in rules if r.get("health") != "ok"]
    if (len(rules) == want and not bad) or time.time() > deadline:
        break
    time.sleep(2)
for r in bad:
    print(f"rule {r['name']}: health {r.get('health')} {r.get('lastError', '')}")
print(f"{len(rules)} rules loaded from {path} (file has {want}), {len(rules) - len(bad)} healthy")
sys.exit(0 if len(rules) == want and not bad else 1)
EOF
}
# live_alert NAME OUTPUT: the alert NAME for OUTPUT is pending or firing.
live_alert() {
  "$PY" - "$PROM_PORT" "$1" "$2" "${LIVE_WAIT:-40}" <<'EOF'
import json, sys, time, urllib.request
port, name, output = sys.argv[1:4]
deadline = time.time() + float(sys.argv[4])
while True:
    alerts = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=10))["data"]["alerts"]
    hit = [a for a in alerts if a["labels"].get("alertname") == name and a["labels"].get("output") == output]
    if hit or time.time() > deadline:
        break
    time.sleep(2)
for a in hit:
    print(f"{name}{{output={output}, instance={a['labels'].get('instance')}}}: {a['state']} since {a.get('activeAt')}")
if not any(a["state"] in ("pending", "firing") for a in hit):
    print(f"{name}{{output={output}}} is neither pending nor firing")
    sys.exit(1)
EOF
}

write_run_config() { # NAME GROUP METRICS_PORT OUTPUTS...
  local name="$1" group="$2" port="$3"; shift 3
  mkdir -p "$WORK/$name"
  cat >"$WORK/$name/aiwatch.toml" <<EOF
policy = "$ROOT/deploy/policy.toml"
state_dir = "$WORK/$name/state"
checkpoint_interval_seconds = 1
lateness_seconds = 60
max_future_seconds = 300

[kafka]
bootstrap_servers = "127.0.0.1:${KAFKA_PORT}"
topics = ["ai-audit"]
group_id = "$group"
max_batch_wait_ms = 200
idle_partition_ms = 2000

[dead_letter]
kind = "file"
path = "$WORK/$name/dead-letters.jsonl"

[alert_dead_letter]
kind = "file"
path = "$WORK/$name/refused-alerts.jsonl"

$(printf '%s\n' "$@")

[metrics]
listen = "127.0.0.1:${port}"
EOF
}

check_live() {
  echo "Live test: Prometheus with the shipped rules scraping aiwatch run against a Kafka broker"
  local bin events
  bin="$(aiwatch_bin)"
  NODATA_MODE="${AIWATCH_OPS_NODATA:-$([[ -n "${AIWATCH_BIN:-}" ]] && echo report || echo fail)}"
  log "aiwatch: $bin ($("$bin" --version 2>&1 | head -1)); no-data panels: $NODATA_MODE"
  local p
  for p in "$PROM_PORT" "$METRICS_A_PORT" "$METRICS_B_PORT" "$REFUSER_PORT" "$CLOSED_PORT" "$KAFKA_PORT" $((KAFKA_PORT + 1)); do
    port_free "$p" || die "port $p on 127.0.0.1 is in use (set AIWATCH_OPS_PROM_PORT / AIWATCH_OPS_KAFKA_PORT)"
  done

  events="$ROOT/../shared/spec/examples/events.jsonl"
  if [[ -f "$events" ]]; then
    cp "$events" "$WORK/events.jsonl"
  else
    log "no $events: generating events with aiwatch generate"
    "$bin" generate --events 2000 --out "$WORK/events.jsonl" >&2
  fi
  # Three malformed records, so dead letters have reasons to show.
  printf '%s\n' 'not json at all' '{"event_type": "ai.request", "time": "2026-11-01T00:00:00Z"}' '{"event_id": "bad-time", "event_type": "ai.request", "time": "yesterday"}' >>"$WORK/events.jsonl"

  log "starting Kafka on 127.0.0.1:${KAFKA_PORT}"
  KAFKA_STARTED=1
  timeout 300 env "${KAFKA_ENV[@]}" scripts/kafka.sh start >/dev/null
  timeout 120 env "${KAFKA_ENV[@]}" scripts/kafka.sh topics --create --topic ai-audit --partitions 2 --replication-factor 1 >/dev/null

  # A receiver that refuses every alert for good (HTTP 400): instance A's webhook
  # output dead-letters alerts, so the alert dead letter has data.
  python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(400); self.send_header("content-type", "text/plain"); self.end_headers(); self.wfile.write(b"schema rejected by ops-check\n")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$REFUSER_PORT" &
  PIDS+=($!)

  # A: file output and the refusing webhook (alerts dead-lettered; checkpoints go on).
  write_run_config a aiwatch-ops-a "$METRICS_A_PORT" \
    '[[output]]' 'kind = "file"' "path = \"$WORK/a/alerts.jsonl\"" '' \
    '[[output]]' 'kind = "webhook"' "url = \"http://127.0.0.1:${REFUSER_PORT}/alerts\"" 'max_retries = 0'
  # B: Alertmanager output at a port nothing listens on (the output-down alert).
  port_free "$CLOSED_PORT" || die "port $CLOSED_PORT should be closed"
  write_run_config b aiwatch-ops-b "$METRICS_B_PORT" \
    '[[output]]' 'kind = "alertmanager"' "url = \"http://127.0.0.1:${CLOSED_PORT}\"" 'max_retries = 1' 'timeout_ms = 1000'

  # Prometheus with the shipped rules, plus a file of planted defects checked to be caught.
  mkdir -p "$WORK/prom"
  cat >"$WORK/prom/planted.rules.yml" <<'EOF'
groups:
  - name: planted-defects
    rules:
      # Syntactically fine, fails at every evaluation (many-to-many match).
      - record: planted:output_up:many_to_many
        expr: aiwatch_output_up / on () aiwatch_output_up
      # A misspelt metric: this alert can never go pending.
      - alert: PlantedOutputDown
        expr: aiwatch_output_upp == 0
        labels: { output: alertmanager }
EOF
  cat >"$WORK/prom/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/deploy/monitoring/aiwatch.rules.yml
  - $WORK/prom/planted.rules.yml
scrape_configs:
  - job_name: aiwatch
    static_configs:
      - targets: ["127.0.0.1:${METRICS_A_PORT}", "127.0.0.1:${METRICS_B_PORT}"]
EOF
  promtool check config "$WORK/prom/prometheus.yml" >/dev/null
  prometheus --config.file="$WORK/prom/prometheus.yml" --storage.tsdb.path="$WORK/prom/data" \
    --web.listen-address="127.0.0.1:${PROM_PORT}" --log.level=warn >"$WORK/prom/prometheus.log" 2>&1 &
  PIDS+=($!)
  wait_for 30 "Prometheus ready" http_get "http://127.0.0.1:${PROM_PORT}/-/ready" || { tail -n 20 "$WORK/prom/prometheus.log"; return 1; }

  local n
  for n in a b; do
    "$bin" run --config "$WORK/$n/aiwatch.toml" >"$WORK/$n/stdout.log" 2>"$WORK/$n/stderr.log" &
    PIDS+=($!)
  done
  wait_for 60 "aiwatch A /readyz" http_get "http://127.0.0.1:${METRICS_A_PORT}/readyz" || { tail -n 20 "$WORK/a/stderr.log"; return 1; }
  wait_for 60 "aiwatch B /healthz" http_get "http://127.0.0.1:${METRICS_B_PORT}/healthz" || { tail -n 20 "$WORK/b/stderr.log"; return 1; }

  log "producing $(wc -l <"$WORK/events.jsonl") records to ai-audit"
  timeout 120 env "${KAFKA_ENV[@]}" scripts/kafka.sh produce ai-audit <"$WORK/events.jsonl" >/dev/null 2>&1
  local valid=$(( ($(wc -l <"$WORK/events.jsonl") - 17) * 9 / 10 ))   # the example holds 14 malformed lines, we added 3
  wait_for 120 "aiwatch A to consume the events" consumed_at_least "$METRICS_A_PORT" "$valid" || { tail -n 20 "$WORK/a/stderr.log"; return 1; }
  wait_for 60 "aiwatch B to find its output down" bash -c "curl -fsS 127.0.0.1:${METRICS_B_PORT}/metrics | grep -q '^aiwatch_output_up{output=\"alertmanager\"} 0'" ||
    { tail -n 20 "$WORK/b/stderr.log"; return 1; }
  sleep 5   # a few more scrapes, so every rate() has two samples
  log "A consumed $(metric_value "$METRICS_A_PORT" aiwatch_events_consumed_total) events, wrote $(wc -l <"$WORK/a/alerts.jsonl" 2>/dev/null || echo 0) alerts, dead-lettered $(wc -l <"$WORK/a/refused-alerts.jsonl" 2>/dev/null || echo 0) (the webhook refuses them); B's Alertmanager output is down"

  shown "every rule of deploy/monitoring/aiwatch.rules.yml loaded and healthy" live_rules "$ROOT/deploy/monitoring/aiwatch.rules.yml"
  LIVE_WAIT=5 planted "a rule that fails at evaluation is reported unhealthy" 'planted:output_up:many_to_many: health err' live_rules "$WORK/prom/planted.rules.yml"
  shown "AiwatchOutputDown pending for the Alertmanager output at a closed port" live_alert AiwatchOutputDown alertmanager
  LIVE_WAIT=5 planted "an output-down alert on a misspelt metric never goes pending" 'neither pending nor firing' live_alert PlantedOutputDown alertmanager
  shown "every dashboard panel expression returns data" live_panels "$ROOT/deploy/monitoring/aiwatch-dashboard.json"
  local d; d=$(fresh live-dash); cp "$ROOT/deploy/monitoring/aiwatch-dashboard.json" "$d/"
  edit "$d/aiwatch-dashboard.json" 's.replace("aiwatch_state_bytes{", "aiwatch_state_byte{", 1)'
  NODATA_MODE=fail LIVE_WAIT=3 planted "a panel on a misspelt metric is reported as returning no data" 'no data: .*aiwatch_state_byte\{' live_panels "$d/aiwatch-dashboard.json"
  # Which alerts the run raised (information: most need minutes of 'for').
  prom_query 'ALERTS' >"$WORK/alerts.json"
  "$PY" - "$WORK/alerts.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["data"]["result"]
names = sorted({"%s(%s)" % (x["metric"]["alertname"], x["metric"]["alertstate"]) for x in r})
print("  alerts now:", ", ".join(names) or "none")
EOF
}

main() {
  install_tools
  check_prometheus
  check_alertmanager
  check_dashboard
  check_helm
  check_containers
  if ((LIVE)); then
    aiwatch_bin >/dev/null
  fi
  check_systemd
  if ((LIVE)); then
    check_configs
    check_live
  else
    echo "Live test and config check skipped (--no-live)"
  fi
  echo
  echo "ops-check took $((SECONDS - START)) s"
  echo "ops-check: ${PASSED} passed, ${FAILED} failed"
  if ((FAILED)); then
    printf '  failed: %s\n' "${FAILURES[@]}"
    exit 1
  fi
}

main
