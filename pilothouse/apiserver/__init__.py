"""The API server: the Kubernetes REST API over the datastore.

Request path: http.py (ASGI app: parse, authenticate, authorize, route) -> handlers for
discovery/OpenAPI/reviews or the generic registry (registry/generic.py), which runs each
resource's defaulting, validation and field pruning and reads/writes the store. Watches
are served from one datastore watch fanned out by watchcache.py; CRDs become served
resources through crdcontroller.py.
"""
