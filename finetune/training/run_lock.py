"""One writer per run directory: ``finetune_run.lock`` names the run that holds it.

Two runs writing one output_dir overwrite each other's checkpoints, weights and results, and the last
writer wins without either noticing. :class:`RunLock` is taken before a run writes anything: the lock
file is created with ``O_CREAT | O_EXCL`` (atomic: of two runs starting together exactly one creates it)
and holds the owner's host, pid and start time; it is removed when the run ends, also on an error.

A lock that is there already is judged by its owner:

- same host, process alive: the directory is in use; the error names the pid and since when.
- same host, process gone (or the pid now belongs to another process, or the machine restarted since):
  stale, left by a killed run; it is reported and taken over.
- another host: it cannot be checked from here, so it is never taken over; the error says which file to
  delete if that run is really gone.

Under ``accelerate launch`` only the main process (``training_args.should_save``) takes the lock; the
other processes of the same run pass ``enabled=False`` and never look at it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from finetune.config import ConfigError
from finetune.outputs import RUN_LOCK

logger = logging.getLogger(__name__)

_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
_READ_RETRIES = 40  # a lock just created with O_EXCL may be empty for a moment: 40 x 50 ms to see its owner


class RunDirectoryInUse(FileExistsError):
    """Another run (or evaluation) holds the directory's lock; the message names it."""


@dataclass(frozen=True)
class LockOwner:
    """What the lock file says about the run holding it."""

    host: str
    pid: int
    started_at: str                   # ISO 8601, UTC
    purpose: str = "run"              # "training run", "evaluation"
    machine_id: str | None = None     # /etc/machine-id: tells two hosts of one name apart
    boot_id: str | None = None        # changes when the machine restarts
    process_start: int | None = None  # the pid's start time (clock ticks after boot): tells a reused pid
    token: str = ""                   # this lock's own id, so a run removes only its own lock

    def describe(self) -> str:
        return f"a {self.purpose}, pid {self.pid} on host {self.host}, started {self.started_at}"


def _read_first_line(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from its third field (the state) on; None where there is no /proc."""
    stat = _read_first_line(f"/proc/{pid}/stat")
    if not stat or ")" not in stat:
        return None
    return stat.rsplit(")", 1)[1].split()


def _process_start(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks after boot (Linux /proc); None where unknown."""
    fields = _stat(pid)
    try:
        return int(fields[19]) if fields else None  # field 22 of stat
    except (IndexError, ValueError):
        return None


def current_owner(purpose: str) -> LockOwner:
    return LockOwner(host=socket.gethostname(), pid=os.getpid(),
                     started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), purpose=purpose,
                     machine_id=_read_first_line("/etc/machine-id"),
                     boot_id=_read_first_line("/proc/sys/kernel/random/boot_id"),
                     process_start=_process_start(os.getpid()), token=uuid.uuid4().hex)


def _same_host(owner: LockOwner, me: LockOwner) -> bool:
    if owner.host != me.host:
        return False
    return not (owner.machine_id and me.machine_id and owner.machine_id != me.machine_id)


def _gone_because(owner: LockOwner, me: LockOwner) -> str | None:
    """Why the owner (on this host) no longer runs, or None while it does."""
    if owner.boot_id and me.boot_id and owner.boot_id != me.boot_id:
        return "this machine has restarted since"
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return f"no process {owner.pid} runs on this host"
    except PermissionError:
        pass  # it runs, as another user
    fields = _stat(owner.pid)
    if fields and fields[0] in ("Z", "X"):
        return f"process {owner.pid} has exited"  # a zombie: killed, not yet reaped by its parent
    if owner.process_start is not None:
        now = _process_start(owner.pid)
        if now is not None and now != owner.process_start:
            return f"pid {owner.pid} now belongs to another process"
    return None


def _unwritable(directory: Path, error: OSError) -> ConfigError:
    return ConfigError(f"output_dir {directory} cannot be written to ({error.strerror or error}); choose a folder "
                       "you can write to, or fix its permissions (nothing was written)")


class RunLock:
    """Holds ``<directory>/finetune_run.lock`` from :meth:`acquire` (or ``with``) to :meth:`release`.

    ``enabled=False`` (a non-main process of a multi-process run) makes both no-ops. The directory is
    created if needed, and removed again on release if it was created here and is still empty.
    """

    def __init__(self, directory: str | os.PathLike, *, purpose: str = "training run", enabled: bool = True) -> None:
        self.directory = Path(directory)
        self.path = self.directory / RUN_LOCK
        self.purpose = purpose
        self.enabled = enabled
        self.owner: LockOwner | None = None
        self._created_directory = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # ------------------------------------------------------------------------------ taking it

    def acquire(self) -> None:
        if not self.enabled or self.owner is not None:
            return
        self._make_directory()
        me = current_owner(self.purpose)
        for _ in range(5):  # each round: create it, or judge the one there (a stale one is moved away)
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._judge_existing(me)
                continue
            except OSError as error:
                if error.errno in _UNWRITABLE:
                    raise _unwritable(self.directory, error) from None
                raise
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(json.dumps(asdict(me), indent=2) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
            except BaseException:
                self.path.unlink(missing_ok=True)
                raise
            self.owner = me
            logger.debug("took %s", self.path)
            return
        raise RunDirectoryInUse(f"{self.directory}: other runs keep taking {RUN_LOCK} while this one starts; "
                                "is something starting runs on this output_dir in a loop?")

    def _make_directory(self) -> None:
        if self.directory.is_dir():
            return
        try:
            self.directory.mkdir(parents=True)
            self._created_directory = True
        except FileExistsError:
            if not self.directory.is_dir():
                raise ConfigError(f"output_dir {self.directory} exists and is not a folder") from None
        except OSError as error:
            if error.errno in _UNWRITABLE:
                raise _unwritable(self.directory, error) from None
            raise

    def _read(self, path: Path) -> LockOwner | None | str:
        """The owner a lock file names; None if it vanished; its text if it cannot be read as a lock."""
        text = ""
        for _ in range(_READ_RETRIES):
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
            try:
                values = json.loads(text)
                return LockOwner(**{k: v for k, v in values.items() if k in LockOwner.__dataclass_fields__})
            except (ValueError, TypeError, AttributeError):
                time.sleep(0.05)  # created but not written yet, or damaged
        return text

    def _judge_existing(self, me: LockOwner) -> None:
        """Raise if the lock there is held; move it away if it is stale (then the caller tries again)."""
        owner = self._read(self.path)
        if owner is None:
            return  # released meanwhile
        if isinstance(owner, str):
            raise RunDirectoryInUse(
                f"{self.directory} holds a lock file that cannot be read ({self.path}); another run may be "
                f"starting there. If no run uses this output_dir, delete {self.path} and start again.")
        if not _same_host(owner, me):
            raise RunDirectoryInUse(
                f"{self.directory} is in use by {owner.describe()}. That host cannot be checked from here, so "
                f"the lock is never taken over; if that run is really gone, delete {self.path} and start again.")
        why = _gone_because(owner, me)
        if why is None:
            raise RunDirectoryInUse(
                f"{self.directory} is in use by {owner.describe()} (this machine, still running). Two runs "
                "writing one output_dir overwrite each other's checkpoints and results: wait for it to end, "
                "stop it, or choose another output_dir.")
        # stale: move it to a name of our own, then check it is still the lock we judged (another run
        # may have taken it over and written its own lock in between)
        aside = self.path.with_name(f".{RUN_LOCK}.stale-{me.token}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = self._read(aside)
        if moved != owner:
            with contextlib.suppress(OSError):
                os.link(aside, self.path)  # put the newer lock back (unless yet another one is there)
            aside.unlink(missing_ok=True)
            raise RunDirectoryInUse(f"{self.directory}: another run took it over while this one started")
        aside.unlink(missing_ok=True)
        logger.warning("%s: taking over a stale lock left by %s: %s (the run was killed or crashed)",
                       self.directory, owner.describe(), why)

    # ------------------------------------------------------------------------------ letting it go

    def release(self) -> None:
        if self.owner is None:
            return
        owner, self.owner = self.owner, None
        held = self._read(self.path) if self.path.exists() else None
        if isinstance(held, LockOwner) and held.token == owner.token:
            self.path.unlink(missing_ok=True)
        elif held is not None:
            logger.warning("%s no longer holds this run's lock (someone replaced it): left as it is", self.path)
        if self._created_directory:
            with contextlib.suppress(OSError):
                self.directory.rmdir()  # only if empty: nothing was written
