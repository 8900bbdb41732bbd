"""One MPI rank: join the world, all-reduce a number, and say where it ran.

The workload of the MPIJob end-to-end test, started by `mpirun` (each rank by the `orted`
that mpirun started on a worker pod through /etc/mpi/kubexec.sh). mpi4py is not installed
and no compiler is assumed, so it calls Open MPI's C library (libmpi.so.40, Debian's
openmpi 4.1) through ctypes. Open MPI's handles are the addresses of its global objects
(MPI_COMM_WORLD is `&ompi_mpi_comm_world`, MPI_INT `&ompi_mpi_int`, MPI_SUM
`&ompi_mpi_op_sum`), and the library is loaded RTLD_GLOBAL because the components it
dlopens resolve their symbols against it.

Each rank contributes rank + 1 to an MPI_Allreduce(MPI_SUM) and prints one JSON line:

    {"rank": 0, "world_size": 2, "allreduce_sum": 3, "host": "hello-worker-0",
     "parent": "orted"}

`host` is the pod's hostname and `parent` the name of the process that started the rank.
With `--fail-rank N`, rank N exits with `--exit-code` (default 3) after MPI_Finalize, so
mpirun fails the way it does when a user's rank fails.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import socket
import sys

MPI_SUCCESS = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--fail-rank", type=int, default=None)
    parser.add_argument("--exit-code", type=int, default=3)
    return parser.parse_args(argv)


class OpenMPI:
    """The few MPI calls the rank makes, on libmpi.so.40."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL("libmpi.so.40", mode=ctypes.RTLD_GLOBAL)
        pointer, integer = ctypes.c_void_p, ctypes.c_int
        for name, argtypes in (
                ("MPI_Init", [pointer, pointer]),
                ("MPI_Comm_rank", [pointer, ctypes.POINTER(integer)]),
                ("MPI_Comm_size", [pointer, ctypes.POINTER(integer)]),
                ("MPI_Allreduce", [pointer, pointer, integer, pointer, pointer, pointer]),
                ("MPI_Finalize", [])):
            function = getattr(self.lib, name)
            function.argtypes, function.restype = argtypes, integer

    def handle(self, symbol: str) -> ctypes.c_void_p:
        """An Open MPI predefined handle: the address of the library's global object."""
        return ctypes.c_void_p(ctypes.addressof(ctypes.c_char.in_dll(self.lib, symbol)))

    def call(self, name: str, *args: object) -> None:
        code = getattr(self.lib, name)(*args)
        if code != MPI_SUCCESS:
            raise RuntimeError(f"{name} returned {code}")


def parent_name() -> str:
    with open(f"/proc/{os.getppid()}/comm") as comm:
        return comm.read().strip()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mpi = OpenMPI()
    mpi.call("MPI_Init", None, None)
    world = mpi.handle("ompi_mpi_comm_world")
    rank, size = ctypes.c_int(), ctypes.c_int()
    mpi.call("MPI_Comm_rank", world, ctypes.byref(rank))
    mpi.call("MPI_Comm_size", world, ctypes.byref(size))
    mine, total = ctypes.c_int(rank.value + 1), ctypes.c_int()
    mpi.call("MPI_Allreduce", ctypes.byref(mine), ctypes.byref(total), 1,
             mpi.handle("ompi_mpi_int"), mpi.handle("ompi_mpi_op_sum"), world)
    print(json.dumps({"rank": rank.value, "world_size": size.value,
                      "allreduce_sum": total.value, "host": socket.gethostname(),
                      "parent": parent_name()}), flush=True)
    mpi.call("MPI_Finalize")
    return args.exit_code if rank.value == args.fail_rank else 0


if __name__ == "__main__":
    sys.exit(main())
