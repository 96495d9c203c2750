"""k8s/base/monitoring: the PrometheusRule checked and unit-tested with promtool,
the scrape objects, the prometheus-adapter rules, the Grafana dashboard, and
every metric they name checked against what the services register.

promtool comes from Debian's `prometheus` package; without it only the tests
that run it are skipped. tests/integration/test_metrics_names.py checks the
same names against a running stack (Triton and Envoy included).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.common.metrics import ServerMetrics
from services.gateway.metrics import GatewayMetrics
from services.rvc import metrics as rvc_metrics
from services.tts_gateway.metrics import TtsMetrics
from tests.unit.rvc.fake_pool import FakePool

REPO = Path(__file__).resolve().parents[3]
MONITORING = REPO / "k8s" / "base" / "monitoring"
RULES = MONITORING / "prometheusrule.yaml"
RULE_TESTS = MONITORING / "tests" / "alerts.test.yaml"
DASHBOARD = MONITORING / "dashboards" / "voice-pipeline.json"
ADAPTER = MONITORING / "prometheus-adapter" / "config.yaml"
DOCS = REPO / "docs" / "observability.md"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: install Debian's `prometheus` package (CI does)",
)

COMPONENTS = {  # app.kubernetes.io/name -> (port name, path)
    "gateway": ("metrics", "/metrics"),
    "tts-gateway": ("metrics", "/metrics"),
    "rvc": ("metrics", "/metrics"),
    "triton": ("metrics", "/metrics"),
    "edge": ("envoy-metrics", "/stats/prometheus"),
}
# Scraped in another component's pods: job -> (app.kubernetes.io/name, port name, path).
SIDECARS = {"vllm": ("triton", "vllm-http", "/metrics")}

# -- PromQL: which metric names an expression reads ------------------------------

PROMQL_WORDS = {
    # keywords and operators
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "atan2", "inf", "nan",
    # aggregations
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    # functions
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "exp", "floor", "histogram_avg", "histogram_count", "histogram_fraction",
    "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum",
    "holt_winters", "double_exponential_smoothing", "hour", "idelta", "increase", "irate",
    "label_join", "label_replace", "last_over_time", "ln", "log10", "log2", "mad_over_time",
    "max_over_time", "min_over_time", "minute", "month", "pi", "predict_linear",
    "present_over_time", "quantile_over_time", "rad", "rate", "resets", "round", "scalar",
    "sgn", "sin", "sinh", "sort", "sort_desc", "sort_by_label", "sort_by_label_desc", "sqrt",
    "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan", "tanh", "time",
    "timestamp", "vector", "year",
}

_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLES = re.compile(r"\$\{?\w+\}?|<<[^>]*>>")  # Grafana's $x / ${x}, the adapter's <<.X>>
_IDENTIFIER = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers that are not
    keywords, functions or label names (matchers and grouping lists are dropped first)."""
    for pattern, blank in ((_STRINGS, '""'), (_MATCHERS, "{}"), (_RANGES, "[]"),
                           (_GROUPING, r"\1()"), (_VARIABLES, "")):
        expr = pattern.sub(blank, expr)
    names = {m.group() for m in _IDENTIFIER.finditer(expr)}
    return {name for name in names if name.lower() not in PROMQL_WORDS}


def rule_groups() -> list[dict]:
    return yaml.safe_load(RULES.read_text())["spec"]["groups"]


def rules() -> list[dict]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alerts() -> list[dict]:
    return [rule for rule in rules() if "alert" in rule]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict | None = None) -> list[dict]:
    """Every panel, those inside collapsed rows included."""
    found = []
    for panel in (board or dashboard())["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", ()))
    return [p for p in found if p.get("type") != "row"]


def adapter_rules() -> list[dict]:
    return yaml.safe_load(ADAPTER.read_text())["rules"]


def referenced_metrics() -> dict[str, set[str]]:
    """Metric name -> where it is read (alert, recording rule, adapter rule, panel),
    recording rules' own outputs left out."""
    where: dict[str, set[str]] = {}

    def add(expr: str, place: str) -> None:
        for name in metric_names(expr):
            where.setdefault(name, set()).add(place)

    for rule in rules():
        add(rule["expr"], f"rule {rule.get('alert') or rule.get('record')}")
    for rule in adapter_rules():
        add(rule["seriesQuery"], "prometheus-adapter")
    board = dashboard()
    for panel in panels(board):
        for target in panel["targets"]:
            add(target["expr"], f"panel {panel['title']!r}")
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            match = re.match(r"label_values\(\s*([^,)]+)", query.get("query", ""))
            if match:
                add(match.group(1), f"variable {variable['name']}")
    for recorded in (rule["record"] for rule in rules() if "record" in rule):
        where.pop(recorded, None)
    return where


# Metrics the pipeline's own services do not export, with who does.
EXTERNAL_PREFIXES = {
    "nv_": "Triton's own exporter (:8002)",
    "vllm:": "the vLLM server in Triton's pods (:8003)",
    "envoy_": "Envoy's /stats/prometheus",
    "DCGM_": "NVIDIA's DCGM exporter, a node agent on the GPU nodes",
}
SYNTHETIC = {"up": "written by Prometheus for every scrape target"}


def test_promql_names_are_parsed_out_of_every_construct():
    expr = (
        'histogram_quantile(0.95, sum by (namespace, le) (rate(a_seconds_bucket{job=~"x|y",'
        ' le!="1"}[5m]))) / on (pod) group_left(node) b:recorded * 1e3'
        ' and ignoring(le) c_total offset 5m > bool 2 unless absent(d{rpc="sum"})'
        ' or sum without (x) (increase(e[$__rate_interval])) > ${threshold}'
        ' or max by (<<.GroupBy>>) (f{<<.LabelMatchers>>})'
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b:recorded", "c_total", "d", "e", "f"}


# -- the objects ----------------------------------------------------------------


def test_the_kustomization_lists_only_files_that_exist():
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (MONITORING / resource).is_file(), resource
    generated = {g["name"]: g for g in kustomization["configMapGenerator"]}
    for generator in generated.values():
        assert generator["options"]["disableNameSuffixHash"] is True
        for entry in generator["files"]:
            assert (MONITORING / entry.split("=", 1)[-1]).is_file(), entry
    board = generated["voice-pipeline-dashboard"]
    assert board["files"] == ["dashboards/voice-pipeline.json"]
    assert board["options"]["labels"] == {"grafana_dashboard": "1"}
    assert generated["voice-prometheus-adapter-rules"]["files"] == [
        "config.yaml=prometheus-adapter/config.yaml"
    ]
    # The promtool tests are not deployed.
    assert not any("tests" in r for r in kustomization["resources"])


def _job(spec: dict, endpoint: dict) -> str:
    """The job label of a PodMonitor's targets: a relabeling that sets it, else jobLabel's."""
    for relabeling in endpoint.get("relabelings", []):
        if relabeling.get("targetLabel") == "job":
            assert relabeling.get("action", "replace") == "replace"
            assert "sourceLabels" not in relabeling, relabeling
            assert "jobLabel" not in spec, "one source for job"
            return relabeling["replacement"]
    assert spec["jobLabel"] == "app.kubernetes.io/name"  # job="rvc", job="triton", ...
    return spec["selector"]["matchLabels"]["app.kubernetes.io/name"]


def test_every_component_is_scraped_by_name_and_port_name():
    monitors = list(yaml.safe_load_all((MONITORING / "podmonitors.yaml").read_text()))
    seen = {}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["kind"] == "PodMonitor"
        spec = monitor["spec"]
        (endpoint,) = spec["podMetricsEndpoints"]
        name = spec["selector"]["matchLabels"]["app.kubernetes.io/name"]
        job = _job(spec, endpoint)
        assert job not in seen, f"two PodMonitors make job={job}"
        seen[job] = (name, endpoint["port"], endpoint["path"])
    assert seen == {job: (job, *where) for job, where in COMPONENTS.items()} | SIDECARS
    # The rules' job="triton" is tritonserver's alone (TritonDown).
    assert seen["triton"][1] == "metrics"


def test_every_alert_is_documented_and_linked_to_its_runbook():
    headings = {_anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.+?)\s*$", DOCS.read_text(), re.M)}
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names))
    assert {"VoiceErrorRatioHigh", "VoiceTimeToFirstAudioSlow", "RvcQueueSaturated",
            "RvcWorkerCrashLooping", "TritonDown"} <= set(names)
    for rule in alerts():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == "docs/observability.md"
        assert anchor == rule["alert"].lower() and anchor in headings, rule["alert"]


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def test_the_adapter_publishes_the_autoscaling_metrics_per_pod():
    published = {}
    for rule in adapter_rules():
        overrides = rule["resources"]["overrides"]
        assert overrides == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        assert "<<.Series>>{<<.LabelMatchers>>}" in rule["metricsQuery"]
        assert "<<.GroupBy>>" in rule["metricsQuery"]
        (series,) = metric_names(rule["seriesQuery"])
        assert re.fullmatch(rule["name"]["matches"], series)
        published[series] = rule["name"]["as"]
    assert published == {
        "rvc_queue_depth": "rvc_queue_depth", "tts_in_flight_requests": "tts_in_flight_requests"
    }


def test_the_dashboard_queries_prometheus_through_its_datasource_variable():
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert board["uid"] and board["title"]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    agnostic = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(board):
        assert panel["datasource"] == agnostic, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", agnostic) == agnostic, panel["title"]
            assert target["expr"].strip() and metric_names(target["expr"]), panel["title"]
            assert target["refId"]


def test_the_dashboard_shows_what_operators_need():
    shown = set()
    for panel in panels():
        for target in panel["targets"]:
            shown |= metric_names(target["expr"])
    assert {
        "grpc_server_handled_total",  # request rate, errors by code
        "gateway_time_to_first_audio_seconds_bucket",
        "tts_real_time_factor_bucket", "rvc_real_time_factor_bucket",
        "gateway_real_time_factor_bucket",
        "rvc_queue_depth", "rvc_workers_alive", "rvc_workers_busy",
        "DCGM_FI_DEV_GPU_UTIL",
    } <= shown


def _registered_names() -> set[str]:
    """Every sample name the three services can export, from their real registries."""
    registry = CollectorRegistry()
    ServerMetrics(registry)
    GatewayMetrics(registry)
    TtsMetrics(registry)
    rvc_metrics.register(registry, FakePool())
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",),
                "summary": ("_sum", "_count", "")}
    names = set()
    for family in registry.collect():
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def test_every_pipeline_metric_referenced_is_registered_by_a_service():
    registered = _registered_names()
    assert "rvc_queue_depth" in registered  # the HPA's metric: its name is fixed
    missing = {}
    for name, places in referenced_metrics().items():
        if name in SYNTHETIC or name.startswith(tuple(EXTERNAL_PREFIXES)):
            continue
        if name not in registered:
            missing[name] = sorted(places)
    assert not missing, f"read but never exported: {missing}"


# -- promtool --------------------------------------------------------------------


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@needs_promtool
def test_promtool_accepts_the_rules(tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(yaml.safe_load(RULES.read_text())["spec"]))
    result = _promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@needs_promtool
def test_the_alerts_fire_on_bad_series_and_not_on_healthy_ones(tmp_path):
    spec = yaml.safe_load(RULES.read_text())["spec"]
    (tmp_path / "voice-pipeline.rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = _promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    covered = {t["alertname"] for test in tested for t in test.get("alert_rule_test", ())}
    assert covered == {rule["alert"] for rule in alerts()}


@needs_promtool
def test_promtool_accepts_every_dashboard_and_adapter_query(tmp_path):
    """Each query written as a recording rule, with Grafana's and the adapter's
    template variables filled in, so promtool parses them all."""
    queries = []
    for panel in panels():
        for target in panel["targets"]:
            expr = (target["expr"].replace("$__rate_interval", "5m")
                    .replace("$namespace", ".*"))
            queries.append((f"panel_{panel['id']}_{target['refId']}", expr))
    for index, rule in enumerate(adapter_rules()):
        (series,) = metric_names(rule["seriesQuery"])
        expr = (rule["metricsQuery"].replace("<<.Series>>", series)
                .replace("<<.LabelMatchers>>", 'namespace="voice",pod=~"a|b"')
                .replace("<<.GroupBy>>", "pod"))
        queries += [(f"adapter_{index}_series", rule["seriesQuery"]), (f"adapter_{index}", expr)]
    group = {"name": "queries", "rules": [{"record": f"check:{n}", "expr": e} for n, e in queries]}
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump({"groups": [group]}))
    result = _promtool("check", "rules", "queries.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
