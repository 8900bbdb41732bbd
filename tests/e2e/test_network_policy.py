"""NetworkPolicy through the real kubectl: stored and shown as on a real cluster, rejected
with its messages when invalid, and every write warned that this cluster does not enforce it."""

from __future__ import annotations

import json

from .conftest import Cluster

#: The two policies a namespace usually starts with: deny all ingress, then let the
#: monitoring namespace and an office network range reach the web pods' metrics port.
POLICIES = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
spec:
  podSelector: {}
  policyTypes:
  - Ingress
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-monitoring
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: monitoring
    - ipBlock:
        cidr: 172.17.0.0/16
        except:
        - 172.17.1.0/24
    ports:
    - port: 9090
    - port: 30000
      endPort: 30100
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/8
"""

INVALID = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: bad
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock:
        cidr: 192.168.0.0/16
        except:
        - 10.0.0.0/24
    ports:
    - port: 8080
      endPort: 80
"""


def test_apply_get_describe_and_reject(cluster: Cluster, ns: str) -> None:
    applied = cluster.kubectl("apply", "-n", ns, "-f", "-", input=POLICIES)
    assert "networkpolicy.networking.k8s.io/default-deny-ingress created" in applied.stdout
    assert "networkpolicy.networking.k8s.io/allow-monitoring created" in applied.stdout
    assert "Warning: NetworkPolicy is stored but not enforced" in applied.stderr

    listed = cluster.kubectl("get", "netpol", "-n", ns).stdout.splitlines()
    assert listed[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
    rows = {line.split()[0]: line.split()[1] for line in listed[1:]}
    assert rows == {"allow-monitoring": "app=web", "default-deny-ingress": "<none>"}

    stored = json.loads(cluster.kubectl("get", "networkpolicy", "allow-monitoring", "-n", ns,
                                        "-o", "json").stdout)
    assert stored["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert stored["spec"]["ingress"][0]["ports"][1] == {
        "port": 30000, "endPort": 30100, "protocol": "TCP"}

    described = cluster.kubectl("describe", "netpol", "allow-monitoring", "-n", ns).stdout
    assert "PodSelector:     app=web" in described
    assert "172.17.0.0/16" in described and "Except: 172.17.1.0/24" in described
    assert "Policy Types: Ingress, Egress" in described

    # A re-apply that changes the policy is an update: warned again.
    relabelled = POLICIES.replace("app: web", "app: api")
    updated = cluster.kubectl("apply", "-n", ns, "-f", "-", input=relabelled)
    assert "networkpolicy.networking.k8s.io/allow-monitoring configured" in updated.stdout
    assert "Warning: NetworkPolicy is stored but not enforced" in updated.stderr

    rejected = cluster.kubectl("apply", "-n", ns, "-f", "-", input=INVALID, check=False)
    assert rejected.returncode != 0
    assert 'The NetworkPolicy "bad" is invalid' in rejected.stderr
    assert ('spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "10.0.0.0/24": '
            "must be a strict subset of `cidr`") in rejected.stderr
    assert ("spec.ingress[0].ports[0].endPort: Invalid value: 80: "
            "must be greater than or equal to `port`") in rejected.stderr
    assert cluster.kubectl("get", "netpol", "bad", "-n", ns, check=False).returncode != 0
