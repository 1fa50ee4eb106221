# SPDX-License-Identifier: MIT
"""The in-guest half of the benchmark suite (bench/run.py boots the guest
and runs this as root in the checkout):

    .venv/bin/python bench/guest_suite.py [--quick] [--only ITEM ...]

Starts the daemon with its default options (--source auto, so the GUID
poll runs) and the C reference CUSE server (/dev/vmgenid-ref), runs the
C benchmark programs (native/build/bench/) against both and against
their kernel-only references (eventfd, pipe), measures the
daemon's memory and idle CPU, profiles the daemon with py-spy for every
item whose goal (bench/goals.py) is missed, and prints the results as one
JSON line between BEGIN and END markers on the console.  Progress goes to
the console as "bench: ..." lines.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench import goals, pyspy  # noqa: E402
from bench.cputime import idle_cpu  # noqa: E402
from tests.guest.daemon_process import DaemonProcess  # noqa: E402

BEGIN, END = "@@BENCH-RESULTS-BEGIN@@", "@@BENCH-RESULTS-END@@"
# Memory first: a fresh daemon, whose heap no earlier item has grown (freed
# watchers leave pooled memory behind that later ones would reuse).
ITEMS = ("memory", "fanout", "roundtrip", "orchestrate", "mmap", "idle")
BUILD = os.path.join(REPO, "native", "build")
BENCH_BIN = os.path.join(BUILD, "bench")
REF_DEVNAME = "vmgenid-ref"
REF_NODE = f"/dev/{REF_DEVNAME}"
SETTLE_SECONDS = 3
PROGRAM_TIMEOUT = 900   # only rescues a hang

# Each timed program runs "runs" times, alternating with its references.
FULL = {"runs": 3, "fanout_n": (1, 100, 1000), "fanout_rounds": 3,
        "roundtrip_ops": 20000, "orchestrate_n": 1000,
        "orchestrate_rounds": 3, "mmap_loads": 10**8,
        "memory_n": (0, 1000, 10000), "idle_seconds": 30}
QUICK = {"runs": 2, "fanout_n": (1, 10, 100), "fanout_rounds": 2,
         "roundtrip_ops": 2000, "orchestrate_n": 100,
         "orchestrate_rounds": 2, "mmap_loads": 10**7,
         "memory_n": (0, 100, 1000), "idle_seconds": 5}


def suite_parser(doc: str, items, quick_help: str) -> argparse.ArgumentParser:
    """The options bench/run.py shares with this suite and passes on to it,
    --quick and --only ITEM; each adds its own after them."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--only", action="append", choices=items,
                   help="run only this item (repeatable)")
    return p


def say(text: str) -> None:
    print(f"bench: {text}", flush=True)


def run(argv: list[str], env=None) -> dict:
    """A program that prints one "name key=value ..." line, parsed."""
    out = subprocess.run(argv, check=True, capture_output=True, text=True,
                         env=env, timeout=PROGRAM_TIMEOUT).stdout.split()
    fields = dict(word.split("=", 1) for word in out[1:])
    return {k: (v if k in ("mode", "dev") else
                [float(x) for x in v.split(",")] if "," in v else float(v))
            for k, v in fields.items()}


def run_for_scale(argv: list[str]) -> dict | None:
    """A figure shown for scale only: a failure is reported, not fatal."""
    try:
        return run(argv)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        say(f"{' '.join(argv)} failed: {e}; {getattr(e, 'stderr', '')}")
        return None


def bench_bin(name: str) -> str:
    return os.path.join(BENCH_BIN, name)


class DefaultDaemon(DaemonProcess):
    """The daemon as installed: default options, default paths."""

    def __init__(self, workdir: str):
        super().__init__(workdir)
        self.args = [sys.executable, "-m", "cuse_vmgenid"]


class RefServer:
    def __init__(self):
        self.node = REF_NODE
        self.proc = subprocess.Popen(
            [bench_bin("vmgenid_ref_server"), REF_DEVNAME],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.node):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("vmgenid_ref_server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def merge(results: list[dict]) -> dict:
    """Runs of one program as one: rounds' lists ("all_X") joined, X their
    median; other figures the median over the runs."""
    merged = dict(results[0])
    for key, value in results[0].items():
        if isinstance(value, list):
            merged[key] = [x for r in results for x in r[key]]
            merged[key[len("all_"):]] = statistics.median(merged[key])
        elif isinstance(value, float) and key not in ("n", "ops") \
                and f"all_{key}" not in results[0]:
            merged[key] = statistics.median(r[key] for r in results)
    merged["rounds"] = sum(r["rounds"] for r in results)
    return merged


def alternate(argvs: dict[str, list[str]], times: int,
              for_scale: tuple[str, ...] = ()) -> dict[str, dict | None]:
    """Each program @times times, in turn (A B C A B C ...), so that a
    change in the host's load hits all alike; their runs merged."""
    runs: dict[str, list | None] = {name: [] for name in argvs}
    for _ in range(times):
        for name, argv in argvs.items():
            if runs[name] is None:
                continue
            result = run_for_scale(argv) if name in for_scale else run(argv)
            runs[name] = None if result is None else runs[name] + [result]
    return {name: results and merge(results)
            for name, results in runs.items()}


def fanout(cfg: dict) -> tuple[dict, object]:
    rows = []
    for n in cfg["fanout_n"]:
        k = ["-k", str(cfg["fanout_rounds"]), str(n)]
        got = alternate({"device": [bench_bin("fanout"), *k],
                         "c_cuse": [bench_bin("fanout"), "-d", REF_NODE, *k],
                         "eventfd": [bench_bin("fanout"), "-r", *k]},
                        cfg["runs"], for_scale=("eventfd",))
        device, c_cuse, reference = (got["device"], got["c_cuse"],
                                     got["eventfd"])
        rows.append({"n": n, **got,
                     "ratio": device["last_us"] / c_cuse["last_us"]})
        say(f"fanout N={n}: device {device['last_us']:.0f} us, C CUSE "
            f"{c_cuse['last_us']:.0f} us, eventfd "
            f"{reference and reference['last_us']} us")
    n = cfg["fanout_n"][-1]
    missed = rows[-1]["ratio"] > goals.FANOUT_RATIO
    return {"rows": rows}, (
        (lambda: run([bench_bin("fanout"), "-k", "3", str(n)]))
        if missed else None)


def roundtrip(cfg: dict) -> tuple[dict, object]:
    argv = [bench_bin("roundtrip"), "-n", str(cfg["roundtrip_ops"]),
            "-k", "1"]
    got = alternate({"device": argv + ["-d", "/dev/vmgenid"],
                     "reference": argv + ["-d", REF_NODE]}, cfg["runs"])
    device, reference = got["device"], got["reference"]
    ratios = {op: reference[f"{op}_ops_s"] / device[f"{op}_ops_s"]
              for op in ("read", "ack", "ioctl")}
    say(f"roundtrip: device {device}, reference {reference}")
    missed = max(ratios.values()) > goals.ROUNDTRIP_RATIO
    return {"device": device, "reference": reference, "ratio": ratios}, (
        (lambda: run(argv + ["-d", "/dev/vmgenid"]))
        if missed else None)


def orchestrate(cfg: dict) -> tuple[dict, object]:
    k = ["-k", str(cfg["orchestrate_rounds"]), str(cfg["orchestrate_n"])]
    got = alternate({"device": [bench_bin("orchestrate"), *k],
                     "c_cuse": [bench_bin("orchestrate"), "-d", REF_NODE,
                                *k],
                     "pipe": [bench_bin("orchestrate"), "-r", *k]},
                    cfg["runs"], for_scale=("pipe",))
    device, c_cuse, reference = got["device"], got["c_cuse"], got["pipe"]
    ratio = device["done_us"] / c_cuse["done_us"]
    say(f"orchestrate N={cfg['orchestrate_n']}: device "
        f"{device['done_us']:.0f} us, "
        f"C CUSE {c_cuse['done_us']:.0f} us, "
        f"pipe {reference and reference['done_us']} us")
    return {"n": cfg["orchestrate_n"], **got, "ratio": ratio}, (
        (lambda: run([bench_bin("orchestrate"), "-k", "3",
                      str(cfg["orchestrate_n"])]))
        if ratio > goals.ORCHESTRATE_RATIO else None)


def mmap(cfg: dict) -> tuple[dict, object]:
    env = dict(os.environ,
               LD_PRELOAD=os.path.join(BUILD, "libvmgenid-mmap.so"))
    out = subprocess.run([os.path.join(BUILD, "mmap_probe"), "-n",
                          str(cfg["mmap_loads"])], check=True, env=env,
                         capture_output=True, text=True).stdout
    values = {}
    for line in out.splitlines():
        if line.startswith("mapped counter:"):
            values["mapped_ns"] = float(line.split()[2])
        elif line.startswith("anonymous page:"):
            values["anon_ns"] = float(line.split()[2])
    values["loads"] = cfg["mmap_loads"]
    say(f"mmap: {values}")
    return values, None


def memory(cfg: dict, pid: int) -> tuple[dict, object]:
    counts = cfg["memory_n"]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(counts) + 64
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
    fds, rows = [], []
    try:
        for n in counts:
            while len(fds) < n:
                fds.append(os.open("/dev/vmgenid", os.O_RDWR | os.O_CLOEXEC))
            time.sleep(SETTLE_SECONDS)
            rows.append({"watchers": n, "rss_kib": rss_kib(pid)})
            say(f"memory: {n} watchers, daemon RSS {rows[-1]['rss_kib']} KiB")
    finally:
        for fd in fds:
            os.close(fd)
    base = rows[0]["rss_kib"]
    per = {row["watchers"]: (row["rss_kib"] - base) / row["watchers"]
           for row in rows[1:]}
    return {"rows": rows, "kib_per_watcher": per}, None


def idle(cfg: dict, pid: int) -> tuple[dict, object]:
    time.sleep(SETTLE_SECONDS)
    figures = idle_cpu(pid, cfg["idle_seconds"])
    say(f"idle: {figures['ran_pct']:.3f} % of one core over "
        f"{figures['seconds']:.1f} s ({figures['pct']:.3f} % by ticks), "
        f"{sum(figures['wakeups'].values())} wake-ups "
        f"({figures['wakeups']})")
    return figures, (
        (lambda: time.sleep(cfg["idle_seconds"]))
        if figures["ran_pct"] > goals.IDLE_CPU_PCT else None)


def main() -> int:
    p = suite_parser(__doc__, ITEMS, "small N, short runs (development)")
    p.add_argument("--no-profile", action="store_true",
                   help="skip the py-spy pass where a goal is missed")
    args = p.parse_args()
    cfg = QUICK if args.quick else FULL
    items = [i for i in ITEMS if not args.only or i in args.only]

    # The kernel's messages would cut through the result line.
    subprocess.run(["dmesg", "-n", "1"], check=False)
    results = {"kernel": platform.release(), "cpus": os.cpu_count(),
               "quick": args.quick, "config": cfg, "items": {},
               "profiles": {}}
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        daemon = DefaultDaemon(workdir).start()
        ref = RefServer()
        pid = daemon.proc.pid
        results["daemon_args"] = daemon.args[1:]
        try:
            for item in items:
                say(f"{item} ...")
                fn = globals()[item]
                started = time.monotonic()
                if item in ("memory", "idle"):
                    values, rerun = fn(cfg, pid)
                else:
                    values, rerun = fn(cfg)
                values["item_seconds"] = time.monotonic() - started
                results["items"][item] = values
                if rerun and not args.no_profile:
                    say(f"{item}: goal missed, profiling the daemon")
                    results["profiles"][item] = pyspy.summarize(
                        pyspy.record(pid, rerun))
        finally:
            ref.stop()
            rc = daemon.stop()
            results["daemon_exit"] = rc
            if rc:
                say("daemon log:\n" + daemon.log()[-4000:])
    print(BEGIN + json.dumps(results) + END, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
