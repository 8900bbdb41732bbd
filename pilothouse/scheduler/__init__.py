"""The scheduler: assigns each pending pod to a node, through the API like any client.

Layout, after kube-scheduler's: `nodeinfo` (what a pod asks for and what a node has
left), `cache` (node usage, updated on assume so a pod bound a moment ago is counted
before the informer reports it), `queue` (active, backoff and unschedulable pods),
`framework` (extension points and the per-cycle runner), `plugins/` (one rule each:
filters, scores, preemption, gang scheduling, binding) and `scheduler` (informers, the
one-at-a-time scheduling loop and the asynchronous binding cycle). It imports only
`pilothouse.client` and `pilothouse.machinery`, so it runs unchanged against a real
Kubernetes cluster.
"""
