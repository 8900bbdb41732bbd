"""The Kubeflow half: operators for Kubeflow's kinds, each with its CRDs.

Every operator here is an ordinary API client: it imports only `pilothouse.client` and
`pilothouse.machinery`, so it runs unchanged against a real Kubernetes cluster.
"""
