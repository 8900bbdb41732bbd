"""The node's pod network: each sandboxed pod in its own network namespace on a node bridge.

This is kubenet's design (the kubelet's own network plugin before CNI: a bridge, and
host-local address management from the Node's `spec.podCIDR`), for one machine:

- **The bridge** `ph<N>br` (N: the node's octet, `machinery/addresses.py`) holds the first
  address of the node's pod subnet (10.244.N.0/24), every pod's gateway. It is made when
  the node agent starts and removed when it stops gracefully (after its pods' namespaces),
  unless pods of another agent with the same node name are still on it: a laptop
  cluster leaves no interfaces behind (a real CNI bridge stays).
- **A pod's network** is a network namespace pinned at `/run/netns/ph<N>p<i>` (i: the pod
  address's index in the subnet; a bind mount made by `ip netns add`, so it outlives the
  agent: a restarted agent adopts running pods, and `ip netns` shows them), lo up, and a
  veth pair: host end `ph<N>p<i>` too, on the bridge, pod end `eth0` with the pod's
  address, default route via the gateway. The sandbox runtime starts each container in it.
- **The host's 127/8 from a pod**: cluster IPs, load-balancer addresses, the node's DNS and
  process-runtime pods live on the host's loopback. In the pod, the local table keeps
  only 127.0.0.0/16 for its own loopback, 127.0.0.0/8 goes via the gateway, and
  `route_localnet` on the pod's interfaces and the bridge lets loopback addresses cross
  them. So a cluster IP is the same address for every runtime.
- **Addresses**: one file per address in use under `/run/pilothouse/pod-network/ph<N>br/`
  holding the pod's uid and the agent's data dir (host-local's layout): a restarted agent
  knows which pod has which (so which namespace), two agents of one node name on one
  machine (two `up`s) never hand out one address twice, and each removes only its own
  pods' namespaces, and those of agents whose data dir is gone (an agent stopped before
  its teardown, of a cluster since deleted). Like the pins, the records live in /run, so a
  reboot forgets both.

The pin folder is a shared mount (`ip netns add` makes it one): the containers' mount
namespaces get copies of the pins (bwrap shows the host's /run), and unmounting a pin
must reach those copies too, or the namespace would live on as long as they do.

How, measured on a loaded 2-core machine: a pod's network is one process tree (`sh`, `ip`
thrice, `nsenter`; POD_SCRIPT), ~6-10 ms (~8 ms inside the agent), started from the event
loop; two are kept made ahead, so a pod's start rarely waits for one. The first version
made the namespace with the system calls in a thread of its own (a thread's network
namespace is its own): ~4 ms alone, but ~50 ms inside the agent, where each of the
thread's ~20 returns from a system call waited for the event loop to hand over the GIL.
Netlink in-process (pyroute2) would save the few ms the processes cost; not worth a
dependency. Tearing down is unpinning (the kernel then removes namespaces and their veth
pairs in batches), and the port-forward's sockets in a pod's namespace are made by a
short-lived thread that joins it (ctypes: Python 3.11 has no os.setns).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import ipaddress
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .runtime.process import _read_to_eof

log = logging.getLogger(__name__)

PIN_DIR = Path("/run/netns")
STATE_ROOT = Path("/run/pilothouse/pod-network")
#: How long the kernel may take to remove an unpinned namespace's veth pair.
VETH_GONE_SECONDS = 2.0
#: Pod networks made ahead (see PodNetwork), recorded under keys with this prefix.
SPARES = 2
SPARE_PREFIX = "spare-"
POD_INTERFACE = "eth0"
#: The pod's own loopback: 127.0.0.0/16 (127.0.0.1, localhost); the rest of 127/8 is the host's.
POD_LOOPBACK = "127.0.0.0/16"
HOST_LOOPBACK = "127.0.0.0/8"

_CLONE_NEWNET = 0x40000000
_MNT_DETACH = 2
#: Makes a pod's network in one process tree (`sh`, `ip` thrice, `nsenter`: ~6-10 ms, with
#: no thread of the agent's involved): $1 the namespace's name, $2 the host end of the veth
#: pair (the same name), $3 the bridge, $4 the `ip` program; pod_commands() on standard input. `ip netns
#: add` pins the namespace (and makes the pin folder a shared mount); the pod's end of the
#: pair is made in it; `route_localnet` is set inside, where /proc/sys/net is the pod's.
POD_SCRIPT = f"""set -e
"$4" netns add "$1"
"$4" link add "$2" master "$3" up type veth peer name {POD_INTERFACE} netns "$1"
exec nsenter --net="{PIN_DIR}/$1" sh -c '
for conf in all {POD_INTERFACE}; do echo 1 > /proc/sys/net/ipv4/conf/$conf/route_localnet; done
exec "$0" -batch -' "$4"
"""

T = TypeVar("T")


class PodNetworkError(Exception):
    """A pod's (or the node's) network could not be made; the message says why."""


# -- names and the plan, pure -----------------------------------------------------------------

def bridge_name(octet: int) -> str:
    return f"ph{octet}br"


def link_name(octet: int, subnet: ipaddress.IPv4Network, ip: str) -> str:
    """The name of the host end of a pod's veth pair, and of its pinned namespace: unique
    on the node because its address is (at most 15 characters, the kernel's limit for an
    interface: `ph254p65534` for a /16)."""
    index = int(ipaddress.IPv4Address(ip)) - int(subnet.network_address)
    return f"ph{octet}p{index}"


def gateway(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    return subnet.network_address + 1


def node_commands(bridge: str, subnet: ipaddress.IPv4Network) -> list[str]:
    """`ip -batch` lines making the node's bridge with the gateway address (idempotent once
    the bridge exists: `replace`, `set`)."""
    return [f"address replace {gateway(subnet)}/{subnet.prefixlen} dev {bridge}",
            f"link set {bridge} up"]


def pod_commands(ip: str, subnet: ipaddress.IPv4Network) -> list[str]:
    """`ip -batch` lines in the pod's namespace: loopback (its own 127.0.0.0/16 only),
    the pod's address, the default route and the host's 127/8 through the gateway."""
    via = gateway(subnet)
    return [
        "link set lo up",
        f"route del local {HOST_LOOPBACK} dev lo table local",
        f"route add local {POD_LOOPBACK} dev lo table local",
        f"address add {ip}/{subnet.prefixlen} dev {POD_INTERFACE}",
        f"link set {POD_INTERFACE} up",
        f"route add default via {via} dev {POD_INTERFACE}",
        f"route add {HOST_LOOPBACK} via {via} dev {POD_INTERFACE}",
    ]


class AddressAllocator:
    """host-local address management: a file per address in use, named by the address and
    holding the pod's uid and its owner (the agent's data dir), made with O_EXCL so that
    agents sharing the folder never take one address twice. The network, gateway and
    broadcast addresses are never given; a pod's first candidate is picked from its uid, so
    addresses are rarely reused at once."""

    def __init__(self, subnet: ipaddress.IPv4Network, folder: Path, owner: str) -> None:
        self.subnet = subnet
        self.folder = folder
        self.owner = owner
        self.folder.mkdir(parents=True, exist_ok=True)
        self._by_uid: dict[str, str] = {}
        #: Addresses recorded by agents whose data dir is gone: nobody can adopt them.
        self.abandoned: list[str] = []
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError, ValueError):
                address = ipaddress.IPv4Address(entry.name)
                uid, _, owner = Path(entry.path).read_text().partition("\n")
                if address in subnet and owner == self.owner:
                    self._by_uid[uid] = entry.name
                elif address in subnet and owner and not os.path.isdir(owner):
                    self.abandoned.append(entry.name)

    def owners(self) -> dict[str, str]:
        """uid -> address, for every address in use."""
        return dict(self._by_uid)

    def get(self, uid: str) -> str | None:
        return self._by_uid.get(uid)

    def allocate(self, uid: str) -> str:
        if uid in self._by_uid:
            return self._by_uid[uid]
        first = int(self.subnet.network_address) + 2
        count = self.subnet.num_addresses - 3
        if count <= 0:
            raise PodNetworkError(f"pod subnet {self.subnet} has no addresses for pods")
        start = zlib.crc32(uid.encode()) % count
        for offset in range(count):
            address = str(ipaddress.IPv4Address(first + (start + offset) % count))
            try:
                fd = os.open(self.folder / address, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{uid}\n{self.owner}")
            self._by_uid[uid] = address
            return address
        raise PodNetworkError(f"no pod IP left in {self.subnet}")

    def reassign(self, old: str, new: str) -> str:
        """Give `old`'s address to `new` (a spare network to a pod)."""
        address = self._by_uid.pop(old)
        tmp = self.folder / f".{address}.tmp"
        tmp.write_text(f"{new}\n{self.owner}")
        os.replace(tmp, self.folder / address)
        self._by_uid[new] = address
        return address

    def release(self, uid: str) -> None:
        address = self._by_uid.pop(uid, None)
        if address is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / address).unlink()

    def forget(self, address: str) -> None:
        """Drop an abandoned address's record (its namespace is gone)."""
        self.abandoned.remove(address)
        with contextlib.suppress(FileNotFoundError):
            (self.folder / address).unlink()


# -- namespaces: unpinning, and sockets made inside them ----------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


async def in_own_thread(work: Callable[[], T]) -> T:
    """Run `work` in a new thread that ends with it: work that changes its thread's network
    namespace leaves every other thread (the event loop's, the executor's) where it was."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            if isinstance(value, socket.socket):
                value.close()
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(value)  # type: ignore[arg-type]

    def run() -> None:
        try:
            value = work()
        except BaseException as err:  # the caller gets it, whatever it was
            loop.call_soon_threadsafe(settle, None, err)
        else:
            loop.call_soon_threadsafe(settle, value, None)

    threading.Thread(target=run, name="podnet", daemon=True).start()
    return await done


def _enter(pin: str) -> None:
    """Move the calling thread into the network namespace pinned at `pin`."""
    fd = os.open(pin, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, _CLONE_NEWNET), f"setns {pin}")
    finally:
        os.close(fd)


def destroy_netns(pin: str) -> None:
    """Unpin a namespace (it goes when nothing else holds it) and remove the pin."""
    if _libc.umount2(os.fsencode(pin), _MNT_DETACH) != 0 and \
            ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        _check(-1, f"umount {pin}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pin)


def is_pinned(pin: str) -> bool:
    """Whether `pin` holds a namespace (a mount of nsfs), not just an empty file left by a
    reboot or a crash: a mount has another device than the folder it is in."""
    try:
        return os.stat(pin).st_dev != os.stat(os.path.dirname(pin)).st_dev
    except OSError:
        return False


async def socket_in_netns(pin: str, family: int = socket.AF_INET,
                          kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket of the pod's network namespace (a socket stays in the namespace it was made
    in), for the event loop to use: how the kubelet reaches a pod's own localhost."""
    def make() -> socket.socket:
        _enter(pin)
        sock = socket.socket(family, kind)
        sock.setblocking(False)
        return sock

    return await in_own_thread(make)


async def connect_in_netns(pin: str, host: str, port: int) -> socket.socket:
    """A TCP connection made inside the namespace pinned at `pin`, connected."""
    sock = await socket_in_netns(pin)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _run(argv: Sequence[str], lines: Sequence[str] = ()) -> None:
    """Run a command with `lines` on its standard input; PodNetworkError with what it
    said on failure. Started with subprocess (vfork: ~1 ms), not the event loop's spawn
    (uvloop forks, copying the agent's page tables: ~10 ms), as the shims are."""
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    assert process.stdin is not None and process.stderr is not None
    with contextlib.suppress(BrokenPipeError):  # it failed before reading: stderr says why
        process.stdin.write("".join(f"{line}\n" for line in lines).encode())
    with contextlib.suppress(BrokenPipeError):
        process.stdin.close()
    try:
        err = await _read_to_eof(process.stderr.fileno())
    finally:
        process.stderr.close()
    if process.wait() != 0:  # its output ended: it has exited, or is about to
        raise PodNetworkError(err.decode(errors="replace").strip() or
                              f"{argv[0]} exited with {process.returncode}")


async def _ip(lines: Sequence[str], *, ip: str) -> None:
    """`ip -batch` on the host."""
    await _run([ip, "-batch", "-"], lines)


def unavailable() -> str:
    """Why pods cannot have network namespaces here ("" when they can): root, `ip`
    (iproute2) and the kernel's network namespaces."""
    if os.geteuid() != 0:
        return f"network namespaces and bridges need root; this agent runs as uid {os.geteuid()}"
    if shutil.which("ip") is None:
        return "ip (iproute2) is not installed (Debian/Ubuntu: apt-get install iproute2)"
    if not os.path.exists("/proc/self/ns/net"):
        return "this kernel has no network namespaces (CONFIG_NET_NS)"
    return ""


@dataclass(frozen=True)
class PodAttachment:
    #: The pod's address, and the path of its pinned network namespace.
    ip: str
    netns: str


class PodNetwork:
    """The node's bridge and its pods' namespaces (see the module's doc).

    SPARES networks are kept made ahead under their own keys, so that a pod's start takes
    one (its address record changes hands) instead of waiting the ~8 ms a network takes
    to make; one is made again in the background after each is taken."""

    def __init__(self, *, octet: int, subnet: ipaddress.IPv4Network, owner: str,
                 state_root: Path = STATE_ROOT) -> None:
        self.octet = octet
        self.subnet = subnet
        self.bridge = bridge_name(octet)
        self.pin_dir = PIN_DIR
        self.ip = shutil.which("ip") or "ip"
        self.addresses = AddressAllocator(subnet, state_root / self.bridge, owner)
        self._locks: dict[str, asyncio.Lock] = {}
        self._spares: list[str] = []
        self._refill: asyncio.Task | None = None
        self._closing = False

    def pin(self, ip: str) -> str:
        return str(self.pin_dir / link_name(self.octet, self.subnet, ip))

    def _whole(self, ip: str) -> bool:
        return is_pinned(self.pin(ip)) and \
            os.path.exists(f"/sys/class/net/{link_name(self.octet, self.subnet, ip)}")

    async def setup(self) -> None:
        """Make (or keep) the bridge, check that a veth pair can be made into a new
        namespace (PodNetworkError says what is missing), and start making spares (those
        of a previous agent are removed, and so are the networks of agents whose data dir
        is gone: an agent stopped before it could tear down, whose records nobody can
        adopt)."""
        lines = node_commands(self.bridge, self.subnet)
        if not os.path.exists(f"/sys/class/net/{self.bridge}"):
            lines.insert(0, f"link add {self.bridge} type bridge")
        await _ip(lines, ip=self.ip)
        try:
            with open(f"/proc/sys/net/ipv4/conf/{self.bridge}/route_localnet", "w") as f:
                f.write("1")
        except OSError as err:
            raise PodNetworkError(f"cannot set route_localnet on {self.bridge}: {err}") from None
        probe = f"ph{self.octet}-probe-{os.getpid()}"
        destroy_netns(str(self.pin_dir / probe))
        try:
            await _ip([f"netns add {probe}"], ip=self.ip)
            await _run([self.ip, "-n", probe, "link", "add", POD_INTERFACE, "type", "veth",
                        "peer", "name", "probe1"])
        except PodNetworkError as err:
            raise PodNetworkError(f"cannot make a veth pair in a network namespace: {err}") \
                from None
        finally:
            destroy_netns(str(self.pin_dir / probe))
        for key in self.addresses.owners():
            if key.startswith(SPARE_PREFIX):
                await self._remove(key)
        for address in list(self.addresses.abandoned):
            try:
                destroy_netns(self.pin(address))
            except OSError as err:
                log.warning("cannot remove abandoned network namespace %s: %s",
                            self.pin(address), err)
                continue
            self.addresses.forget(address)
        self._refill_soon()

    async def attach(self, uid: str) -> PodAttachment:
        """The pod's network: kept if a previous agent made it whole, else a spare, else
        made now."""
        async with self._locks.setdefault(uid, asyncio.Lock()):
            ip = self.addresses.get(uid)
            if ip is not None:
                if self._whole(ip):
                    return PodAttachment(ip, self.pin(ip))
                await self._remove(uid)  # made in part when an agent died: made again
            if self._spares:
                ip = self.addresses.reassign(self._spares.pop(0), uid)
            else:
                ip = await self._make(uid)
            self._refill_soon()
            return PodAttachment(ip, self.pin(ip))

    async def _make(self, key: str) -> str:
        ip = self.addresses.allocate(key)
        try:
            await _run(["sh", "-c", POD_SCRIPT, "sh", link_name(self.octet, self.subnet, ip),
                        link_name(self.octet, self.subnet, ip), self.bridge, self.ip],
                       pod_commands(ip, self.subnet))
        except (OSError, PodNetworkError) as err:
            await self._remove(key)
            raise PodNetworkError(str(err)) from None
        return ip

    def _refill_soon(self) -> None:
        if not self._closing and (self._refill is None or self._refill.done()):
            self._refill = asyncio.get_running_loop().create_task(self._make_spares())

    async def _make_spares(self) -> None:
        while len(self._spares) < SPARES and not self._closing:
            key = f"{SPARE_PREFIX}{os.urandom(6).hex()}"
            try:
                await self._make(key)
            except PodNetworkError:
                return  # the next pod makes its own, and says why if it cannot
            self._spares.append(key)

    async def detach(self, uid: str) -> None:
        """Remove the pod's veth pair and namespace and release its address."""
        async with self._locks.setdefault(uid, asyncio.Lock()):
            await self._remove(uid)
        self._locks.pop(uid, None)

    async def _remove(self, key: str) -> None:
        """Unpin the namespace: the kernel then removes it with its veth pair, many at a
        time (20 pods' in ~50 ms, where `ip link del` takes ~40 ms each, holding the lock
        every other link change waits for). A veth still there after VETH_GONE_SECONDS (a
        process outlived its container in the namespace) is deleted."""
        ip = self.addresses.get(key)
        if ip is None:
            return
        try:
            destroy_netns(self.pin(ip))
        except OSError as err:
            raise PodNetworkError(f"cannot remove network namespace {self.pin(ip)}: {err}") \
                from None
        link = f"/sys/class/net/{link_name(self.octet, self.subnet, ip)}"
        deadline = time.monotonic() + VETH_GONE_SECONDS
        while os.path.exists(link) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if os.path.exists(link):
            with contextlib.suppress(PodNetworkError):
                await _ip([f"link del {os.path.basename(link)}"], ip=self.ip)
        self.addresses.release(key)

    def attached(self) -> set[str]:
        """The uids of this agent's pods with a network (an address is taken before the
        namespace is made and released after it is gone)."""
        return {key for key in self.addresses.owners() if not key.startswith(SPARE_PREFIX)}

    async def teardown(self) -> None:
        """Every pod's network and the spares, then the bridge if no other agent's pods
        are on it: for a graceful stop of the node."""
        self._closing = True
        if self._refill is not None and not self._refill.done():
            await self._refill  # a network half made would escape the removal below
        self._spares.clear()
        await asyncio.gather(*(self.detach(key) for key in self.addresses.owners()))
        with contextlib.suppress(OSError):
            if not os.listdir(f"/sys/class/net/{self.bridge}/brif"):
                with contextlib.suppress(PodNetworkError):
                    await _ip([f"link del {self.bridge}"], ip=self.ip)
