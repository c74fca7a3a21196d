#!/usr/bin/env python3
"""Soak of osbuildd (run by bench/soak.sh, as root): many builds of varied manifests, PARALLEL
at a time, a third cancelled at random moments, the daemon SIGKILLed every 20-30 finished
builds and started again. After every kill, and at the end: no sandbox process, no mount and no
loop device of the store left, tmp/ empty once the daemon is back, `osbuild --verify` clean.
At the end every output a build made is compared with the same manifest built alone in a
fresh store. Prints the figures; exits 1 on any leak, corruption or difference.

Usage: soak.py BIN_DIR LIBDIR WORKDIR [BUILDS] [PARALLEL] [SEED]
"""
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tarfile
import time

BIN, LIBDIR, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
BUILDS = int(sys.argv[4]) if len(sys.argv) > 4 else 200
PARALLEL = int(sys.argv[5]) if len(sys.argv) > 5 else 8
rng = random.Random(int(sys.argv[6]) if len(sys.argv) > 6 else 1)
STORE = os.path.join(WORK, "store")
ADDRESS = f"unix:path={WORK}/bus"
DEADLINE = 20  # seconds any single wait may take


def manifests():
    """Twelve manifests: a shared first stage, six variants, some slow, some failing."""
    out = []
    for i in range(12):
        stages = [{"name": "org.osbuild.test.work", "options": {"name": "base", "files": 50}}]
        stages.append({"name": "org.osbuild.test.work",
                       "options": {"name": f"v{i % 6}", "ms": 300 * (i % 4),
                                   "fail": i % 5 == 4}})
        if i % 3 == 0:
            stages.append({"name": "org.osbuild.test.work", "options": {"name": f"tail{i}"}})
        out.append({"pipeline": {"stages": stages, "assembler": {
            "name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}}})
    return out


def ctl(*args, check=True):
    r = subprocess.run([f"{BIN}/osbuildctl", "--address", ADDRESS, *args],
                       capture_output=True, text=True, timeout=DEADLINE)
    if check and r.returncode != 0:
        raise RuntimeError(f"osbuildctl {' '.join(args)}: {r.returncode} {r.stderr}")
    return r


def job_prop(path, name):
    r = subprocess.run(["busctl", f"--address={ADDRESS}", "get-property", "org.osbuild.Builder1",
                        path, "org.osbuild.Builder1.Job", name],
                       capture_output=True, text=True, timeout=DEADLINE)
    if r.returncode != 0:
        return None  # forgotten, or the daemon is gone
    return r.stdout.split(" ", 1)[1].strip().strip('"')


class Daemon:
    def __init__(self):
        self.proc = None
        self.rss_first = None

    def start(self):
        log = open(os.path.join(WORK, "osbuildd.log"), "a")
        self.proc = subprocess.Popen(
            [f"{BIN}/osbuildd", "--address", ADDRESS, "--store", STORE, "--libdir", LIBDIR,
             "--max-jobs", "4", "--max-jobs-per-user", str(PARALLEL)],
            stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
        end = time.time() + DEADLINE
        while time.time() < end:
            r = subprocess.run(["busctl", f"--address={ADDRESS}", "call", "org.freedesktop.DBus",
                                "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner",
                                "s", "org.osbuild.Builder1"], capture_output=True, text=True)
            if "true" in r.stdout:
                return
            time.sleep(0.05)
        raise RuntimeError("osbuildd did not start")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=DEADLINE)


def leftovers():
    """What the killed daemon may have left: sandbox processes, mounts, loop devices."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/mountinfo") as f:
                mounts = f.read()
        except OSError:
            continue
        # A sandbox of this soak, even orphaned: it sees this soak's store among its mounts.
        if "osbuildd" not in cmd and STORE in mounts:
            found.append(f"process {pid}: {cmd.strip()[:200]}")
    with open("/proc/self/mountinfo") as f:
        found += [f"mount: {l.split()[4]}" for l in f if STORE in l]
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    found += [f"loop: {l}" for l in loops.splitlines() if STORE in l]
    return found


def wait_gone():
    end = time.time() + DEADLINE
    while (left := leftovers()) and time.time() < end:
        time.sleep(0.1)
    return left


def verify():
    r = subprocess.run([f"{BIN}/osbuild", "--store", STORE, "--verify"],
                       capture_output=True, text=True, timeout=600)
    return r.returncode, r.stdout.strip().splitlines()[-1:]


def output_listing(store, output_id):
    """Members of an output's tree.tar: names, modes, owners, sizes, contents (a tree built at
    another time has other mtimes)."""
    path = os.path.join(store, "refs", output_id, "tree.tar")
    out = []
    with tarfile.open(path) as tar:
        for member in tar:
            data = tar.extractfile(member).read() if member.isfile() else b""
            out.append((member.name, member.mode, member.uid, member.gid, member.size,
                        hashlib.sha256(data).hexdigest()))
    return sorted(out)


def main():
    pool = manifests()
    paths = []
    for i, m in enumerate(pool):
        p = os.path.join(WORK, f"m{i}.json")
        with open(p, "w") as f:
            json.dump(m, f)
        paths.append(p)
    daemon = Daemon()
    daemon.start()
    stats = {"submitted": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "lost_to_kills": 0,
             "cancels_sent": 0, "kills": 0, "leaks": 0, "corrupt": 0, "differences": 0}
    built = {}  # manifest index -> output id of a succeeded build
    running = {}  # job path -> (manifest index, cancel at or None)
    next_kill = rng.randint(20, 30)
    finished_since_kill = 0
    rss = []
    while stats["submitted"] < BUILDS or running:
        while len(running) < PARALLEL and stats["submitted"] < BUILDS:
            i = rng.randrange(len(pool))
            r = ctl("build", paths[i], "--detach")
            cancel_at = time.time() + rng.uniform(0, 1.5) if rng.random() < 1 / 3 else None
            running[r.stdout.strip()] = (i, cancel_at)
            stats["submitted"] += 1
        time.sleep(0.05)
        for path, (i, cancel_at) in list(running.items()):
            state = job_prop(path, "State")
            if cancel_at and time.time() >= cancel_at and state in ("queued", "running"):
                ctl("cancel", path, check=False)
                stats["cancels_sent"] += 1
                running[path] = (i, None)
                continue
            if state in ("succeeded", "failed", "cancelled"):
                stats[state] += 1
                if state == "succeeded":
                    built[i] = job_prop(path, "OutputId")
                del running[path]
                finished_since_kill += 1
        if finished_since_kill >= next_kill:
            rss.append(daemon.rss_kib())
            daemon.kill()
            stats["kills"] += 1
            stats["lost_to_kills"] += len(running)
            running.clear()
            left = wait_gone()
            stats["leaks"] += len(left)
            for l in left:
                print("LEAK after kill:", l)
            code, last = verify()
            if code != 0:
                stats["corrupt"] += 1
                print("VERIFY after kill:", last)
            daemon.start()
            tmp = os.listdir(os.path.join(STORE, "tmp"))
            if tmp:
                stats["leaks"] += len(tmp)
                print("LEAK in tmp/ after restart:", tmp)
            finished_since_kill, next_kill = 0, rng.randint(20, 30)
    rss.append(daemon.rss_kib())
    daemon.kill()
    left = wait_gone()
    stats["leaks"] += len(left)
    code, last = verify()
    stats["corrupt"] += code != 0
    # Every output the soak made, against the same manifest built alone in a fresh store.
    alone_store = os.path.join(WORK, "alone")
    for i, output_id in sorted(built.items()):
        r = subprocess.run([f"{BIN}/osbuild", "--store", alone_store, "--libdir", LIBDIR,
                            paths[i]], capture_output=True, text=True)
        if r.returncode != 0:
            stats["differences"] += 1
            print(f"FAILED ALONE: manifest {i}: {r.stdout[-500:]} {r.stderr[-500:]}")
            continue
        soaked = output_listing(STORE, output_id)
        alone = output_listing(alone_store, output_id)
        if soaked != alone:
            stats["differences"] += 1
            diff = sorted(set(soaked) ^ set(alone))[:6]
            print(f"DIFFERENT: manifest {i} (output {output_id}): {diff}")
    stats["outputs_compared"] = len(built)
    stats["rss_kib_per_daemon_life"] = rss
    print(json.dumps(stats, indent=1))
    print("verify:", last)
    bad = stats["leaks"] or stats["corrupt"] or stats["differences"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
