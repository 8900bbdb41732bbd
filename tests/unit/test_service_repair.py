"""The service address repair loop: missing keys are written again, leaked ones released
after consecutive runs, and out-of-range or doubly held addresses reported on the Service."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator

import orjson
import pytest

from pilothouse.apiserver.registry import ResourceTable
from pilothouse.apiserver.registry.generic import GenericRegistry, WriteOptions, encode
from pilothouse.apiserver.serviceips import IP_PREFIX, PORT_PREFIX
from pilothouse.apiserver.servicerepair import LEAK_RUNS, ServiceAddressRepair
from pilothouse.store.sqlite import SQLiteStore

TABLE = ResourceTable()
SERVICES = TABLE.lookup("", "v1", "services")
EVENTS = TABLE.lookup("", "v1", "events")


@pytest.fixture
def registry(tmp_path) -> Iterator[GenericRegistry]:
    store = SQLiteStore.open(tmp_path / "state.db")
    registry = GenericRegistry(store)
    asyncio.run(registry.create(TABLE.lookup("", "v1", "namespaces"), None,
                                {"metadata": {"name": "ns"}}, WriteOptions()))
    yield registry
    asyncio.run(store.close())


def create(registry: GenericRegistry, name: str, **spec) -> dict:
    body = {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}], **spec}}
    return asyncio.run(registry.create(SERVICES, "ns", body, WriteOptions()))


def keys(registry: GenericRegistry) -> set[str]:
    return {kv.key for kv in asyncio.run(registry.store.range("/registry/ranges/")).kvs}


def events(registry: GenericRegistry) -> list[tuple[str, str, str]]:
    listed = asyncio.run(registry.list(EVENTS, "ns")).items
    return sorted((e["involvedObject"]["name"], e["reason"], e["message"]) for e in listed)


def store_directly(registry: GenericRegistry, svc: dict) -> None:
    """A Service written past the allocator (an old data dir, another range, a bug)."""
    meta = svc["metadata"]
    asyncio.run(registry.store.update(SERVICES.key("ns", meta["name"]), encode(svc),
                                      expected_revision=0))


def test_a_missing_key_is_written_again_and_reported(registry):
    repair = ServiceAddressRepair(registry, TABLE)
    svc = create(registry, "web", type="NodePort")
    ip, port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    for key in (IP_PREFIX + ip, f"{PORT_PREFIX}{port}"):
        asyncio.run(registry.store.delete(key))
    asyncio.run(repair.run_once())
    assert keys(registry) == {IP_PREFIX + ip, f"{PORT_PREFIX}{port}"}
    owner = orjson.loads(asyncio.run(registry.store.get(IP_PREFIX + ip)).value)["metadata"]
    assert owner == {"namespace": "ns", "name": "web", "uid": svc["metadata"]["uid"]}
    assert events(registry) == [
        ("web", "ClusterIPNotAllocated", f"Cluster IP [IPv4]:{ip} is not allocated; repairing"),
        ("web", "PortNotAllocated", f"Port {port} is not allocated; repairing")]


def test_a_leaked_key_is_released_only_after_consecutive_runs(registry):
    repair = ServiceAddressRepair(registry, TABLE)
    held = create(registry, "web")["spec"]["clusterIP"]
    for key in (IP_PREFIX + "127.96.9.9", PORT_PREFIX + "30999"):
        asyncio.run(registry.store.create(key, b'{"kind":"Service","metadata":{"uid":"gone"}}'))
    for _ in range(LEAK_RUNS - 1):
        asyncio.run(repair.run_once())
        assert IP_PREFIX + "127.96.9.9" in keys(registry)
    asyncio.run(repair.run_once())
    assert keys(registry) == {IP_PREFIX + held}
    assert events(registry) == []


def test_a_key_seen_in_use_again_starts_its_leak_count_over(registry):
    repair = ServiceAddressRepair(registry, TABLE)
    asyncio.run(registry.store.create(IP_PREFIX + "127.96.8.8", b'{"metadata":{"uid":"x"}}'))
    asyncio.run(repair.run_once())
    asyncio.run(registry.store.delete(IP_PREFIX + "127.96.8.8"))
    create(registry, "web", clusterIP="127.96.8.8")  # claimed anew, and stored
    for _ in range(LEAK_RUNS):
        asyncio.run(repair.run_once())
    assert IP_PREFIX + "127.96.8.8" in keys(registry) and repair.leaks == {}


def test_out_of_range_and_doubly_held_addresses_are_reported_on_the_service(registry):
    repair = ServiceAddressRepair(registry, TABLE)
    first = create(registry, "first", type="NodePort")
    second = create(registry, "second", type="NodePort")
    clash = copy.deepcopy(second)
    clash["spec"]["clusterIP"] = first["spec"]["clusterIP"]
    clash["spec"]["clusterIPs"] = [first["spec"]["clusterIP"]]
    clash["spec"]["ports"][0]["nodePort"] = 99
    store_directly(registry, clash)
    old = copy.deepcopy(first)
    old["metadata"]["name"] = "old"
    old["metadata"]["uid"] = "old-uid"
    old["spec"]["clusterIPs"] = ["10.96.0.10"]
    old["spec"]["clusterIP"] = "10.96.0.10"
    old["spec"]["ports"][0]["nodePort"] = first["spec"]["ports"][0]["nodePort"]
    asyncio.run(registry.store.create(SERVICES.key("ns", "old"), encode(old)))
    asyncio.run(repair.run_once())
    ip, port = first["spec"]["clusterIP"], first["spec"]["ports"][0]["nodePort"]
    assert events(registry) == sorted([
        ("old", "ClusterIPOutOfRange", "Cluster IP [IPv4]:10.96.0.10 is not within the service "
         "CIDR 127.96.0.0/16; please recreate service"),
        ("old", "PortAlreadyAllocated", f"Port {port} was assigned to multiple services; "
         "please recreate service"),
        ("second", "ClusterIPAlreadyAllocated", f"Cluster IP [IPv4]:{ip} was assigned to "
         "multiple services; please recreate service"),
        ("second", "PortOutOfRange", "Port 99 is not within the port range 30000-32767; please "
         "recreate service")])
    owner = orjson.loads(asyncio.run(registry.store.get(IP_PREFIX + ip)).value)["metadata"]
    assert owner["uid"] == first["metadata"]["uid"]  # the key's holder keeps it
    asyncio.run(repair.run_once())
    counts = [e["count"] for e in asyncio.run(registry.list(EVENTS, "ns")).items]
    assert counts == [2, 2, 2, 2]  # a later run counts the same Events again
