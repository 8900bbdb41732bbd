"""Pilothouse: a Kubernetes-style cluster and Kubeflow-style ML platform in Python.

See ARCHITECTURE.md in the shared docs for the map: machinery/ (shared API machinery),
store/ (revisioned key-value datastore), apiserver/ (the Kubernetes REST API), cli.py.
"""

__version__ = "0.1.0"

#: The Kubernetes minor version whose API this server implements.
KUBERNETES_VERSION = "1.32"
