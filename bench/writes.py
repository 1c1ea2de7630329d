#!/usr/bin/env python3
"""Write syscalls on the edge-gate hop per request, for run.sh's SYSCALLS=1 mode.

    writes.py sockets PID...            each TCP socket of the processes: "pid fd local_port remote_port"
    writes.py count LABEL LOAD_OUTPUT SOCKETS GATE_PORT EDGE_PIDS GATE_PIDS SYSCW < perf-script-output

`count` reads `perf script -F pid,event,trace` of the write-family syscall tracepoints
(write, writev, sendto, sendmsg) recorded from the edge's and the gate's processes during one
load run, and prints one line: the requests the load generator completed, the edge's write
syscalls on its sockets to the gate (remote port GATE_PORT), the gate's on its sockets from the
edge (local port GATE_PORT), and requests per write syscall each way. EDGE_PIDS and GATE_PIDS
are comma-separated. SOCKETS is what `sockets` printed during the run (pooled connections to
the gate stay open, so a file descriptor seen then is the same socket all along); writes on
descriptors it does not list are counted as "other". SYSCW is how much the edge's `syscw` in
/proc/PID/io grew meanwhile, shown beside what perf saw on all its descriptors: syscw counts
write and writev, not sendto or sendmsg.
"""

import re
import sys
from collections import Counter
from pathlib import Path

EVENT = re.compile(r"^\s*(\d+)\s+syscalls:sys_enter_(\w+):\s+fd: (0x[0-9a-f]+)")


def tcp_inodes():
    """{socket inode: (local port, remote port)} for every TCP socket on the machine."""
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            out[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
    return out


def sockets(pids):
    inodes = tcp_inodes()
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        for fd in fds.iterdir():
            try:
                target = fd.readlink().name
            except OSError:
                continue  # closed meanwhile
            if m := re.fullmatch(r"socket:\[(\d+)\]", target):
                if m.group(1) in inodes:
                    local, remote = inodes[m.group(1)]
                    print(pid, fd.name, local, remote)


def requests_done(text):
    if m := re.search(r"(\d+) requests in", text):  # wrk
        return int(m.group(1))
    if m := re.search(r"(\d+) succeeded", text):  # h2load
        return int(m.group(1))
    raise ValueError("no request count in the load's output")


def count(label, load_output, sockets_file, gate_port, edge_pids, gate_pids, syscw):
    gate_port = int(gate_port)
    edge_pids, gate_pids = set(edge_pids.split(",")), set(gate_pids.split(","))
    to_gate, from_gate = set(), set()  # (pid, fd)
    for line in Path(sockets_file).read_text().splitlines():
        pid, fd, local, remote = line.split()
        if pid in edge_pids and int(remote) == gate_port:
            to_gate.add((pid, int(fd)))
        if pid in gate_pids and int(local) == gate_port:
            from_gate.add((pid, int(fd)))
    edge, gate, other, edge_all = Counter(), Counter(), Counter(), Counter()
    for line in sys.stdin:
        if not (m := EVENT.match(line)):
            continue
        pid, call, fd = m.group(1), m.group(2), int(m.group(3), 16)
        if pid in edge_pids:
            edge_all[call] += 1
        if (pid, fd) in to_gate:
            edge[call] += 1
        elif (pid, fd) in from_gate:
            gate[call] += 1
        else:
            other["edge" if pid in edge_pids else "gate"] += 1
    requests = requests_done(Path(load_output).read_text())

    def per(c):
        n = sum(c.values())
        calls = "+".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"
        return f"{n} ({calls}), {requests / n:.2f} requests per write" if n else "0 writes"

    print(
        f"{label}: {requests} requests; edge to gate: {per(edge)}; gate to edge: {per(gate)}; "
        f"other writes (clients, origin, logs): edge {other['edge']}, gate {other['gate']}; "
        f"the edge's syscw +{syscw}, perf on all its descriptors: "
        f"write+writev {edge_all['write'] + edge_all['writev']}, sendto+sendmsg {edge_all['sendto'] + edge_all['sendmsg']}"
    )


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "sockets":
        sockets(sys.argv[2:])
    elif len(sys.argv) == 9 and sys.argv[1] == "count":
        count(*sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
