"""The real kubectl against a real `pilothouse up`: what a user types, and what they see."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml

from .conftest import KUBECTL, Cluster

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 80}]
      - name: sidecar
        image: busybox:1.36
"""

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
              color: {type: string, enum: [red, blue], default: blue}
          status:
            type: object
            properties:
              ready: {type: boolean}
"""


def test_ready_and_namespaces(cluster: Cluster) -> None:
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    out = cluster.kubectl("get", "namespaces").stdout
    assert out.split("\n")[0].split() == ["NAME", "STATUS", "AGE"]
    names = {line.split()[0] for line in out.strip().split("\n")[1:]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    assert "Active" in out


def test_version_is_1_32(cluster: Cluster) -> None:
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["minor"] == "32"


def test_create_apply_get_patch_replace_delete(cluster: Cluster) -> None:
    k = cluster.kubectl
    k("create", "namespace", "apps")
    assert "deployment.apps/web created" in k("apply", "-n", "apps", "-f", "-",
                                              input=DEPLOYMENT).stdout
    assert "deployment.apps/web unchanged" in k("apply", "-n", "apps", "-f", "-",
                                                input=DEPLOYMENT).stdout
    obj = yaml.safe_load(k("get", "deploy", "web", "-n", "apps", "-o", "yaml").stdout)
    assert obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == "25%"  # defaulted
    assert obj["metadata"]["generation"] == 1
    assert k("get", "deploy/web", "-n", "apps", "-o",
             "jsonpath={.spec.template.spec.containers[*].name}").stdout == "web sidecar"
    header = k("get", "deploy", "-n", "apps").stdout.split("\n")[0].split()
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]

    # strategic merge patch by container name keeps the other container
    k("set", "image", "deployment/web", "web=nginx:1.28", "-n", "apps")
    images = k("get", "deploy/web", "-n", "apps", "-o",
               "jsonpath={.spec.template.spec.containers[*].image}").stdout
    assert images == "nginx:1.28 busybox:1.36"
    assert k("get", "deploy/web", "-n", "apps", "-o",
             "jsonpath={.metadata.generation}").stdout == "2"

    k("label", "deploy/web", "tier=frontend", "-n", "apps")
    assert "web" in k("get", "deploy", "-n", "apps", "-l", "tier in (frontend,backend)").stdout
    assert "No resources found" in k("get", "deploy", "-n", "apps", "-l", "tier!=frontend").stderr

    k("patch", "deploy/web", "-n", "apps", "--type", "merge", "-p", '{"spec":{"replicas":3}}')
    k("patch", "deploy/web", "-n", "apps", "--type", "json",
      "-p", '[{"op":"replace","path":"/spec/replicas","value":4}]')
    assert k("get", "deploy/web", "-n", "apps", "-o",
             "jsonpath={.spec.replicas}").stdout == "4"
    k("scale", "deploy/web", "--replicas=1", "-n", "apps")
    assert k("get", "deploy/web", "-n", "apps", "-o",
             "jsonpath={.spec.replicas}").stdout == "1"

    # replace with a stale resourceVersion is a conflict
    obj["spec"]["replicas"] = 5
    stale = k("replace", "-n", "apps", "-f", "-", input=yaml.safe_dump(obj), check=False)
    assert stale.returncode != 0
    assert "Conflict" in stale.stderr and "the object has been modified" in stale.stderr

    assert 'deployment.apps "web" deleted' in k("delete", "deploy", "web", "-n", "apps").stdout
    missing = k("get", "deploy", "web", "-n", "apps", check=False)
    assert missing.returncode == 1
    assert 'deployments.apps "web" not found' in missing.stderr


def test_server_side_apply_and_conflicts(cluster: Cluster) -> None:
    k = cluster.kubectl
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: '1', b: '2'}\n"
    assert "serverside-applied" in k("apply", "--server-side", "-f", "-", input=cm).stdout
    k("apply", "--server-side", "-f", "-",
      input=cm.replace("b: '2'", "b: '3'").replace("a: '1', ", ""))
    data = json.loads(k("get", "cm", "ssa", "-o", "json").stdout)["data"]
    assert data == {"b": "3"}  # a field dropped from the applied config is removed
    clash = k("apply", "--server-side", "--field-manager", "other", "-f", "-",
              input=cm.replace("b: '2'", "b: '9'").replace("a: '1', ", ""), check=False)
    assert clash.returncode != 0 and "conflict" in clash.stderr.lower()


def test_watch_sees_changes(cluster: Cluster) -> None:
    k = cluster.kubectl
    watch = subprocess.Popen([KUBECTL, "get", "configmaps", "-w", "--output-watch-events",
                              "-l", "watched=yes"], stdout=subprocess.PIPE, text=True,
                             env=cluster.env)
    try:
        time.sleep(1.5)
        k("create", "configmap", "watched", "--from-literal=x=1")
        k("label", "configmap", "watched", "watched=yes")
        k("delete", "configmap", "watched")
        lines = []
        assert watch.stdout is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(lines) < 2:
            line = watch.stdout.readline()
            if not line.startswith("EVENT"):  # the column header
                lines.append(line)
    finally:
        watch.kill()
    assert lines[0].split()[:2] == ["ADDED", "watched"]  # entered the selector on label
    assert lines[1].split()[:2] == ["DELETED", "watched"]


def test_namespace_deletion_stops_new_content(cluster: Cluster) -> None:
    k = cluster.kubectl
    k("create", "namespace", "doomed")
    # A finalizer holds the content, so the namespace controller cannot finish at once.
    k("apply", "-f", "-", input="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"
      "  namespace: doomed\n  finalizers: [example.com/hold]\n")
    k("delete", "namespace", "doomed", "--wait=false")
    assert k("get", "ns", "doomed", "-o", "jsonpath={.status.phase}").stdout == "Terminating"
    refused = k("create", "configmap", "d", "-n", "doomed", check=False)
    assert refused.returncode != 0
    assert "because it is being terminated" in refused.stderr
    missing = k("create", "configmap", "d", "-n", "nowhere", check=False)
    assert 'namespaces "nowhere" not found' in missing.stderr
    released = k("patch", "configmap", "c", "-n", "doomed", "--type=merge",
                 "-p", '{"metadata":{"finalizers":null}}')
    assert "configmap/c patched" in released.stdout  # the object, not a Status, comes back
    k("wait", "--for=delete", "namespace/doomed", "--timeout=30s")


def test_crd_and_custom_resources(cluster: Cluster) -> None:
    k = cluster.kubectl
    k("apply", "-f", "-", input=CRD)
    k("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s")
    k("apply", "-f", "-", input="apiVersion: example.com/v1\nkind: Widget\n"
      "metadata: {name: w1}\nspec: {size: 3}\n")
    out = k("get", "wdg").stdout.split("\n")
    assert out[0].split() == ["NAME", "SIZE", "COLOR"]
    assert out[1].split() == ["w1", "3", "blue"]  # default applied from the schema
    bad = k("apply", "-f", "-", check=False, input="apiVersion: example.com/v1\nkind: Widget\n"
            "metadata: {name: w2}\nspec: {size: 30, color: green}\n")
    assert bad.returncode != 0
    assert "spec.size" in bad.stderr and "spec.color" in bad.stderr
    unknown = k("apply", "-f", "-", check=False, input="apiVersion: example.com/v1\n"
                "kind: Widget\nmetadata: {name: w3}\nspec: {size: 1, shape: round}\n")
    assert unknown.returncode != 0 and 'unknown field "spec.shape"' in unknown.stderr
    k("patch", "widget", "w1", "--subresource=status", "--type=merge",
      "-p", '{"status":{"ready":true}}')
    assert k("get", "widget", "w1", "-o", "jsonpath={.status.ready}").stdout == "true"
    k("delete", "crd", "widgets.example.com")
    gone = k("get", "widgets.example.com", check=False)
    assert gone.returncode != 0


def test_auth_whoami_and_can_i(cluster: Cluster) -> None:
    k = cluster.kubectl
    who = k("auth", "whoami", "-o", "json").stdout
    info = json.loads(who)["status"]["userInfo"]
    assert info["username"] == "pilothouse-admin" and "system:masters" in info["groups"]
    assert k("auth", "can-i", "create", "pods").stdout.strip() == "yes"
    k("create", "serviceaccount", "robot")
    token = k("create", "token", "robot").stdout.strip()
    as_robot = ["--token", token, "--kubeconfig", "/dev/null", "--server",
                f"https://127.0.0.1:{cluster.port}", "--insecure-skip-tls-verify"]
    denied = k("get", "pods", *as_robot, check=False)
    assert denied.returncode != 0 and "Forbidden" in denied.stderr
    assert "system:serviceaccount:default:robot" in denied.stderr
    k("create", "rolebinding", "robot-view", "--clusterrole=view",
      "--serviceaccount=default:robot")
    k("get", "pods", *as_robot)  # allowed now
    assert k("auth", "can-i", "delete", "pods", *as_robot, check=False).stdout.strip() == "no"
    bogus = k("get", "pods", "--token", "not-a-token", "--kubeconfig", "/dev/null", "--server",
              f"https://127.0.0.1:{cluster.port}", "--insecure-skip-tls-verify", check=False)
    assert bogus.returncode != 0
    assert "You must be logged in to the server (Unauthorized)" in bogus.stderr
    unverified = ssl.create_default_context()
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"https://127.0.0.1:{cluster.port}/api/v1/pods",
                               context=unverified)
    assert anonymous.value.code == 401
    with urllib.request.urlopen(f"https://127.0.0.1:{cluster.port}/readyz",
                                context=unverified) as public:
        assert public.read() == b"ok"  # health stays public, as on a real cluster


def test_bad_input_is_refused_cleanly(cluster: Cluster) -> None:
    k = cluster.kubectl
    invalid = k("create", "-f", "-", check=False,
                input="apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {}\n")
    assert invalid.returncode != 0
    assert 'The Pod "Bad_Name" is invalid' in invalid.stderr
    assert "spec.containers: Required value" in invalid.stderr
    unknown = k("get", "frobnicators", check=False)
    assert unknown.returncode != 0 and "frobnicators" in unknown.stderr
    assert k("get", "pod", "Bad_Name", check=False).returncode == 1  # nothing was written


def test_explain_uses_openapi(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "pods.spec.containers.image").stdout
    assert "FIELD: image <string>" in out and "Container image name" in out


def test_strict_field_validation_and_dry_run(cluster: Cluster) -> None:
    k = cluster.kubectl
    unknown = k("apply", "-f", "-", check=False, input="apiVersion: v1\nkind: ConfigMap\n"
                "metadata: {name: strict}\ndata: {a: b}\nbogus: 1\n")
    assert unknown.returncode != 0 and 'strict decoding error: unknown field "bogus"' in \
        unknown.stderr
    assert k("create", "cm", "dry", "--dry-run=server", "-o", "name").stdout.strip() == \
        "configmap/dry"
    assert k("get", "cm", "dry", check=False).returncode == 1  # a dry run stores nothing


def test_typed_create_commands_speak_protobuf(cluster: Cluster) -> None:
    """kubectl's typed `create` subcommands send protobuf bodies; each must land intact."""
    k = cluster.kubectl
    k("create", "namespace", "typed")
    k("create", "deployment", "d", "--image=nginx:1.27", "--replicas=0", "--port=8080",
      "-n", "typed")
    dep = json.loads(k("get", "deploy", "d", "-n", "typed", "-o", "json").stdout)
    assert dep["spec"]["replicas"] == 0  # a pointer field set to zero survives
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.27" and container["ports"][0]["containerPort"] == 8080
    k("create", "secret", "generic", "s", "--from-literal=password=hunter2", "-n", "typed")
    assert k("get", "secret", "s", "-n", "typed", "-o",
             "jsonpath={.data.password}").stdout == "aHVudGVyMg=="
    k("create", "cronjob", "c", "--image=busybox", "--schedule=*/5 * * * *", "-n", "typed")
    assert k("get", "cronjob", "c", "-n", "typed", "-o",
             "jsonpath={.spec.schedule}").stdout == "*/5 * * * *"
    bad = k("create", "cronjob", "bad", "--image=busybox", "--schedule=not cron", "-n", "typed",
            check=False)
    assert bad.returncode != 0 and "spec.schedule" in bad.stderr
    k("create", "service", "clusterip", "web", "--tcp=80:8080", "-n", "typed")
    assert k("get", "svc", "web", "-n", "typed", "-o",
             "jsonpath={.spec.ports[0].targetPort}").stdout == "8080"


def test_each_component_has_its_own_least_privileged_identity(cluster: Cluster) -> None:
    components = cluster.data_dir / "components"

    def as_component(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl("--kubeconfig", str(components / f"{name}.kubeconfig"), *args,
                               check=False)

    who = json.loads(as_component("scheduler", "auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == "system:kube-scheduler"
    assert as_component("scheduler", "get", "pods", "-A").returncode == 0
    secrets = as_component("scheduler", "get", "secrets", "-A")
    assert secrets.returncode != 0 and "Forbidden" in secrets.stderr
    assert as_component("controller-manager", "auth", "can-i", "create",
                        "replicasets").stdout.strip() == "yes"
    assert as_component("proxy", "auth", "can-i", "delete", "pods").stdout.strip() == "no"
