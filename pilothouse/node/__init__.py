"""The node agent package: what runs on (or stands in for) a node.

- `kubelet.py`, `podworker.py`, `podstatus.py`: the node agent that runs pods.
- `runtime/`: the container runtimes it runs them with (process, sandbox, engine).
- `volumes.py`, `env.py`, `probes.py`, `stats.py`, `logs.py`: what the kubelet does for
  each container; `server.py` and `streaming.py`: the kubelet API (logs, exec, attach,
  port-forward, stats) that the API server proxies to.
- `hollow.py`: simulated kubelets that register nodes and report pods Running without
  running anything, for control-plane work at scale.
"""
