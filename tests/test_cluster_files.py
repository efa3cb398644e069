"""Static checks of the cluster deployment files in cluster/.

No cluster is started. Every YAML must parse; the KubeRay manifests (RayCluster, RayJob,
RayCronJob, and the RayJob kept in the CronJob's ConfigMap) must validate against the OpenAPI v3
schemas of the KubeRay v1.7.0 CRDs in ``../shared/kuberay-crds/v1.7.0`` with ``jsonschema``,
strictly: an unknown field is an error, as the API server's strict field validation makes it
(the CRDs have no ``x-kubernetes-preserve-unknown-fields``). CEL rules
(``x-kubernetes-validations``) are not evaluated. On top of the schemas, project policy: every
container non-root, no literal AWS secrets, a GPU worker group, dated scheduled scoring. The
CronJob's run.sh is run offline against a fake kubectl, and each of its calls is checked
against the Role. The Ray launcher config must pass Ray's own launcher schema, and the GPU
worker's CUDA check must fail here (no GPU). Every validator is also run on broken input,
which it must reject.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
CRDS = ROOT.parent / "shared" / "kuberay-crds" / "v1.7.0"
CRD_FILES = {"RayCluster": "rayclusters.yaml", "RayJob": "rayjobs.yaml", "RayCronJob": "raycronjobs.yaml"}

RAYJOB_SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}

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
    """Fields that project policy requires (not CRD fields: those are checked by the schemas)."""
    if not isinstance(obj, dict):
        raise Invalid(f"{where}: expected a mapping, got {type(obj).__name__}")
    missing = [k for k in keys if obj.get(k) in (None, "")]
    if missing:
        raise Invalid(f"{where}: missing required field(s) {missing}")


# --- KubeRay CRD schemas ----------------------------------------------------------------------

def strict_schema(node):
    """A CRD's OpenAPI v3 schema as a JSON schema with the API server's strictness.

    Objects with ``properties`` get ``additionalProperties: false`` (unknown fields are errors
    under strict field validation) unless they preserve unknown fields; ``nullable`` allows
    null; ``x-kubernetes-int-or-string`` (already spelled out as ``anyOf``) needs nothing more.
    """
    if isinstance(node, list):
        return [strict_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            out[key] = strict_schema(value)
        elif not key.startswith("x-kubernetes-") and key != "nullable":
            out[key] = value
    if "properties" in out and "additionalProperties" not in out and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@functools.cache
def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    """Validator for ``ray.io/v1`` ``kind`` from the v1.7.0 CRD in ../shared/kuberay-crds."""
    path = CRDS / CRD_FILES[kind]
    if not path.exists():
        pytest.skip(f"KubeRay CRDs not found at {CRDS}")
    # libyaml when available: the CRDs are large (rayjobs.yaml ~1 MB), pure-Python YAML is slow.
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = strict_schema(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def check_crd_schema(doc: dict, where: str) -> None:
    """Validate a ray.io object against its CRD schema; every error is listed."""
    errors = sorted(crd_validator(doc["kind"]).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors[:10]]
        raise Invalid(f"{where}: {len(errors)} schema error(s) against the KubeRay v1.7.0 CRD:\n  " + "\n  ".join(lines))


# --- policy -----------------------------------------------------------------------------------

def check_container(c: dict, where: str) -> None:
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
    """Non-root policy of a PodTemplateSpec; returns its containers."""
    _need(tpl, ["spec"], where)
    spec = tpl["spec"]
    _need(spec, ["containers"], f"{where}.spec")
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
    check_pod_template(spec["headGroupSpec"]["template"], f"{where}.headGroupSpec.template")
    groups = spec.get("workerGroupSpecs") or []
    gpu_groups = []
    for i, g in enumerate(groups):
        gw = f"{where}.workerGroupSpecs[{i}]"
        lo, hi = g.get("minReplicas", 0), g.get("maxReplicas", 2**31)
        n = g.get("replicas", lo)
        if not lo <= n <= hi:
            raise Invalid(f"{gw}: replicas {n} outside [minReplicas {lo}, maxReplicas {hi}]")
        for c in check_pod_template(g["template"], f"{gw}.template"):
            limits = (c.get("resources") or {}).get("limits") or {}
            if int(limits.get("nvidia.com/gpu", 0) or 0) > 0:
                gpu_groups.append(g["groupName"])
    if want_gpu and not gpu_groups:
        raise Invalid(f"{where}: no worker group requests nvidia.com/gpu in its limits")
    if spec.get("enableInTreeAutoscaling"):
        if not any(g.get("maxReplicas", 0) > g.get("minReplicas", 0) for g in groups):
            raise Invalid(f"{where}: autoscaling enabled but no group has maxReplicas > minReplicas")
        sc = (spec.get("autoscalerOptions") or {}).get("securityContext") or {}
        if sc.get("runAsNonRoot") is not True or sc.get("allowPrivilegeEscalation") is not False:
            raise Invalid(f"{where}.autoscalerOptions.securityContext: the autoscaler sidecar must run as non-root")
    if (spec.get("authOptions") or {}).get("mode") != "token":
        raise Invalid(f"{where}: Ray token authentication must be on (authOptions.mode: token)")


def check_rayjob_spec(spec: dict, where: str) -> None:
    check_entrypoint(spec.get("entrypoint"), f"{where}.entrypoint")
    if not (spec.get("rayClusterSpec") or spec.get("clusterSelector")):
        raise Invalid(f"{where}: needs rayClusterSpec or clusterSelector")
    mode = spec.get("submissionMode", "K8sJobMode")
    if mode not in RAYJOB_SUBMISSION_MODES:
        raise Invalid(f"{where}.submissionMode: {mode!r} not one of {sorted(RAYJOB_SUBMISSION_MODES)}")
    if spec.get("rayClusterSpec"):
        check_raycluster_spec(spec["rayClusterSpec"], f"{where}.rayClusterSpec")
        if spec.get("shutdownAfterJobFinishes") is not True:
            raise Invalid(f"{where}: a RayJob that creates its cluster must set shutdownAfterJobFinishes: true")
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
    if kind in CRD_FILES:
        if api != "ray.io/v1":
            raise Invalid(f"{where}: apiVersion must be ray.io/v1, got {api}")
        check_crd_schema(doc, where)
    spec = doc.get("spec")
    if kind == "RayCluster":
        check_raycluster_spec(spec, f"{where}.spec")
    elif kind == "RayJob":
        check_rayjob_spec(spec, f"{where}.spec")
    elif kind == "RayCronJob":
        if not CRON_RE.match(spec["schedule"].strip()):
            raise Invalid(f"{where}.spec.schedule: {spec['schedule']!r} is not a cron expression")
        check_rayjob_spec(spec["jobTemplate"], f"{where}.spec.jobTemplate")
        check_dated(spec["jobTemplate"]["entrypoint"], f"{where}.spec.jobTemplate.entrypoint")
    elif kind == "CronJob":
        if api != "batch/v1":
            raise Invalid(f"{where}: apiVersion must be batch/v1")
        _need(spec, ["schedule", "jobTemplate"], f"{where}.spec")
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


def test_cronjob_fallback_wiring(kube_docs):
    docs = kube_docs["cronjob-score-genome.yaml"]
    role = next(d for d in docs if d["kind"] == "Role")
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    cron = next(d for d in docs if d["kind"] == "CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert any(s["kind"] == "ServiceAccount" and s["name"] == pod["serviceAccountName"] for s in binding["subjects"])
    assert cron["spec"]["concurrencyPolicy"] == "Forbid" and cron["spec"]["timeZone"] == "Etc/UTC"
    # The container runs run.sh from the ConfigMap it mounts, next to the RayJob manifest.
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    mount = next(v for v in pod["volumes"] if v.get("configMap", {}).get("name") == cm["metadata"]["name"])
    (container,) = pod["containers"]
    path = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == mount["name"])
    assert container["command"] == ["/bin/sh", f"{path}/run.sh"]
    assert f"{path}/rayjob.yaml" in cm["data"]["run.sh"]
    rayjob = yaml.safe_load(cm["data"]["rayjob.yaml"])
    assert rayjob["metadata"].get("generateName"), "kubectl create needs generateName for unique names"
    assert rayjob["metadata"]["labels"]["methray/schedule"] in cm["data"]["run.sh"]


# --- run.sh, offline: a fake kubectl that keeps RayJobs in a JSON file ---------------------------

FAKE_KUBECTL = r"""
import json, sys
from pathlib import Path
state_file = Path(__file__).with_name("state.json")
state = json.loads(state_file.read_text())
args = sys.argv[1:]
state["calls"].append(args)
jobs = state["rayjobs"]
def save(): state_file.write_text(json.dumps(state))
if args[:2] == ["get", "rayjobs"]:   # -l SELECTOR --sort-by=.metadata.creationTimestamp -o jsonpath=...
    assert args[2] == "-l" and args[4].startswith("--sort-by=") and args[6].startswith("jsonpath="), args
    for j in jobs:
        print(j["name"] + " " + j["status"][0])
elif args[0] == "create":            # -f MANIFEST -o name
    name = "methray-score-genome-x%d" % len(jobs)
    jobs.append({"name": name, "status": ["", "Initializing", "Running", "Complete"], "result": state["result"]})
    print("rayjob.ray.io/" + name)
elif args[:2] == ["get", "rayjob"]:  # NAME -o jsonpath={.status.X}
    job = next(j for j in jobs if j["name"] == args[2])
    if "jobDeploymentStatus" in args[4]:
        if len(job["status"]) > 1:   # time passes between polls
            job["status"].pop(0)
        print(job["status"][0], end="")
    else:
        print(job["result"], end="")
elif args[:2] == ["delete", "rayjob"]:
    state["rayjobs"] = [j for j in jobs if j["name"] != args[2]]
else:
    sys.exit("fake kubectl: unexpected call %r" % args)
save()
"""


def _run_sh(kube_docs, tmp_path, rayjobs, result="SUCCEEDED"):
    """Run the CronJob's run.sh with a fake kubectl; returns (process, final state)."""
    cm = next(d for d in kube_docs["cronjob-score-genome.yaml"] if d["kind"] == "ConfigMap")
    (tmp_path / "run.sh").write_text(cm["data"]["run.sh"])
    (tmp_path / "rayjob.yaml").write_text(cm["data"]["rayjob.yaml"])
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f"#!{sys.executable}\n{FAKE_KUBECTL}")
    kubectl.chmod(0o755)
    (tmp_path / "state.json").write_text(json.dumps({"calls": [], "result": result, "rayjobs": rayjobs}))
    env = {"PATH": f"{tmp_path}{os.pathsep}/usr/bin:/bin", "MANIFEST": str(tmp_path / "rayjob.yaml"), "POLL_S": "0"}
    proc = subprocess.run(["sh", str(tmp_path / "run.sh")], env=env, capture_output=True, text=True, timeout=60)
    return proc, json.loads((tmp_path / "state.json").read_text())


def _done(name, result="SUCCEEDED"):
    return {"name": name, "status": ["Complete"], "result": result}


def test_run_sh_creates_waits_and_prunes(kube_docs, tmp_path):
    old = [_done(f"methray-score-genome-old{i}") for i in range(4)]
    proc, state = _run_sh(kube_docs, tmp_path, old)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = state["calls"]
    assert sum(c[0] == "create" for c in calls) == 1
    # It waited: polled the new RayJob until Complete, and only then pruned.
    polls = [i for i, c in enumerate(calls) if c[:3] == ["get", "rayjob", "methray-score-genome-x4"]]
    first_delete = next(i for i, c in enumerate(calls) if c[0] == "delete")
    assert len(polls) >= 4 and polls[-1] < first_delete
    # 5 finished RayJobs, the newest 3 kept: the two oldest deleted.
    assert [j["name"] for j in state["rayjobs"]] == ["methray-score-genome-old2", "methray-score-genome-old3", "methray-score-genome-x4"]
    assert "RayJob methray-score-genome-x4: Complete, Ray job SUCCEEDED" in proc.stdout


def test_run_sh_waits_for_an_unfinished_rayjob_instead_of_creating(kube_docs, tmp_path):
    running = {"name": "methray-score-genome-late", "status": ["Running", "Running", "Complete"], "result": "SUCCEEDED"}
    proc, state = _run_sh(kube_docs, tmp_path, [_done("methray-score-genome-old0"), running])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not any(c[0] == "create" for c in state["calls"])
    assert "waiting for it, not starting another" in proc.stdout
    assert [j["name"] for j in state["rayjobs"]] == ["methray-score-genome-old0", "methray-score-genome-late"]


def test_run_sh_fails_when_the_ray_job_failed(kube_docs, tmp_path):
    proc, state = _run_sh(kube_docs, tmp_path, [], result="FAILED")
    assert proc.returncode != 0
    assert "Ray job FAILED" in proc.stdout


def _allowed(role: dict, verb: str, resource: str) -> bool:
    return any(("ray.io" in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]) for r in role["rules"])


def test_run_sh_needs_exactly_the_role_verbs(kube_docs, tmp_path):
    """Every kubectl call of run.sh is allowed by the Role, and the Role allows nothing more."""
    role = next(d for d in kube_docs["cronjob-score-genome.yaml"] if d["kind"] == "Role")
    used = set()
    for rayjobs in ([_done(f"methray-score-genome-old{i}") for i in range(4)],
                    [{"name": "methray-score-genome-late", "status": ["Running", "Complete"], "result": "SUCCEEDED"}]):
        proc, state = _run_sh(kube_docs, tmp_path, rayjobs)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for call in state["calls"]:
            # kubectl verb -> API verb: `get rayjobs -l` lists, `get rayjob NAME` gets.
            verb = {"create": "create", "delete": "delete"}.get(call[0]) or ("list" if call[1] == "rayjobs" else "get")
            used.add(verb)
            assert _allowed(role, verb, "rayjobs"), call
    assert used == {"create", "get", "list", "delete"}
    assert [set(r["verbs"]) for r in role["rules"]] == [used] and role["rules"][0]["resources"] == ["rayjobs"]
    assert not _allowed({"rules": [{**role["rules"][0], "verbs": ["create", "get", "list"]}]}, "delete", "rayjobs")


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


def test_aws_launcher_pins_a_current_gpu_ami():
    text = (CLUSTER / "aws.yaml").read_text()
    cfg = yaml.safe_load(text)
    amis = {t["node_config"].get("ImageId") for t in cfg["available_node_types"].values()}
    assert len(amis) == 1 and re.fullmatch(r"ami-[0-9a-f]{17}", amis.pop() or ""), "one pinned AMI for head and workers"
    # Ray's built-in default (DLAMI Ubuntu 18.04, CUDA 11.2) must not be used in the region set.
    from ray.autoscaler._private.aws.config import DEFAULT_AMI
    assert DEFAULT_AMI.get(cfg["provider"]["region"]) not in text
    # How to find the AMI of another region is written next to it.
    assert "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id" in text
    assert cfg["provider"]["region"] in text.split("ImageId: ami-", 1)[0]


def test_gpu_worker_setup_fails_without_cuda():
    """The worker's last setup command, run here (torch CPU build, no GPU), must fail loudly."""
    cfg = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    check = cfg["worker_setup_commands"][-1]
    assert check.startswith("python -c ")
    code = check[len("python -c "):].strip().strip('"')
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)})
    assert proc.returncode != 0 and "CUDA is not available on this GPU worker" in proc.stderr, proc.stdout + proc.stderr


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


def _worker(spec):
    return spec["workerGroupSpecs"][0]


BREAKAGES = {
    "RayCluster": [
        # the CRD schema: required fields, types, enums, unknown fields at any depth
        ("no headGroupSpec", lambda d: d["spec"].pop("headGroupSpec")),
        ("group without groupName", lambda d: _worker(d["spec"]).pop("groupName")),
        ("container without name", lambda d: _head_container(d["spec"]).pop("name")),
        ("replicas as a string", lambda d: _worker(d["spec"]).update(maxReplicas="4")),
        ("typo in spec", lambda d: d["spec"].update(enableInTreeAutoscale=True)),
        ("typo in a worker group", lambda d: _worker(d["spec"]).update(minReplica=0)),
        ("typo in a container", lambda d: _head_container(d["spec"]).update(imagePullPolicyy="Always")),
        ("typo in a resource", lambda d: _head_container(d["spec"])["securityContext"].update(runAsNonroot=True)),
        ("bad auth mode", lambda d: d["spec"]["authOptions"].update(mode="password")),
        ("wrong apiVersion", lambda d: d.update(apiVersion="ray.io/v1alpha1")),
        # project policy
        ("replicas > max", lambda d: _worker(d["spec"]).update(replicas=5, maxReplicas=1)),
        ("no GPU", lambda d: _worker(d["spec"])["template"]["spec"]["containers"][0]["resources"]["limits"].pop("nvidia.com/gpu")),
        ("no token auth", lambda d: d["spec"].pop("authOptions")),
        ("root user", lambda d: _head_container(d["spec"])["securityContext"].update(runAsUser=0)),
        ("no runAsNonRoot", lambda d: _head_container(d["spec"])["securityContext"].pop("runAsNonRoot")),
        ("privilege escalation", lambda d: _head_container(d["spec"])["securityContext"]
            .update(allowPrivilegeEscalation=True)),
        ("literal AWS secret", lambda d: _head_container(d["spec"])["env"].append(
            {"name": "AWS_SECRET_ACCESS_KEY", "value": "not-a-real-secret"})),
        ("root autoscaler", lambda d: d["spec"]["autoscalerOptions"].pop("securityContext")),
    ],
    "RayJob": [
        ("typo in spec", lambda d: d["spec"].update(shutdownAfterJobFinish=True)),
        ("ttl as a string", lambda d: d["spec"].update(ttlSecondsAfterFinished="600")),
        ("typo in the submitter pod", lambda d: d["spec"]["submitterPodTemplate"]["spec"].update(restartPolicyy="Never")),
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
        ("no jobTemplate", lambda d: d["spec"].pop("jobTemplate")),
        ("concurrencyPolicy (not a RayCronJob field in v1.7)", lambda d: d["spec"].update(concurrencyPolicy="Forbid")),
        ("empty timeZone", lambda d: d["spec"].update(timeZone="")),
        ("typo in jobTemplate", lambda d: d["spec"]["jobTemplate"].update(entryPoint="x")),
        ("bad schedule", lambda d: d["spec"].update(schedule="every day")),
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


def test_schema_errors_name_the_field(kube_docs):
    doc = _first(kube_docs, "RayJob")
    doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplica"] = 0
    with pytest.raises(Invalid, match=r"spec\.rayClusterSpec\.workerGroupSpecs\.0: Additional properties .*'minReplica'"):
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
