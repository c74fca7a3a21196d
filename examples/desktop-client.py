#!/usr/bin/python3
"""A desktop client of osbuildd, the way an image tool on a desktop talks to it: Python 3 with
Gio (PyGObject; Debian: python3-gi, gir1.2-glib-2.0), over the system bus, as the user.

    desktop-client.py list                      the store's objects (ListObjects)
    desktop-client.py jobs                      the jobs and their state (ListJobs)
    desktop-client.py build MANIFEST [--save DEST [--file NAME]]
                                                start a build, follow it through the signals
                                                (Ctrl-C cancels it), save the image
    desktop-client.py cancel JOB                cancel a job (Job.Cancel)
    desktop-client.py save OUTPUT_ID DEST [--file NAME]
                                                save an output: NAME, one file of it, through
                                                OpenOutput (the daemon opens it, we get a
                                                read-only fd), or without --file the whole
                                                output as a tar stream written by the daemon
                                                into a file we opened (ExportOutput)

--address BUS_ADDRESS talks to another bus than the system bus. `build` prints the job's
object path first. Exit codes: 0 done, 1 the build or call failed, 2 the daemon refused the
request, 3 not authorized, 130 cancelled. The interface: dbus/org.osbuild.Builder1.xml.
"""

import argparse
import json
import os
import signal
import sys

import gi

gi.require_version("Gio", "2.0")
gi.require_version("GLib", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

BUS_NAME = "org.osbuild.Builder1"
MANAGER_PATH = "/org/osbuild/Builder1"
MANAGER = "org.osbuild.Builder1"
JOB = "org.osbuild.Builder1.Job"
# Builds and exports can take long: no D-Bus call timeout for them.
NO_TIMEOUT = GLib.MAXINT


def connect(address):
    if address is None:
        return Gio.bus_get_sync(Gio.BusType.SYSTEM, None)
    flags = (
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
        | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
    )
    return Gio.DBusConnection.new_for_address_sync(address, flags, None, None)


def call(bus, path, interface, method, args=None, reply="()", timeout=-1):
    """A method call; returns the reply's values as a tuple."""
    result = bus.call_sync(
        BUS_NAME,
        path,
        interface,
        method,
        args,
        GLib.VariantType.new(reply),
        Gio.DBusCallFlags.NONE,
        timeout,
        None,
    )
    return result.unpack()


def name_owner(bus):
    """The daemon's unique name: signals are matched on it, so that no other connection can
    pose as the daemon (any connection may send us a unicast signal)."""
    reply = bus.call_sync(
        "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
        "GetNameOwner", GLib.Variant("(s)", (BUS_NAME,)), GLib.VariantType.new("(s)"),
        Gio.DBusCallFlags.NONE, -1, None,
    )
    return reply.unpack()[0]


def job_path(job):
    return job if job.startswith("/") else f"{MANAGER_PATH}/job/{job}"


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024


def cmd_list(bus, _args):
    (objects,) = call(bus, MANAGER_PATH, MANAGER, "ListObjects", reply="(aa{sv})")
    for o in objects:
        print(f"{o['id']}  {o['kind']:<6} {o['size']:>12}  {o['treesum']}")
    return 0


def cmd_jobs(bus, _args):
    (jobs,) = call(bus, MANAGER_PATH, MANAGER, "ListJobs", reply="(ao)")
    for path in jobs:
        props = call(
            bus, path, "org.freedesktop.DBus.Properties", "GetAll",
            GLib.Variant("(s)", (JOB,)), "(a{sv})",
        )[0]
        print(f"{path}  {props['State']:<10} {props['Progress'] * 100:3.0f}%  uid {props['OwnerUid']}")
    return 0


def cmd_cancel(bus, args):
    call(bus, job_path(args.job), JOB, "Cancel", timeout=60_000)
    return 0


def save(bus, output_id, dest, name):
    """Writes output `output_id` (its file `name`, or all of it as a tar) to `dest`."""
    if name is not None:
        reply, fds = bus.call_with_unix_fd_list_sync(
            BUS_NAME, MANAGER_PATH, MANAGER, "OpenOutput",
            GLib.Variant("(ss)", (output_id, name)), GLib.VariantType.new("(h)"),
            Gio.DBusCallFlags.NONE, -1, None, None,
        )
        fd = fds.get(reply.unpack()[0])
        with os.fdopen(fd, "rb") as src, open(dest, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        return
    with open(dest, "wb") as out:
        fds = Gio.UnixFDList.new_from_array([os.dup(out.fileno())])
        # The handle is an index into the fd list; the reply comes once the stream is written.
        bus.call_with_unix_fd_list_sync(
            BUS_NAME, MANAGER_PATH, MANAGER, "ExportOutput",
            GLib.Variant("(sh)", (output_id, 0)), None,
            Gio.DBusCallFlags.NONE, NO_TIMEOUT, fds, None,
        )


def cmd_save(bus, args):
    save(bus, args.output_id, args.dest, args.file)
    print(f"saved {args.dest}")
    return 0


class Follower:
    """Follows one job through the signals until JobFinished."""

    def __init__(self, bus, daemon):
        self.bus, self.job, self.loop = bus, None, GLib.MainLoop()
        self.success, self.cancelling, self.lost = False, False, False
        subscribe = lambda interface, member, handler: bus.signal_subscribe(  # noqa: E731
            daemon, interface, member, None, None, Gio.DBusSignalFlags.NONE, handler
        )
        # Subscribed before Build, so no signal of the job can be missed.
        subscribe(MANAGER, "StageStarted", self.on_stage_started)
        subscribe(MANAGER, "StageOutput", self.on_stage_output)
        subscribe(MANAGER, "StageFinished", self.on_stage_finished)
        subscribe(MANAGER, "JobFinished", self.on_job_finished)
        subscribe(JOB, "DownloadProgress", self.on_download)
        subscribe("org.freedesktop.DBus.Properties", "PropertiesChanged", self.on_properties)

    def mine(self, path, args):
        """Whether a signal (on `path`, or naming the job first) is about our job."""
        return self.job is not None and self.job in (path, args[0] if args else None)

    def on_stage_started(self, _bus, _sender, path, _iface, _member, params):
        # "pipeline": the v2 pipeline of the stage ("" for v1; absent from older osbuildd).
        job, stage_id, name, index, total, *pipeline = params.unpack()
        if self.mine(path, (job,)):
            name = ": ".join([*filter(None, pipeline), name])
            print(f"[{index + 1}/{total}] {name} {stage_id}", flush=True)

    def on_stage_output(self, _bus, _sender, path, _iface, _member, params):
        job, _stage_id, line = params.unpack()
        if self.mine(path, (job,)):
            print(f"  {line}", flush=True)

    def on_stage_finished(self, _bus, _sender, path, _iface, _member, params):
        job, _stage_id, name, success, seconds, *pipeline = params.unpack()
        if self.mine(path, (job,)):
            name = ": ".join([*filter(None, pipeline), name])
            print(f"{name} {'finished' if success else 'FAILED'} in {seconds:.1f}s", flush=True)

    def on_download(self, _bus, _sender, path, _iface, _member, params):
        source, done, total, files_done, files_total = params.unpack()
        if self.job == path:
            print(f"download {source}: {files_done}/{files_total} files, "
                  f"{human(done)} of {human(total)}", flush=True)

    def on_properties(self, _bus, _sender, path, _iface, _member, params):
        interface, changed, _invalidated = params.unpack()
        if self.job == path and interface == JOB and "Progress" in changed:
            print(f"progress {changed['Progress'] * 100:.0f}%", flush=True)

    def on_job_finished(self, _bus, _sender, path, _iface, _member, params):
        job, success, _summary = params.unpack()
        if self.mine(path, (job,)):
            self.success = success
            self.loop.quit()

    def on_closed(self, _bus, _remote_peer_vanished, _error):
        self.lost = True
        self.loop.quit()

    def cancel(self):
        """Ctrl-C: cancel the job (once); JobFinished ends the loop."""
        if self.job and not self.cancelling:
            self.cancelling = True
            print("cancelling...", flush=True)
            self.bus.call(BUS_NAME, self.job, JOB, "Cancel", None, None,
                          Gio.DBusCallFlags.NONE, 60_000, None, None, None)
        return GLib.SOURCE_CONTINUE


def cmd_build(bus, args):
    with open(args.manifest, encoding="utf-8") as f:
        manifest = f.read()
    follower = Follower(bus, name_owner(bus))
    (follower.job,) = call(bus, MANAGER_PATH, MANAGER, "Build",
                           GLib.Variant("(sa{sv})", (manifest, {})), "(o)")
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, follower.cancel)
    print(f"job {follower.job}", flush=True)
    bus.connect("closed", follower.on_closed)
    follower.loop.run()
    if follower.lost:
        print("lost the bus before the job finished", file=sys.stderr)
        return 1
    (result,) = call(bus, follower.job, JOB, "GetResult", reply="(s)")
    result = json.loads(result)
    if not follower.success:
        if result.get("error") == "cancelled":
            print("cancelled", file=sys.stderr)
            return 130
        print(f"build failed: {result.get('error') or 'a stage failed'}", file=sys.stderr)
        return 1
    print(f"output id: {result.get('output_id')}")
    if args.save:
        if not result.get("output_id"):
            print("the manifest has no assembler: there is no image to save", file=sys.stderr)
            return 1
        save(bus, result["output_id"], args.save, args.file)
        print(f"saved {args.save}")
    return 0


def exit_code(error):
    """The exit code for a D-Bus error reply."""
    name = Gio.DBusError.get_remote_error(error) or ""
    if name in ("org.freedesktop.DBus.Error.AccessDenied",
                "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"):
        return 3
    if name.startswith("org.osbuild.Builder1.Error.") and not name.endswith(".Failed"):
        return 2
    return 1


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", help="bus address (default: the system bus)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the store's objects")
    sub.add_parser("jobs", help="the jobs")
    p = sub.add_parser("build", help="build a manifest file, following its progress")
    p.add_argument("manifest")
    p.add_argument("--save", metavar="DEST", help="save the output here when the build succeeds")
    p.add_argument("--file", metavar="NAME", help="save only this file of the output")
    p = sub.add_parser("cancel", help="cancel a job (its number or object path)")
    p.add_argument("job")
    p = sub.add_parser("save", help="save an output")
    p.add_argument("output_id")
    p.add_argument("dest")
    p.add_argument("--file", metavar="NAME", help="save only this file of the output")
    args = parser.parse_args(argv)
    commands = {"list": cmd_list, "jobs": cmd_jobs, "build": cmd_build,
                "cancel": cmd_cancel, "save": cmd_save}
    try:
        return commands[args.command](connect(args.address), args)
    except GLib.Error as e:
        code = exit_code(e)
        Gio.DBusError.strip_remote_error(e)
        print(f"desktop-client: {e.message}", file=sys.stderr)
        return code
    except OSError as e:
        print(f"desktop-client: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
