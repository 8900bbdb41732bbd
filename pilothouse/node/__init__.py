"""The node agent package: what runs on (or stands in for) a node.

For now it holds hollow nodes (`hollow.py`), simulated kubelets that register nodes and
report pods Running without running anything, for control-plane work at scale. The
container runtimes and the real kubelet come with issue 4.
"""
