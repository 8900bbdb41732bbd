"""The per-container supervisor (the shim), as conmon and containerd-shim are to their runtimes.

One shim runs per container, for as long as the container runs, so the kubelet can die and
come back without losing a container's output or exit code. The runtime starts it as

    python -I -S shim.py <container state dir>

and it imports only the standard library (nothing from pilothouse, no `site`), so it starts
in a few milliseconds and stays small. It forks once and the first process exits at once,
so the shim is nobody's child (no zombie for the kubelet to reap) and in its own session
(a signal to the kubelet's process group does not reach it); it never asks to die with its
parent.

What it does, in order:

1. Reads `config.json` from the state dir (written by the runtime: the program, its argv
   and environment, working dir, cgroups to join, log settings, ...).
2. Starts the container process: fork; in the child, a new session (so the process group
   can be signalled as one), the pty as controlling terminal for `tty`, the pod's
   /etc/hosts and /etc/resolv.conf bound in a mount namespace of its own when the config
   names `pod_files` (the process runtime as root; `mount_pod_files`), the cgroups joined
   by writing the pid to each `cgroup.procs` *before* exec (so nothing runs unaccounted),
   chdir, exec. A failed chdir or exec comes back through a close-on-exec pipe, so the
   runtime reports `RunContainerError` instead of a container that never ran. For the
   sandbox runtime the program is `bwrap` (exec'd by `nsenter --net` when the pod has its
   own network namespace); bwrap reports the pid of the namespace's init on fd 3
   (`--info-fd`), and the container's own process is that init's child.
3. Writes `state.json` (atomically) with the pid and its start time from /proc (so a
   reused pid is never mistaken for the container), startedAt, and its own pid, then
   reports `{"pid": ...}` or `{"error": ...}` as one JSON line on its stdout to the
   runtime that started it; only then opens `attach.sock`, becomes the subreaper of the
   container's orphans and notifies the node (below). What the start waits for imports
   no more than `os`, `select`, `struct` and C accelerators (`_json`, `_signal`): the
   `json`, `socket` and `signal` packages would double the shim's start.
4. Copies the container's stdout and stderr into the log file in the CRI log format
   (described in `pilothouse/node/logs.py`; this module has the only writer), rotating it
   at `log_max_bytes` and keeping `log_max_files` files in all; relays output to attached
   clients and their input to the container's stdin (`attach.sock`, frames below).
5. On exit: kills what is left of the container's process group (a container ends with
   its main process), drains the output, and writes exitCode (128+n for signal n),
   finishedAt, reason (Completed, Error, or OOMKilled when the memory cgroup counted an
   OOM kill) and the termination message (the first 4096 bytes of the file the container
   may write), removes the container's cgroups, notifies the node and exits.

Notifications are a datagram holding the container id sent to the unix socket named in
the config (the runtime's `container_events()` listens there); nobody listening is fine.

Attach frames, both ways over `attach.sock`: a 5-byte header (kind: 1 byte, length: 4
bytes big-endian) then the payload. Client to shim: HELLO (payload b"1" to send stdin,
b"0" not to), STDIN data, RESIZE (width, height as two big-endian 16-bit numbers),
CLOSE_STDIN. Shim to client: STDOUT and STDERR data, then EXIT (the exit code, 4 bytes
signed) when the container ends. With `stdin_once`, the container's stdin closes when
the first client that sent stdin detaches.
"""

from __future__ import annotations

import os
import select
import struct
import sys
import time

try:  # the C module: `signal` imports enum, a tenth of the shim's start
    import _signal as signal
except ImportError:
    import signal

HEADER = struct.Struct(">BI")
HELLO, STDIN, STDOUT, STDERR, RESIZE, CLOSE_STDIN, EXIT = range(7)

#: A CRI log record holds at most this much of a line; longer lines are split into P records.
MAX_RECORD = 16 * 1024
#: Exit codes are 128+n for a process killed by signal n, as shells and container runtimes say.
SIGNAL_EXIT_BASE = 128
CANNOT_RUN_EXIT_CODE = 128
TERMINATION_MESSAGE_MAX = 4096
#: How long to keep reading output after the container exited (its pipes may be held by
#: processes that escaped its process group).
DRAIN_SECONDS = 2.0
CLIENT_BUFFER_MAX = 4 * 1024 * 1024
PR_SET_CHILD_SUBREAPER = 36


# -- JSON without the json package ---------------------------------------------------------
# `json` imports `re` and `enum`: a third of the shim's start. Its C accelerator does the
# work alone; the package is the fallback where the accelerator differs or is missing.

class _JsonOptions:
    strict = True
    object_hook = object_pairs_hook = None
    parse_float = parse_constant = float
    parse_int = int


def load_json(text: str):
    try:
        import _json

        return _json.make_scanner(_JsonOptions)(text.strip(), 0)[0]
    except Exception:  # not all of the accelerator's errors are ValueErrors
        import json

        return json.loads(text)  # the same value, or the error json gives


def dump_json(value) -> str:
    try:
        import _json

        encode = _json.make_encoder(None, None, _json.encode_basestring_ascii, None, ": ",
                                    ", ", False, False, True)
        return "".join(encode(value, 0))
    except (ImportError, AttributeError, TypeError):
        import json

        return json.dumps(value)


# -- the CRI log writer ---------------------------------------------------------------------

_second = [-1, b""]


def log_timestamp(ns: int) -> bytes:
    """RFC 3339 UTC with nine fraction digits, as the CRI log format's first field."""
    sec, frac = divmod(ns, 1_000_000_000)
    if _second[0] != sec:
        _second[0] = sec
        _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode()
    return b"%s.%09dZ" % (_second[1], frac)


def format_records(stream: bytes, records: list[tuple[bytes, bytes]], ns: int) -> bytes:
    """CRI log lines for (tag, content) records of one stream read at time `ns`."""
    prefix = log_timestamp(ns) + b" " + stream + b" "
    return b"".join(prefix + tag + b" " + content + b"\n" for tag, content in records)


class LineSplitter:
    """Cuts one stream's bytes into CRI records: F for a whole line, P for a piece of one."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        data = self.pending + data
        records = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            while end - start > MAX_RECORD:
                records.append((b"P", data[start:start + MAX_RECORD]))
                start += MAX_RECORD
            line = data[start:end]
            records.append((b"F", line[:-1] if line.endswith(b"\r") else line))
            start = end + 1
        while len(data) - start >= MAX_RECORD:
            records.append((b"P", data[start:start + MAX_RECORD]))
            start += MAX_RECORD
        self.pending = data[start:]
        return records

    def flush(self) -> list[tuple[bytes, bytes]]:
        """What is left when the stream ends: an unterminated line is a P record."""
        rest, self.pending = self.pending, b""
        return [(b"P", rest)] if rest else []


class LogWriter:
    """Appends records to `path`, rotating it to `path.<UTC time>` past `max_bytes` and
    keeping `max_files` files in all (the current one and the newest rotated ones)."""

    def __init__(self, path: str, max_bytes: int, max_files: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_files = max(1, max_files)
        self.fd = -1
        self.size = 0
        self._open()

    def _open(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                          0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, data: bytes) -> None:
        """Append whole records; a file is rotated before it would pass max_bytes (a record
        longer than that fills a file alone)."""
        while data:
            room = self.max_bytes - self.size if self.max_bytes else len(data)
            if len(data) <= room:
                cut = len(data)
            else:
                cut = data.rfind(b"\n", 0, max(room, 0)) + 1
                if cut == 0:
                    if self.size:
                        self.rotate()
                        continue
                    cut = data.find(b"\n") + 1 or len(data)
            os.write(self.fd, data[:cut])
            self.size += cut
            data = data[cut:]
            if data:
                self.rotate()

    def rotate(self) -> None:
        os.close(self.fd)
        now = time.time()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}"
        os.rename(self.path, self.path + "." + stamp)
        self._open()
        folder, base = os.path.split(self.path)
        rotated = sorted(name for name in os.listdir(folder or ".")
                         if name.startswith(base + "."))
        for name in rotated[:max(0, len(rotated) - (self.max_files - 1))]:
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass

    def close(self) -> None:
        os.close(self.fd)


# -- small helpers --------------------------------------------------------------------------

def proc_start_time(pid: int) -> int | None:
    """The start time of `pid` in clock ticks after boot (None if gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
    except OSError:
        return None
    if fields[0] == b"Z":
        return None
    return int(fields[19])


def write_json(path: str, doc: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(dump_json(doc))
    os.replace(tmp, path)


def unix_address(path: str) -> tuple[str, int]:
    """An AF_UNIX address for `path` (whose length may pass the 108-byte limit) and an fd
    to close after use (-1 if none)."""
    if len(os.fsencode(path)) < 100:
        return path, -1
    folder, name = os.path.split(path)
    fd = os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{name}", fd


def notify(path: str | None, container_id: str) -> None:
    if not path:
        return
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    address, fd = unix_address(path)
    try:
        sock.sendto(container_id.encode(), address)
    except OSError:
        pass  # nobody listens: the kubelet relists
    finally:
        sock.close()
        if fd >= 0:
            os.close(fd)


def read_counter(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def child_of(ppid: int, timeout: float) -> int | None:
    """The first child of `ppid` (bwrap's namespace init forks the container's process)."""
    deadline = time.monotonic() + timeout
    while True:
        candidates = [str(ppid + 1)] + [p for p in os.listdir("/proc") if p.isdigit()]
        for pid in candidates:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    if int(f.read().rpartition(b")")[2].split()[1]) == ppid:
                        return int(pid)
            except (OSError, ValueError, IndexError):
                continue
        if time.monotonic() > deadline or proc_start_time(ppid) is None:
            return None
        time.sleep(0.001)


class StartError(Exception):
    pass


CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_SLAVE = 4096, 16384, 1 << 19


def mount_pod_files(files: list) -> None:
    """In a new mount namespace of the calling (container) process, bind each `[source,
    target]` pair's pod file over the host's (the pod's /etc/hosts and /etc/resolv.conf),
    as a container runtime binds them into a container. Every mount is made a slave first,
    so nothing bound here shows on the host and the host's later mounts still show here.
    Raises OSError; needs CAP_SYS_ADMIN. ctypes loads only in this (forked) child."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> None:
        if result != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(None, b"/", None, ctypes.c_ulong(MS_REC | MS_SLAVE), None),
          "make / a slave mount")
    for source, target in files:
        check(libc.mount(os.fsencode(source), os.fsencode(target), None,
                         ctypes.c_ulong(MS_BIND), None), f"bind {source} on {target}")


def start_error(step: str, err: int, text: str, config: dict) -> str:
    """The message containerd/runc give for a process that could not start."""
    prefix = "unable to start container process: "
    if step == "chdir":
        cwd = config.get("display_cwd") or config["cwd"]
        return prefix + f'chdir to cwd ("{cwd}") set in config.json failed: {text.lower()}'
    if step == "exec":
        name = config["argv"][0] if not config.get("sandbox") else config["exe"]
        if err == 2 and "/" not in name:
            return prefix + f'exec: "{name}": executable file not found in $PATH'
        if err == 2:
            return prefix + f'exec: "{name}": stat {name}: no such file or directory'
        return prefix + f'exec: "{name}": {text.lower()}'
    return prefix + f"{step}: {text}"


# -- the supervisor -------------------------------------------------------------------------

class Client:
    def __init__(self, sock) -> None:
        self.sock = sock
        self.inbox = b""
        self.outbox = b""
        self.stdin = False


class Shim:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.id = config["id"]
        self.tty = bool(config.get("tty"))
        self.poll = select.poll()
        self.handlers: dict = {}
        self.outputs: dict[int, tuple[bytes, LineSplitter]] = {}
        self.clients: dict[int, Client] = {}
        self.stdin_fd = -1
        self.stdin_buffer = b""
        self.master = -1
        self.pid = 0
        self.child = 0
        self.exit_code: int | None = None
        self.finished_at = 0.0
        self.state: dict = {"status": "created", "shimPid": os.getpid(),
                            "shimStartTime": proc_start_time(os.getpid())}
        self.log = LogWriter(config["log_path"], int(config.get("log_max_bytes") or 0),
                             int(config.get("log_max_files") or 5))

    # start ---------------------------------------------------------------------------------

    def start(self) -> None:
        config = self.config
        child_in = child_out = child_err = -1
        if self.tty:
            import fcntl
            import termios
            self.master, slave = os.openpty()
            os.set_blocking(self.master, False)
            child_in = child_out = child_err = slave
            self.outputs[self.master] = (b"stdout", LineSplitter())
            if config.get("stdin"):
                self.stdin_fd = self.master
            self._ioctl = (fcntl.ioctl, termios)
        else:
            out_r, child_out = os.pipe()
            err_r, child_err = os.pipe()
            self.outputs[out_r] = (b"stdout", LineSplitter())
            self.outputs[err_r] = (b"stderr", LineSplitter())
            if config.get("stdin"):
                child_in, self.stdin_fd = os.pipe()
                os.set_blocking(self.stdin_fd, False)
            else:
                child_in = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        status_r, status_w = os.pipe()
        status_w = self._high_fd(status_w)
        info_r = info_w = args = -1
        if config.get("sandbox"):
            info_r, info_w = os.pipe()
            args = self._high_fd(os.open(config["args_file"], os.O_RDONLY | os.O_CLOEXEC))
        pid = os.fork()
        if pid == 0:
            self._exec_child(child_in, child_out, child_err, status_w, info_w, args)
        self.child = pid
        for fd in {child_in, child_out, child_err, status_w, info_w, args} - {-1}:
            os.close(fd)
        try:
            self._confirm(status_r, info_r)
        except BaseException as e:
            try:  # never leave a container nobody supervises
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            if isinstance(e, StartError):
                raise
            raise StartError(f"unable to start container process: {e!r}") from e

    def _confirm(self, status_r: int, info_r: int) -> None:
        """Wait for the exec (or its failure), find the container's pid, record it."""
        failure = b""
        while chunk := os.read(status_r, 4096):
            failure += chunk
        os.close(status_r)
        if failure:
            step, err, text = failure.decode(errors="replace").split("\0", 2)
            raise StartError(start_error(step, int(err), text, self.config))
        self.pid = self.child
        if info_r >= 0:
            self._find_sandboxed_process(info_r)
        self.pidfd = os.pidfd_open(self.child)
        self.state.update(pid=self.pid, pidStartTime=proc_start_time(self.pid),
                          startedAt=time.time(), status="running")
        write_json("state.json", self.state)

    @staticmethod
    def _high_fd(fd: int) -> int:
        import fcntl
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return high

    def _exec_child(self, fd_in: int, fd_out: int, fd_err: int, status_w: int, info_w: int,
                    args: int) -> None:
        config = self.config
        step = "setup"
        try:
            os.setsid()
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            if self.tty:
                ioctl, termios = self._ioctl
                ioctl(fd_in, termios.TIOCSCTTY, 0)
            os.dup2(fd_in, 0)
            os.dup2(fd_out, 1)
            os.dup2(fd_err, 2)
            if info_w >= 0:  # bwrap: its info on fd 3, its options on fd 4
                os.dup2(info_w, 3)
                os.dup2(args, 4)
            if config.get("pod_files"):
                step = "mount"
                mount_pod_files(config["pod_files"])
            step = "cgroup"
            pid = str(os.getpid())
            for folder in config.get("cgroups") or ():
                with open(os.path.join(folder, "cgroup.procs"), "w") as f:
                    f.write(pid)
            step = "chdir"
            os.chdir(config["cwd"])
            step = "exec"
            os.execve(config["exe"], config["argv"], config["env"])
        except OSError as e:
            os.write(status_w, "\0".join((step, str(e.errno or 0), e.strerror or str(e))).encode())
        except BaseException as e:  # anything else must be reported too: never return
            os.write(status_w, "\0".join((step, "0", str(e))).encode())
        os._exit(127)

    def _find_sandboxed_process(self, info_r: int) -> None:
        """bwrap writes the host pid of its namespace init on fd 3; the container's own
        process is the init's first child."""
        data = b""
        info = None
        while info is None:
            chunk = os.read(info_r, 4096)
            if not chunk:
                break
            data += chunk
            if data.rstrip().endswith(b"}"):  # a flat object: it ends with its only brace
                info = load_json(data.decode())
        os.close(info_r)
        if info is None:
            _, status = os.waitpid(self.child, 0)
            detail = b""
            for fd in self.outputs:
                os.set_blocking(fd, False)
                try:
                    detail += os.read(fd, 4096)
                except OSError:
                    pass
            code = os.waitstatus_to_exitcode(status)
            text = detail.decode(errors="replace").strip()
            raise StartError("unable to start container process: sandbox setup failed "
                             f"(exit {code}): {text}")
        init = info["child-pid"]
        self.state.update(initPid=init, pidNamespace=info.get("pid-namespace"),
                          bwrapPid=self.pid)
        self.pid = child_of(init, 2.0) or init

    # run -----------------------------------------------------------------------------------

    def listen(self) -> None:
        """Open `attach.sock` (after the start is reported: the socket module and the bind
        are off the start's path; the runtime waits for the socket when attaching)."""
        import socket

        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        if os.path.exists("attach.sock"):
            os.unlink("attach.sock")
        self.listener.bind("attach.sock.tmp")
        self.listener.listen(16)
        self.listener.setblocking(False)
        os.rename("attach.sock.tmp", "attach.sock")  # there only once it accepts

    def watch(self, fd: int, mask: int, handler) -> None:
        self.poll.register(fd, mask)
        self.handlers[fd] = handler

    def unwatch(self, fd: int) -> None:
        self.poll.unregister(fd)
        del self.handlers[fd]

    def run(self) -> None:
        for fd in self.outputs:
            os.set_blocking(fd, False)
            self.watch(fd, select.POLLIN, self.on_output)
        self.watch(self.listener.fileno(), select.POLLIN, self.on_connect)
        self.watch(self.pidfd, select.POLLIN, self.on_exit)
        deadline = None
        while True:
            timeout = None
            if self.exit_code is not None:
                if deadline is None:
                    deadline = time.monotonic() + DRAIN_SECONDS
                left = deadline - time.monotonic()
                if not self.outputs or left <= 0:
                    break
                timeout = left * 1000
            for fd, mask in self.poll.poll(timeout):
                handler = self.handlers.get(fd)
                if handler is not None:
                    handler(fd, mask)
        self.finish()

    def on_output(self, fd: int, mask: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: the pty has no more writers
        stream, splitter = self.outputs[fd]
        if not data:
            self.close_output(fd)
            return
        self.log.write(format_records(stream, splitter.feed(data), time.time_ns()))
        if self.clients:
            frame = HEADER.pack(STDOUT if stream == b"stdout" else STDERR, len(data)) + data
            for client in list(self.clients.values()):
                self.send(client, frame)

    def close_output(self, fd: int) -> None:
        stream, splitter = self.outputs.pop(fd)
        self.log.write(format_records(stream, splitter.flush(), time.time_ns()))
        self.unwatch(fd)
        if fd == self.master:
            return  # closed with the rest in finish(): stdin may still use it
        os.close(fd)

    def on_exit(self, fd: int, mask: int) -> None:
        try:
            os.killpg(self.child, signal.SIGKILL)  # what is left of the container goes too
        except OSError:
            pass
        _, status = os.waitpid(self.child, 0)
        code = os.waitstatus_to_exitcode(status)
        self.exit_code = SIGNAL_EXIT_BASE - code if code < 0 else code
        self.finished_at = time.time()
        self.unwatch(fd)
        os.close(fd)
        reap_orphans()

    # attach ----------------------------------------------------------------------------------

    def on_connect(self, fd: int, mask: int) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        self.clients[sock.fileno()] = Client(sock)
        self.watch(sock.fileno(), select.POLLIN, self.on_client)

    def on_client(self, fd: int, mask: int) -> None:
        client = self.clients[fd]
        if mask & select.POLLOUT:
            self.flush(client)
        if not mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
            return
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.detach(client)
            return
        client.inbox += data
        while len(client.inbox) >= HEADER.size:
            kind, size = HEADER.unpack_from(client.inbox)
            if len(client.inbox) < HEADER.size + size:
                break
            payload = client.inbox[HEADER.size:HEADER.size + size]
            client.inbox = client.inbox[HEADER.size + size:]
            self.on_frame(client, kind, payload)

    def on_frame(self, client: Client, kind: int, payload: bytes) -> None:
        if kind == HELLO:
            client.stdin = payload == b"1" and bool(self.config.get("stdin"))
        elif kind == STDIN and client.stdin and self.stdin_fd >= 0:
            self.stdin_buffer += payload
            self.flush_stdin(self.stdin_fd, select.POLLOUT)
        elif kind == CLOSE_STDIN and client.stdin and self.config.get("stdin_once"):
            # Without stdinOnce the container's stdin outlives its attached clients, as a
            # container runtime keeps it: the next `kubectl attach -i` writes to it again.
            self.close_stdin()
        elif kind == RESIZE and self.master >= 0 and len(payload) == 4:
            width, height = struct.unpack(">HH", payload)
            ioctl, termios = self._ioctl
            ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def flush_stdin(self, fd: int, mask: int) -> None:
        try:
            written = os.write(self.stdin_fd, self.stdin_buffer)
        except BlockingIOError:
            written = 0
        except OSError:
            self.close_stdin()  # the container closed its stdin
            return
        self.stdin_buffer = self.stdin_buffer[written:]
        if self.stdin_fd == self.master:
            return  # a pty master is also an output: no separate watch
        if self.stdin_buffer and self.stdin_fd not in self.handlers:
            self.watch(self.stdin_fd, select.POLLOUT, self.flush_stdin)
        elif not self.stdin_buffer and self.stdin_fd in self.handlers:
            self.unwatch(self.stdin_fd)

    def close_stdin(self) -> None:
        if self.stdin_fd < 0:
            return
        if self.stdin_fd == self.master:
            try:
                os.write(self.master, b"\x04")  # end of input, as a terminal says it
            except OSError:
                pass
        else:
            if self.stdin_fd in self.handlers:
                self.unwatch(self.stdin_fd)
            os.close(self.stdin_fd)
        self.stdin_fd = -1
        self.stdin_buffer = b""

    def send(self, client: Client, frame: bytes) -> None:
        client.outbox += frame
        if len(client.outbox) > CLIENT_BUFFER_MAX:
            self.detach(client)  # too slow to follow the container: let it reconnect
            return
        self.flush(client)

    def flush(self, client: Client) -> None:
        fd = client.sock.fileno()
        try:
            sent = client.sock.send(client.outbox)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.detach(client)
            return
        client.outbox = client.outbox[sent:]
        mask = select.POLLIN | (select.POLLOUT if client.outbox else 0)
        self.poll.modify(fd, mask)

    def detach(self, client: Client) -> None:
        fd = client.sock.fileno()
        if self.clients.pop(fd, None) is None:
            return
        self.unwatch(fd)
        client.sock.close()
        if client.stdin and self.config.get("stdin_once"):
            self.close_stdin()

    # finish ----------------------------------------------------------------------------------

    def finish(self) -> None:
        for fd in list(self.outputs):
            self.close_output(fd)
        self.log.close()
        config = self.config
        oom = sum(read_counter(path, "oom_kill") for path in config.get("oom_files") or ())
        code = self.exit_code
        reason = "Completed" if code == 0 else "OOMKilled" if oom else "Error"
        message = ""
        if config.get("termination_file"):
            try:
                with open(config["termination_file"], "rb") as f:
                    message = f.read(TERMINATION_MESSAGE_MAX).decode(errors="replace")
            except OSError:
                pass
        self.listener.close()
        try:
            os.unlink("attach.sock")
        except OSError:
            pass
        reap_orphans()
        remove_cgroups(config.get("cgroups") or ())  # before "exited": nothing is left then
        self.state.update(status="exited", exitCode=code, reason=reason, message=message,
                          finishedAt=self.finished_at)
        write_json("state.json", self.state)
        for client in list(self.clients.values()):
            client.sock.setblocking(True)
            client.sock.settimeout(1.0)
            try:
                client.sock.sendall(client.outbox + HEADER.pack(EXIT, 4) + struct.pack(">i", code))
            except OSError:
                pass
            client.sock.close()
        notify(config.get("notify"), self.id)


def become_subreaper() -> None:
    """Orphans of the container (bwrap's namespace init, daemons it started) become our
    children, so that we, not the host's init, reap them, as conmon does."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (ImportError, OSError, AttributeError):
        pass


def reap_orphans() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def remove_cgroups(folders) -> None:
    """rmdir the container's cgroups once their last process is gone (the kernel may take
    a moment to finish killing a pid namespace)."""
    left = list(folders)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        for folder in list(left):
            try:
                os.rmdir(folder)
            except FileNotFoundError:
                pass
            except OSError:
                continue
            left.remove(folder)
        if not left:
            return
        time.sleep(0.01)


def report(doc: dict) -> None:
    """Tell the runtime that started us how the start went, then let go of its pipe."""
    try:
        os.write(1, (dump_json(doc) + "\n").encode())
    except OSError:
        pass
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.close(null)


def main(argv: list[str]) -> None:
    if os.fork():
        os._exit(0)
    os.setsid()
    os.chdir(argv[1])
    with open("config.json") as f:
        config = load_json(f.read())
    try:
        shim = Shim(config)
        shim.start()
    except Exception as e:  # whatever it was, the runtime must hear it
        message = str(e) if isinstance(e, StartError) else \
            f"unable to start container process: {e}"
        write_json("state.json", {"status": "exited", "exitCode": CANNOT_RUN_EXIT_CODE,
                                  "reason": "ContainerCannotRun", "message": message,
                                  "finishedAt": time.time(), "shimPid": os.getpid()})
        report({"error": message})
        remove_cgroups(config.get("cgroups") or ())
        notify(config.get("notify"), config["id"])
        return
    report({"pid": shim.pid, "startedAt": shim.state["startedAt"]})
    become_subreaper()
    shim.listen()
    notify(config.get("notify"), shim.id)
    shim.run()


if __name__ == "__main__":
    main(sys.argv)
