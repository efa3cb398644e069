"""Static checks of the cluster deployment files in cluster/.

No cluster is started: every YAML must parse, the KubeRay manifests must carry the fields the
ray.io/v1 CRD schemas require, every container must run as non-root with no literal AWS
secrets, and the Ray launcher config must pass Ray's own launcher schema. The validators are
also run on broken manifests, which they must reject (so the checks can fail).

The required-field lists below are transcribed from the KubeRay CRDs
(ray-operator/config/crd/bases/ray.io_{rayclusters,rayjobs,raycronjobs}.yaml and the Go types in
ray-operator/apis/ray/v1/). Where KubeRay releases differ, the stricter list is used:
``rayStartParams`` was required in KubeRay <= 1.2 and is optional later, so it is required here.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"

# --- CRD required fields (ray.io/v1), as data -------------------------------------------------

RAYCLUSTER_SPEC_REQUIRED = ["headGroupSpec"]
HEAD_GROUP_REQUIRED = ["rayStartParams", "template"]
WORKER_GROUP_REQUIRED = ["groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"]
POD_SPEC_REQUIRED = ["containers"]
CONTAINER_REQUIRED = ["name", "image"]
# RayJob: entrypoint is optional in the CRD (InteractiveMode has none) but every methray RayJob
# submits one; a RayJob needs a cluster: rayClusterSpec (create one) or clusterSelector (reuse).
RAYJOB_SPEC_REQUIRED = ["entrypoint"]
RAYJOB_CLUSTER_ONE_OF = ["rayClusterSpec", "clusterSelector"]
RAYJOB_SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
RAYCRONJOB_SPEC_REQUIRED = ["schedule", "jobTemplate"]  # jobTemplate is a RayJobSpec
CRONJOB_SPEC_REQUIRED = ["schedule", "jobTemplate"]  # batch/v1
JOB_TEMPLATE_POD_REQUIRED = ["containers"]

# Names of AWS credentials that must come from a Secret (valueFrom), never a literal value.
AWS_SECRET_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
# Literal credential shapes: access key ids, and "aws_secret_access_key = <40 chars>".
AWS_KEY_ID_RE = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
AWS_SECRET_RE = re.compile(r"(?i)aws_secret_access_key\W{1,5}[A-Za-z0-9/+=]{40}\b")
# A methray entrypoint: python <anything/>jobs/<name>.py ... --config <file>
ENTRYPOINT_RE = re.compile(r"^python3?\s+(?:\S*/)?jobs/[a-z_]+\.py\s.*--config[ =]\S+")
CRON_RE = re.compile(r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$")

KUBE_FILES = ["raycluster.yaml", "rayjob-pipeline.yaml", "raycronjob-score-genome.yaml",
              "cronjob-score-genome.yaml", "methray-config.yaml"]


class Invalid(AssertionError):
    pass


def _need(obj: dict, keys, where: str) -> None:
    if not isinstance(obj, dict):
        raise Invalid(f"{where}: expected a mapping, got {type(obj).__name__}")
    missing = [k for k in keys if obj.get(k) in (None, "")]
    if missing:
        raise Invalid(f"{where}: missing required field(s) {missing}")


# --- validators -------------------------------------------------------------------------------

def check_container(c: dict, where: str) -> None:
    _need(c, CONTAINER_REQUIRED, where)
    sc = c.get("securityContext") or {}
    if sc.get("runAsNonRoot") is not True:
        raise Invalid(f"{where}: securityContext.runAsNonRoot must be true")
    if sc.get("runAsUser") != 1000:
        raise Invalid(f"{where}: securityContext.runAsUser must be 1000")
    if sc.get("allowPrivilegeEscalation") is not False:
        raise Invalid(f"{where}: securityContext.allowPrivilegeEscalation must be false")
    if sc.get("privileged"):
        raise Invalid(f"{where}: privileged container")
    for env in c.get("env") or []:
        if env.get("name") in AWS_SECRET_ENV:
            if "value" in env:
                raise Invalid(f"{where}: {env['name']} has a literal value; use valueFrom.secretKeyRef")
            if "secretKeyRef" not in (env.get("valueFrom") or {}):
                raise Invalid(f"{where}: {env['name']} must come from valueFrom.secretKeyRef")


def check_pod_template(tpl: dict, where: str) -> list[dict]:
    """Validate a PodTemplateSpec; return its containers."""
    _need(tpl, ["spec"], where)
    spec = tpl["spec"]
    _need(spec, POD_SPEC_REQUIRED, f"{where}.spec")
    psc = spec.get("securityContext") or {}
    if psc.get("runAsUser") == 0 or psc.get("runAsNonRoot") is False:
        raise Invalid(f"{where}.spec.securityContext runs as root")
    containers = list(spec["containers"]) + list(spec.get("initContainers") or [])
    for i, c in enumerate(containers):
        check_container(c, f"{where}.spec.containers[{i}]")
    return containers


def check_entrypoint(entry, where: str) -> None:
    if not isinstance(entry, str) or not ENTRYPOINT_RE.match(entry.strip()):
        raise Invalid(f"{where}: entrypoint {entry!r} is not `python .../jobs/<name>.py ... --config FILE`")


def check_raycluster_spec(spec: dict, where: str, *, want_gpu: bool = True) -> None:
    _need(spec, RAYCLUSTER_SPEC_REQUIRED, where)
    head = spec["headGroupSpec"]
    if not isinstance(head, dict) or "rayStartParams" not in head:
        raise Invalid(f"{where}.headGroupSpec: missing required field(s) ['rayStartParams']")
    _need(head, ["template"], f"{where}.headGroupSpec")
    check_pod_template(head["template"], f"{where}.headGroupSpec.template")
    groups = spec.get("workerGroupSpecs") or []
    gpu_groups = []
    for i, g in enumerate(groups):
        gw = f"{where}.workerGroupSpecs[{i}]"
        if not isinstance(g, dict):
            raise Invalid(f"{gw}: expected a mapping")
        missing = [k for k in WORKER_GROUP_REQUIRED if k not in g or (k != "rayStartParams" and g[k] in (None, ""))]
        if missing:
            raise Invalid(f"{gw}: missing required field(s) {missing}")
        lo, hi = g["minReplicas"], g["maxReplicas"]
        n = g.get("replicas", lo)
        if not all(isinstance(x, int) and x >= 0 for x in (lo, hi, n)):
            raise Invalid(f"{gw}: replicas/minReplicas/maxReplicas must be integers >= 0")
        if not lo <= hi:
            raise Invalid(f"{gw}: minReplicas {lo} > maxReplicas {hi}")
        if not lo <= n <= hi:
            raise Invalid(f"{gw}: replicas {n} outside [{lo}, {hi}]")
        for c in check_pod_template(g["template"], f"{gw}.template"):
            limits = (c.get("resources") or {}).get("limits") or {}
            if int(limits.get("nvidia.com/gpu", 0) or 0) > 0:
                gpu_groups.append(g["groupName"])
    if want_gpu and not gpu_groups:
        raise Invalid(f"{where}: no worker group requests nvidia.com/gpu in its limits")
    if spec.get("enableInTreeAutoscaling"):
        if not any(g["maxReplicas"] > g["minReplicas"] for g in groups):
            raise Invalid(f"{where}: autoscaling enabled but no group has maxReplicas > minReplicas")
        sc = (spec.get("autoscalerOptions") or {}).get("securityContext") or {}
        if sc.get("runAsNonRoot") is not True or sc.get("allowPrivilegeEscalation") is not False:
            raise Invalid(f"{where}.autoscalerOptions.securityContext: the autoscaler sidecar must run as non-root")


def check_rayjob_spec(spec: dict, where: str) -> None:
    _need(spec, RAYJOB_SPEC_REQUIRED, where)
    check_entrypoint(spec["entrypoint"], f"{where}.entrypoint")
    if not any(spec.get(k) for k in RAYJOB_CLUSTER_ONE_OF):
        raise Invalid(f"{where}: needs one of {RAYJOB_CLUSTER_ONE_OF}")
    mode = spec.get("submissionMode", "K8sJobMode")
    if mode not in RAYJOB_SUBMISSION_MODES:
        raise Invalid(f"{where}.submissionMode: {mode!r} not one of {sorted(RAYJOB_SUBMISSION_MODES)}")
    if spec.get("rayClusterSpec"):
        check_raycluster_spec(spec["rayClusterSpec"], f"{where}.rayClusterSpec")
        if spec.get("shutdownAfterJobFinishes") is not True:
            raise Invalid(f"{where}: a RayJob that creates its cluster must set shutdownAfterJobFinishes: true")
        ttl = spec.get("ttlSecondsAfterFinished")
        if not isinstance(ttl, int) or ttl < 0:
            raise Invalid(f"{where}: ttlSecondsAfterFinished must be an integer >= 0")
    if spec.get("submitterPodTemplate"):
        check_pod_template(spec["submitterPodTemplate"], f"{where}.submitterPodTemplate")
    elif mode == "K8sJobMode":
        raise Invalid(f"{where}: K8sJobMode without submitterPodTemplate runs KubeRay's default "
                      "submitter pod, which has no non-root securityContext")


def check_dated(entry: str, where: str) -> None:
    if '--date "$(date -u +%F)"' not in entry:
        raise Invalid(f"{where}: scheduled scoring must pass --date \"$(date -u +%F)\"")


def check_manifest(doc: dict, where: str = "manifest") -> None:
    """Validate one Kubernetes object of the kinds shipped in cluster/."""
    if not isinstance(doc, dict):
        raise Invalid(f"{where}: not a mapping")
    _need(doc, ["apiVersion", "kind", "metadata"], where)
    kind, api = doc["kind"], doc["apiVersion"]
    meta = doc["metadata"]
    if not (meta.get("name") or meta.get("generateName")):
        raise Invalid(f"{where}: metadata.name (or generateName) is required")
    where = f"{where} ({kind} {meta.get('name') or meta.get('generateName')})"
    if kind in ("RayCluster", "RayJob", "RayCronJob") and api != "ray.io/v1":
        raise Invalid(f"{where}: apiVersion must be ray.io/v1, got {api}")
    spec = doc.get("spec")
    if kind == "RayCluster":
        check_raycluster_spec(spec, f"{where}.spec")
    elif kind == "RayJob":
        check_rayjob_spec(spec, f"{where}.spec")
    elif kind == "RayCronJob":
        _need(spec, RAYCRONJOB_SPEC_REQUIRED, f"{where}.spec")
        if not CRON_RE.match(spec["schedule"].strip()):
            raise Invalid(f"{where}.spec.schedule: {spec['schedule']!r} is not a cron expression")
        check_rayjob_spec(spec["jobTemplate"], f"{where}.spec.jobTemplate")
        check_dated(spec["jobTemplate"]["entrypoint"], f"{where}.spec.jobTemplate.entrypoint")
    elif kind == "CronJob":
        if api != "batch/v1":
            raise Invalid(f"{where}: apiVersion must be batch/v1")
        _need(spec, CRONJOB_SPEC_REQUIRED, f"{where}.spec")
        if not CRON_RE.match(spec["schedule"].strip()):
            raise Invalid(f"{where}.spec.schedule: {spec['schedule']!r} is not a cron expression")
        jspec = spec["jobTemplate"].get("spec") or {}
        _need(jspec, ["template"], f"{where}.spec.jobTemplate.spec")
        check_pod_template(jspec["template"], f"{where}.spec.jobTemplate.spec.template")
    elif kind == "ConfigMap":
        # Embedded manifests (the RayJob the CronJob creates) are validated like files.
        for key, text in (doc.get("data") or {}).items():
            if key.endswith((".yaml", ".yml")):
                for j, sub in enumerate(yaml.safe_load_all(text)):
                    if isinstance(sub, dict) and "apiVersion" in sub and "kind" in sub:
                        check_manifest(sub, f"{where}.data[{key}][{j}]")
                        if sub["kind"] == "RayJob" and "score_genome" in sub["spec"]["entrypoint"]:
                            check_dated(sub["spec"]["entrypoint"], f"{where}.data[{key}]")
    elif kind == "Secret":
        if doc.get("data") or doc.get("stringData"):
            raise Invalid(f"{where}: ship no Secret values; create the Secret with kubectl")
    elif kind in ("ServiceAccount", "Role", "RoleBinding"):
        pass
    else:
        raise Invalid(f"{where}: unexpected kind {kind}")


def check_no_literal_secrets(text: str, where: str) -> None:
    if AWS_KEY_ID_RE.search(text) or AWS_SECRET_RE.search(text):
        raise Invalid(f"{where}: contains what looks like a literal AWS credential")


def check_launcher(cfg: dict, where: str = "launcher") -> None:
    _need(cfg, ["cluster_name", "provider", "available_node_types", "head_node_type"], where)
    if cfg["provider"].get("type") != "aws":
        raise Invalid(f"{where}: provider.type must be aws")
    types = cfg["available_node_types"]
    head = cfg["head_node_type"]
    if head not in types:
        raise Invalid(f"{where}: head_node_type {head!r} is not in available_node_types")
    gpu_workers = []
    for name, t in types.items():
        _need(t, ["node_config"], f"{where}.available_node_types.{name}")
        if "resources" not in t:
            raise Invalid(f"{where}.available_node_types.{name}: missing resources")
        if name == head:
            continue
        lo, hi = t.get("min_workers", 0), t.get("max_workers")
        if not isinstance(hi, int) or hi < lo:
            raise Invalid(f"{where}.available_node_types.{name}: need max_workers >= min_workers")
        if (t.get("resources") or {}).get("GPU", 0) >= 1:
            gpu_workers.append(name)
    if not gpu_workers:
        raise Invalid(f"{where}: no worker node type declares GPU resources")
    if sum(types[n].get("min_workers", 0) for n in types if n != head) > cfg.get("max_workers", 2**31):
        raise Invalid(f"{where}: sum of min_workers exceeds max_workers")
    installs_methray = re.compile(r"pip install\b.*(methray|\s\.(\s|$)|git\+)")
    for label in ("head", "worker"):
        cmds = list(cfg.get("setup_commands") or []) + list(cfg.get(f"{label}_setup_commands") or [])
        torch_at = next((i for i, c in enumerate(cmds) if re.search(r"pip install\b.*\btorch\b", c)), None)
        pkg_at = next((i for i, c in enumerate(cmds) if installs_methray.search(c)
                       and not re.search(r"\btorch\b", c)), None)
        if torch_at is None or pkg_at is None:
            raise Invalid(f"{where}: {label} setup must install torch, then methray")
        if torch_at > pkg_at:
            raise Invalid(f"{where}: {label} setup must install torch before methray")
    head_start = " ".join(cfg.get("head_start_ray_commands") or [])
    if "ray start --head" not in re.sub(r"RAY_AUTH_MODE=\S+\s+", "", head_start):
        raise Invalid(f"{where}: head_start_ray_commands must run `ray start --head`")
    if not re.search(r"--dashboard-host[= ]127\.0\.0\.1", head_start):
        raise Invalid(f"{where}: the head dashboard must bind to 127.0.0.1 (use `ray dashboard` to forward)")
    if "--address" not in " ".join(cfg.get("worker_start_ray_commands") or []):
        raise Invalid(f"{where}: worker_start_ray_commands must join the head with --address")


# --- fixtures ---------------------------------------------------------------------------------

def _load_all(name: str) -> list:
    return [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d is not None]


@pytest.fixture(scope="module")
def kube_docs():
    return {name: _load_all(name) for name in KUBE_FILES}


def _by_kind(docs: dict, kind: str) -> list[dict]:
    return [d for ds in docs.values() for d in ds if d.get("kind") == kind]


# --- the shipped files ------------------------------------------------------------------------

def test_every_yaml_parses():
    files = sorted(CLUSTER.glob("*.yaml")) + sorted(CLUSTER.glob("*.yml"))
    assert {p.name for p in files} >= set(KUBE_FILES) | {"aws.yaml"}
    for p in files:
        docs = list(yaml.safe_load_all(p.read_text()))
        assert any(d is not None for d in docs), p


@pytest.mark.parametrize("name", KUBE_FILES)
def test_kube_manifests_valid(kube_docs, name):
    for i, doc in enumerate(kube_docs[name]):
        check_manifest(doc, f"{name}[{i}]")


def test_expected_objects_present(kube_docs):
    assert len(_by_kind(kube_docs, "RayCluster")) == 1
    assert [d["metadata"]["name"] for d in _by_kind(kube_docs, "RayJob")] == ["methray-pipeline"]
    assert len(_by_kind(kube_docs, "RayCronJob")) == 1
    assert len(_by_kind(kube_docs, "CronJob")) == 1
    rj = _by_kind(kube_docs, "RayJob")[0]["spec"]
    assert "jobs/pipeline.py" in rj["entrypoint"]
    assert rj["submissionMode"] in RAYJOB_SUBMISSION_MODES
    for d in _by_kind(kube_docs, "RayCronJob"):
        assert "jobs/score_genome.py" in d["spec"]["jobTemplate"]["entrypoint"]


def test_no_literal_secrets_anywhere():
    for p in CLUSTER.iterdir():
        if p.is_file():
            check_no_literal_secrets(p.read_text(errors="replace"), p.name)
    for ds in (_load_all(n) for n in KUBE_FILES):
        for d in ds:
            assert d.get("kind") != "Secret", "create the S3 Secret with kubectl, do not ship it"


def test_cronjob_fallback_rbac_allows_creating_rayjobs(kube_docs):
    docs = kube_docs["cronjob-score-genome.yaml"]
    role = next(d for d in docs if d["kind"] == "Role")
    assert any("ray.io" in r["apiGroups"] and "rayjobs" in r["resources"] and "create" in r["verbs"]
               for r in role["rules"])
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    cron = next(d for d in docs if d["kind"] == "CronJob")
    sa = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert any(s["kind"] == "ServiceAccount" and s["name"] == sa for s in binding["subjects"])
    assert cron["spec"].get("concurrencyPolicy") == "Forbid"
    # The container creates the RayJob stored in the ConfigMap it mounts.
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert any(v.get("configMap", {}).get("name") == cm["metadata"]["name"] for v in pod["volumes"])
    rayjob = yaml.safe_load(cm["data"]["rayjob.yaml"])
    assert rayjob["metadata"].get("generateName"), "kubectl create needs generateName for unique names"


def test_config_mount_matches_configmap(kube_docs):
    cm = _by_kind({"c": kube_docs["methray-config.yaml"]}, "ConfigMap")[0]
    keys = set(cm["data"])
    for d in _by_kind(kube_docs, "RayJob") + _by_kind(kube_docs, "RayCronJob"):
        spec = d["spec"].get("jobTemplate", d["spec"])
        cfg = re.search(r"--config\s+/home/ray/config/(\S+)", spec["entrypoint"])
        assert cfg and cfg.group(1) in keys, spec["entrypoint"]
        vols = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["volumes"]
        assert any(v.get("configMap", {}).get("name") == cm["metadata"]["name"] for v in vols)
    for text in cm["data"].values():
        cfg = yaml.safe_load(text)
        assert str(cfg["out_dir"]).startswith("s3://"), "pods are ephemeral: out_dir must be on S3"


def test_aws_launcher():
    cfg = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    check_launcher(cfg, "aws.yaml")
    head = cfg["available_node_types"][cfg["head_node_type"]]
    assert "GPU" not in (head.get("resources") or {})
    assert "~/methray" in cfg["file_mounts"]


def test_aws_launcher_passes_ray_schema():
    """Ray's own checks, as `ray up` runs them (defaults filled in, then schema + sanity)."""
    pytest.importorskip("jsonschema")
    util = pytest.importorskip("ray.autoscaler._private.util")
    cfg = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    util.validate_config(util.prepare_config(copy.deepcopy(cfg)))


def test_dockerfile_installs_torch_then_methray_as_non_root():
    text = (CLUSTER / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    torch_at = next(i for i, ln in enumerate(lines) if "pip install" in ln and "torch" in ln)
    pkg_at = next(i for i, ln in enumerate(lines) if re.search(r"pip install .*(/home/ray/methray|\s\.)(\s|$)", ln))
    assert torch_at < pkg_at
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")


# --- the validators reject broken input -------------------------------------------------------

def _first(kube_docs, kind):
    return copy.deepcopy(_by_kind(kube_docs, kind)[0])


def _head_container(spec):
    return spec["headGroupSpec"]["template"]["spec"]["containers"][0]


BREAKAGES = {
    "RayCluster": [
        ("no headGroupSpec", lambda d: d["spec"].pop("headGroupSpec")),
        ("head without rayStartParams", lambda d: d["spec"]["headGroupSpec"].pop("rayStartParams")),
        ("container without image", lambda d: _head_container(d["spec"]).pop("image")),
        ("group without groupName", lambda d: d["spec"]["workerGroupSpecs"][0].pop("groupName")),
        ("group without maxReplicas", lambda d: d["spec"]["workerGroupSpecs"][0].pop("maxReplicas")),
        ("min > max", lambda d: d["spec"]["workerGroupSpecs"][0].update(minReplicas=5, maxReplicas=1)),
        ("no GPU", lambda d: d["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
            ["resources"]["limits"].pop("nvidia.com/gpu")),
        ("root user", lambda d: _head_container(d["spec"])["securityContext"].update(runAsUser=0)),
        ("no runAsNonRoot", lambda d: _head_container(d["spec"])["securityContext"].pop("runAsNonRoot")),
        ("privilege escalation", lambda d: _head_container(d["spec"])["securityContext"]
            .update(allowPrivilegeEscalation=True)),
        ("literal AWS secret", lambda d: _head_container(d["spec"])["env"].append(
            {"name": "AWS_SECRET_ACCESS_KEY", "value": "not-a-real-secret"})),
        ("root autoscaler", lambda d: d["spec"]["autoscalerOptions"].pop("securityContext")),
        ("wrong apiVersion", lambda d: d.update(apiVersion="ray.io/v1alpha1")),
    ],
    "RayJob": [
        ("no entrypoint", lambda d: d["spec"].pop("entrypoint")),
        ("entrypoint not under jobs/", lambda d: d["spec"].update(entrypoint="python pipeline.py --config x.yaml")),
        ("entrypoint without --config", lambda d: d["spec"].update(entrypoint="python jobs/pipeline.py")),
        ("no cluster", lambda d: d["spec"].pop("rayClusterSpec")),
        ("bad submissionMode", lambda d: d["spec"].update(submissionMode="Batch")),
        ("cluster kept forever", lambda d: d["spec"].pop("shutdownAfterJobFinishes")),
        ("root submitter", lambda d: d["spec"]["submitterPodTemplate"]["spec"]["containers"][0]
            ["securityContext"].update(runAsNonRoot=False)),
        ("default (root) submitter", lambda d: d["spec"].pop("submitterPodTemplate")),
    ],
    "RayCronJob": [
        ("no schedule", lambda d: d["spec"].pop("schedule")),
        ("bad schedule", lambda d: d["spec"].update(schedule="every day")),
        ("no jobTemplate", lambda d: d["spec"].pop("jobTemplate")),
        ("undated", lambda d: d["spec"]["jobTemplate"].update(
            entrypoint="python jobs/score_genome.py --config c.yaml")),
    ],
    "CronJob": [
        ("no schedule", lambda d: d["spec"].pop("schedule")),
        ("root pod", lambda d: d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
            ["securityContext"].update(runAsUser=0)),
    ],
}


@pytest.mark.parametrize("kind,label,breaker",
                         [(k, lbl, f) for k, cases in BREAKAGES.items() for lbl, f in cases],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_validator_rejects_broken_manifest(kube_docs, kind, label, breaker):
    doc = _first(kube_docs, kind)
    check_manifest(copy.deepcopy(doc))  # intact: accepted
    breaker(doc)
    with pytest.raises(Invalid):
        check_manifest(doc)


def test_validator_rejects_broken_embedded_rayjob(kube_docs):
    cm = copy.deepcopy(next(d for d in kube_docs["cronjob-score-genome.yaml"] if d["kind"] == "ConfigMap"))
    rj = yaml.safe_load(cm["data"]["rayjob.yaml"])
    rj["spec"]["entrypoint"] = rj["spec"]["entrypoint"].replace(' --date "$(date -u +%F)"', "")
    cm["data"]["rayjob.yaml"] = yaml.safe_dump(rj)
    with pytest.raises(Invalid, match="--date"):
        check_manifest(cm)


def test_validator_rejects_shipped_secret():
    with pytest.raises(Invalid):
        check_manifest({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3"},
                        "stringData": {"AWS_SECRET_ACCESS_KEY": "x"}})


def test_literal_credential_detector():
    fake_id = "AKIA" + "ABCDEFGHIJKLMNOP"  # built at run time so this file holds no key shape
    with pytest.raises(Invalid):
        check_no_literal_secrets(f"key: {fake_id}", "t")
    with pytest.raises(Invalid):
        check_no_literal_secrets("aws_secret_access_key = " + "a" * 40, "t")
    check_no_literal_secrets("secretKeyRef: {name: methray-s3, key: AWS_SECRET_ACCESS_KEY}", "t")


@pytest.mark.parametrize("label,breaker", [
    ("no cluster_name", lambda c: c.pop("cluster_name")),
    ("not aws", lambda c: c["provider"].update(type="gcp")),
    ("head type missing", lambda c: c.update(head_node_type="nope")),
    ("max < min", lambda c: c["available_node_types"]["worker.gpu"].update(min_workers=5, max_workers=1)),
    ("no GPU worker", lambda c: c["available_node_types"]["worker.gpu"]["resources"].pop("GPU")),
    ("no methray install", lambda c: c.update(worker_setup_commands=["pip install torch==2.13.0"])),
    ("methray before torch", lambda c: c.update(worker_setup_commands=[
        "pip install ~/methray", "pip install torch==2.13.0"])),
    ("dashboard on all interfaces", lambda c: c.update(head_start_ray_commands=[
        "ray start --head --port=6379 --dashboard-host=0.0.0.0"])),
])
def test_launcher_validator_rejects_broken_config(label, breaker):
    cfg = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    check_launcher(copy.deepcopy(cfg))
    breaker(cfg)
    with pytest.raises(Invalid):
        check_launcher(cfg)


def test_json_roundtrip_of_manifests(kube_docs):
    """kubectl sends JSON: every manifest must be plain JSON data (no YAML-only types)."""
    for name, docs in kube_docs.items():
        for d in docs:
            json.dumps(d)
