"""One bench run per device at a time: a lock folder on the device, owned by stamp and age.

The lock is ``/data/local/tmp/coronetgan-bench.lock`` (``mkdir`` is atomic on every Android shell). It holds
``owner`` (``run=`` the run's folder name, ``host=``, ``pid=`` of the bench process, ``stale_after=``
seconds) and ``heartbeat`` (device time, written by bench at each step and by ``run_models.sh`` at every
repeat). A holder is live unless one of these says otherwise:

* it was taken on this host by a process that has ended (or by this process for a run it no longer runs);
* its heartbeat is older than its ``stale_after`` and none of its runner processes is alive on the device;
* it has no ``owner`` or no ``heartbeat`` (a run cut off between ``mkdir`` and writing them, or a cut-off
  ``rm -rf``) and the folder is older than :data:`HALF_WRITTEN_S`, with no runner alive.

A stale lock is taken over with a warning, in one device command that moves it away only if its ``owner`` run
and ``heartbeat`` are still the ones judged stale (test and ``mv`` in one shell command: a second run judging the
same stale lock finds the first's fresh lock instead, short of a race inside that command); a live one makes
the new run wait (``wait_s``) or refuse with :class:`bench.results.DeviceBusy`. Only the holder deletes run
folders, so a run never deletes a live one's.
"""
from __future__ import annotations

import logging
import os
import shlex
import socket
import time
from typing import Callable

from bench.results import DeviceBusy

log = logging.getLogger(__name__)

REMOTE_ROOT = "/data/local/tmp"
RUN_PREFIX = "coronetgan-bench-"
LOCK = f"{REMOTE_ROOT}/coronetgan-bench.lock"
POLL_S = 2.0  # s between tries while waiting for another run's lock (each try is one adb shell round trip)
HALF_WRITTEN_S = 60  # s; owner and heartbeat are written in the same shell command as the lock folder
_ACTIVE: set[str] = set()  # run folder names this process holds the lock for


def _fields(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        k, sep, v = line.strip().partition("=")
        if sep and k and k not in out:
            out[k] = v
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DeviceLock:
    """The device lock for the run folder ``run_dir`` (``/data/local/tmp/coronetgan-bench-…``).

    ``sh(cmd) -> (exit code, output)`` runs a device shell command. ``stale_after_s`` is how long this run may
    go without a heartbeat before another run may take its lock over (at least the longest runner call).
    """

    def __init__(self, sh: Callable[[str], tuple[int, str]], run_dir: str, serial: str, stale_after_s: float):
        self.sh, self.run_dir, self.serial = sh, run_dir, serial
        self.name = run_dir.rsplit("/", 1)[-1]
        self.stale_after_s = int(stale_after_s)
        self.held = False

    @property
    def heartbeat_file(self) -> str:
        """Device path of the heartbeat file (``run_models.sh --heartbeat``)."""
        return f"{LOCK}/heartbeat"

    def acquire(self, wait_s: float = 0.0) -> None:
        """Take the lock, taking over a stale one (logged), waiting up to ``wait_s`` s for a live one.

        Then removes every other ``coronetgan-bench-*`` folder (runs that can no longer be live). Raises
        :class:`DeviceBusy` when a live run still holds it after ``wait_s``.
        """
        deadline = time.monotonic() + max(0.0, wait_s)
        waited = False
        while True:
            holder = self._try()
            if holder is None:
                break
            why = self._stale(holder)
            if why:
                if self._take_over(holder):
                    log.warning("device %s: took over the lock of bench run %s (host %s, pid %s): %s", self.serial,
                                holder.get("run", "?"), holder.get("host", "?"), holder.get("pid", "?"), why)
                else:
                    log.info("device %s: the stale lock of bench run %s changed meanwhile (another run took it "
                             "first); judging it again", self.serial, holder.get("run", "?"))
                continue
            if time.monotonic() >= deadline:
                raise DeviceBusy(self._busy_message(holder))
            if not waited:
                log.info("device %s is busy with bench run %s; waiting up to %g s", self.serial,
                         holder.get("run", "?"), wait_s)
                waited = True
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        self.held = True
        _ACTIVE.add(self.name)
        mine = shlex.quote(self.run_dir)
        self.sh(f"for d in {REMOTE_ROOT}/{RUN_PREFIX}*; do [ -e \"$d\" ] || continue; "
                f"[ \"$d\" = {mine} ] || rm -rf \"$d\"; done")

    def _try(self) -> dict[str, str] | None:
        """One attempt: ``None`` when the lock was taken, else what the holder's files say (plus ``now``,
        ``live_pid`` and ``age_s``)."""
        owner = "\n".join([f"run={self.name}", f"host={socket.gethostname()}", f"pid={os.getpid()}",
                           f"stale_after={self.stale_after_s}"])
        L = shlex.quote(LOCK)
        cmd = (f"if mkdir {L} 2>/dev/null; then printf '%s\\n' {shlex.quote(owner)} > {L}/owner; "
               f"date +%s > {L}/heartbeat; echo lock=acquired; else echo lock=busy; cat {L}/owner 2>/dev/null; "
               f"echo heartbeat=$(cat {L}/heartbeat 2>/dev/null); echo now=$(date +%s); "
               f"echo lock_mtime=$(stat -c %Y {L} 2>/dev/null); "
               f"[ -f {L}/owner ] && echo has_owner=1; [ -f {L}/heartbeat ] && echo has_heartbeat=1; "
               f"R=$(sed -n 's/^run=//p' {L}/owner 2>/dev/null); "
               f"for f in {REMOTE_ROOT}/\"$R\"/out/*.pid; do [ -f \"$f\" ] && kill -0 \"$(cat \"$f\")\" 2>/dev/null "
               f"&& echo live_pid=$(cat \"$f\"); done; fi")
        _, out = self.sh(cmd)
        f = _fields(out)
        if f.get("lock") == "acquired":
            return None
        try:
            f["age_s"] = str(int(f.get("now", "0")) - int(f["heartbeat"]))
        except (KeyError, ValueError):
            f["age_s"] = ""
        try:
            f["folder_age_s"] = str(int(f.get("now", "0")) - int(f["lock_mtime"]))
        except (KeyError, ValueError):
            f["folder_age_s"] = ""
        return f

    def _take_over(self, h: dict[str, str]) -> bool:
        """Move the stale lock ``h`` away and delete it, in one device command, only if its owner run and
        heartbeat are still those of ``h``. Returns whether it was taken over (else another run was faster)."""
        L, q = shlex.quote(LOCK), shlex.quote(f"{LOCK}.stale-{self.name}")
        _, out = self.sh(f"if [ \"$(sed -n 's/^run=//p' {L}/owner 2>/dev/null)\" = {shlex.quote(h.get('run', ''))} ] "
                         f"&& [ \"$(cat {L}/heartbeat 2>/dev/null)\" = {shlex.quote(h.get('heartbeat', ''))} ] "
                         f"&& mv {L} {q} 2>/dev/null; then rm -rf {q}; echo takeover=done; fi")
        return _fields(out).get("takeover") == "done"

    def _stale(self, h: dict[str, str]) -> str | None:
        """Why the holder ``h`` cannot be live any more, or ``None`` if it may be."""
        try:
            pid = int(h.get("pid", ""))
        except ValueError:
            pid = None
        if h.get("host") == socket.gethostname() and pid is not None:
            if pid == os.getpid() and h.get("run") not in _ACTIVE:
                return "this process no longer runs it"
            if pid != os.getpid() and not _pid_alive(pid):
                return f"its bench process {pid} on this host has ended"
            if pid != os.getpid():
                return None  # its bench process on this host is alive
        if h.get("live_pid"):
            return None
        if not h.get("has_owner") or not h.get("has_heartbeat"):  # files absent, not a heartbeat being rewritten
            try:
                age = int(h.get("folder_age_s", ""))
            except ValueError:
                return None
            return (f"half-written lock (no owner or heartbeat) {age} s old and no runner alive"
                    if age > HALF_WRITTEN_S else None)
        try:
            age, limit = int(h["age_s"]), int(h.get("stale_after", ""))
        except (KeyError, ValueError):
            return None
        return f"no heartbeat for {age} s (limit {limit} s) and no runner alive" if age > limit else None

    def _busy_message(self, h: dict[str, str]) -> str:
        age = f"last active {h['age_s']} s ago" if h.get("age_s") else "just started"
        return (f"device {self.serial} is busy: bench run {h.get('run', '?')} (host {h.get('host', '?')}, pid "
                f"{h.get('pid', '?')}) holds {LOCK}, {age}; wait for it to finish or pass --wait-busy SECONDS (a "
                f"lock without heartbeat for {h.get('stale_after', '?')} s and no live runner is taken over)")

    def beat(self) -> None:
        """Write the heartbeat (device time)."""
        if self.held:
            self.sh(f"date +%s > {shlex.quote(self.heartbeat_file)}")

    def release(self) -> None:
        """Remove the lock if this run still owns it (a stale-lock takeover may have happened meanwhile)."""
        if not self.held:
            return
        L = shlex.quote(LOCK)
        try:
            self.sh(f"if grep -qx {shlex.quote('run=' + self.name)} {L}/owner 2>/dev/null; then rm -rf {L}; fi")
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Stop holding the lock without touching the device (it is gone): the next run takes it over."""
        self.held = False
        _ACTIVE.discard(self.name)
