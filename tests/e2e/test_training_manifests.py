"""Manifests written for Kubeflow's training operator v1.9 go through `kubectl` unchanged.

One manifest per kind, each using the fields the v1.9 API and its examples use (run
policies with gang scheduling, elastic policies with HPA metrics, TFJob's success policy
and dynamic workers, MPIJob's slots and deprecated top-level cleanPodPolicy, GPU limits,
volumes), is sent through `kubectl apply --dry-run=server`: kubectl validates fields
strictly (an unknown field is an error), the API server applies the CRDs' structural
schemas and the operator's validating webhooks, and nothing is stored. A misspelt field is
refused, as kubectl refuses it against the real CRDs.
"""

from __future__ import annotations

import pytest

from .conftest import Cluster, wait_for_training_operator

CONTAINER = """
            - name: {name}
              image: docker.io/kubeflowkatib/pytorch-mnist-cpu:v0.17.0
              imagePullPolicy: IfNotPresent
              command: [python, /opt/train.py, --epochs=1]
              resources:
                limits: {{cpu: "1", memory: 2Gi}}"""

PYTORCH = """
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata:
  name: elastic-imagenet
spec:
  nprocPerNode: auto
  runPolicy:
    cleanPodPolicy: Running
    ttlSecondsAfterFinished: 600
    activeDeadlineSeconds: 3600
    backoffLimit: 3
    schedulingPolicy:
      minAvailable: 2
      queue: default
      priorityClass: high
      minResources: {cpu: "2"}
      scheduleTimeoutSeconds: 60
  elasticPolicy:
    rdzvBackend: c10d
    rdzvPort: 29400
    rdzvConf:
      - {key: join_timeout, value: "300"}
    minReplicas: 1
    maxReplicas: 3
    maxRestarts: 100
    metrics:
      - type: Resource
        resource:
          name: cpu
          target: {type: Utilization, averageUtilization: 80}
  pytorchReplicaSpecs:
    Worker:
      replicas: 2
      restartPolicy: OnFailure
      template:
        metadata:
          annotations: {sidecar.istio.io/inject: "false"}
        spec:
          containers:""" + CONTAINER.format(name="pytorch") + """
              env:
                - {name: LOGLEVEL, value: DEBUG}
"""

TFJOB = """
apiVersion: kubeflow.org/v1
kind: TFJob
metadata:
  name: dist-mnist
spec:
  successPolicy: AllWorkers
  enableDynamicWorker: false
  runPolicy:
    cleanPodPolicy: None
  tfReplicaSpecs:
    Chief:
      replicas: 1
      restartPolicy: ExitCode
      template:
        spec:
          containers:""" + CONTAINER.format(name="tensorflow") + """
    PS:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          containers:""" + CONTAINER.format(name="tensorflow") + """
    Worker:
      replicas: 2
      restartPolicy: OnFailure
      template:
        spec:
          containers:""" + CONTAINER.format(name="tensorflow") + """
              volumeMounts:
                - {mountPath: /train, name: training}
          volumes:
            - name: training
              persistentVolumeClaim: {claimName: strategy-volume}
    Evaluator:
      replicas: 1
      template:
        spec:
          containers:""" + CONTAINER.format(name="tensorflow") + """
                requests: {nvidia.com/gpu: 1}
"""

XGBOOST = """
apiVersion: kubeflow.org/v1
kind: XGBoostJob
metadata:
  name: xgboost-dist-iris
spec:
  xgbReplicaSpecs:
    Master:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          containers:""" + CONTAINER.format(name="xgboost") + """
              ports:
                - {containerPort: 9991, name: xgboostjob-port}
    Worker:
      replicas: 2
      restartPolicy: ExitCode
      template:
        spec:
          containers:""" + CONTAINER.format(name="xgboost") + """
              ports:
                - {containerPort: 9991, name: xgboostjob-port}
"""

MPIJOB = """
apiVersion: kubeflow.org/v1
kind: MPIJob
metadata:
  name: tensorflow-mnist
spec:
  slotsPerWorker: 1
  cleanPodPolicy: Running
  mainContainer: mpi
  mpiReplicaSpecs:
    Launcher:
      replicas: 1
      template:
        spec:
          containers:""" + CONTAINER.format(name="mpi") + """
    Worker:
      replicas: 2
      template:
        spec:
          containers:""" + CONTAINER.format(name="mpi") + """
"""

JAXJOB = """
apiVersion: kubeflow.org/v1
kind: JAXJob
metadata:
  name: jaxjob-simple
spec:
  runPolicy:
    suspend: true
  jaxReplicaSpecs:
    Worker:
      replicas: 2
      restartPolicy: OnFailure
      template:
        spec:
          containers:""" + CONTAINER.format(name="jax") + """
              ports:
                - {containerPort: 6666, name: jaxjob-port}
"""

PADDLEJOB = """
apiVersion: kubeflow.org/v1
kind: PaddleJob
metadata:
  name: paddle-simple-cpu
spec:
  elasticPolicy:
    minReplicas: 1
    maxReplicas: 2
    maxRestarts: 3
  paddleReplicaSpecs:
    Worker:
      replicas: 2
      restartPolicy: OnFailure
      template:
        spec:
          containers:""" + CONTAINER.format(name="paddle") + """
              ports:
                - {containerPort: 37777, name: master}
"""

MANIFESTS = {"pytorchjob": PYTORCH, "tfjob": TFJOB, "xgboostjob": XGBOOST,
             "mpijob": MPIJOB, "jaxjob": JAXJOB, "paddlejob": PADDLEJOB}


@pytest.fixture(scope="module")
def training_crds(cluster: Cluster) -> None:
    wait_for_training_operator(cluster, *(f"{kind}s" for kind in MANIFESTS), webhooks=True)


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_a_v1_9_manifest_applies_unchanged(cluster: Cluster, ns: str, training_crds: None,
                                           kind: str) -> None:
    result = cluster.kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-",
                             input=MANIFESTS[kind])
    assert result.stdout.strip().endswith("created (server dry run)"), result.stdout
    assert result.stderr == ""
    assert cluster.kubectl("get", f"{kind}s", "-n", ns).stderr.startswith("No resources")


def test_a_misspelt_field_is_refused_as_against_the_real_crd(
        cluster: Cluster, ns: str, training_crds: None) -> None:
    misspelt = PYTORCH.replace("      replicas: 2\n", "      replica: 2\n")
    result = cluster.kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-",
                             input=misspelt, check=False)
    assert result.returncode == 1
    assert 'unknown field "spec.pytorchReplicaSpecs.Worker.replica"' in result.stderr, \
        result.stderr
