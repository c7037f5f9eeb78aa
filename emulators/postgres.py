"""A throwaway PostgreSQL server for Meltano's system database.

Debian's ``postgresql`` binaries, ``initdb`` plus ``pg_ctl`` in a temporary directory, on a free loopback port, stopped and deleted
afterwards. The orchestrated tests use it; ``python -m emulators.postgres start --dir DIR`` starts
one in DIR and prints its ``MELTANO_DATABASE_URI``, ``stop --dir DIR`` stops and deletes it
(docs/operations.md "Scaling out"); without arguments it runs one until Ctrl-C.

PostgreSQL refuses to run as root, so under root the server runs as Debian's ``postgres`` user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATABASE = "meltano"
USER = "meltano"


class PostgresUnavailable(Exception):
    """No PostgreSQL server can be started here; the message says why, in one line."""


def _bin_dir() -> Path:
    """The newest Debian PostgreSQL ``bin`` directory (``/usr/lib/postgresql/N/bin``), else PATH's."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise PostgresUnavailable("PostgreSQL is not installed (apt-get install -y postgresql)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPostgres:
    """One PostgreSQL server in a temporary directory; ``uri`` is for ``MELTANO_DATABASE_URI``."""

    def __init__(self, directory: Path | None = None) -> None:
        """``directory``: the one of a server started earlier (to stop it); a new one gets its own."""
        self.bin = _bin_dir()
        self.port = 0
        self.dir: Path | None = directory
        self._as: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def uri(self) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [*self._as, str(self.bin / tool), *args], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            last = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
            raise PostgresUnavailable(f"{tool} failed: {last}")

    def start(self) -> LocalPostgres:
        self.dir = Path(tempfile.mkdtemp(prefix="meltano-pg-"))
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable("running as root and there is no 'postgres' user") from exc
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        data = self.dir / "data"
        try:
            self._run("initdb", "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
            for _attempt in range(3):  # another process may take the free port before the server does
                self.port = _free_port()
                options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
                try:
                    self._run(
                        "pg_ctl", "-D", str(data), "-o", options, "-l", str(self.dir / "log"), "-w", "start"
                    )
                    break
                except PostgresUnavailable:
                    continue
            else:
                raise PostgresUnavailable(f"pg_ctl could not start a server: see {self.dir / 'log'}")
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.dir is None:
            return
        data = self.dir / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*self._as, str(self.bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    """Run the command line: ``start --dir D``, ``stop --dir D``, or a server until Ctrl-C.

    ``start`` prints ``MELTANO_DATABASE_URI=…`` and leaves the server running; without arguments
    the server lives in a temporary directory until Ctrl-C.
    """
    try:
        if argv[:1] in (["start"], ["stop"]) and argv[1:2] == ["--dir"] and len(argv) == 3:
            # DIR only names the server: it lives in a temporary directory of its own, which the
            # server's user (``postgres`` under root) can reach wherever DIR is.
            handle = Path(argv[2]).resolve()
            if argv[0] == "stop":
                if (handle / "server").exists():
                    LocalPostgres(Path((handle / "server").read_text().strip())).stop()
                shutil.rmtree(handle, ignore_errors=True)
                return 0
            try:
                handle.mkdir()
            except FileExistsError:
                raise PostgresUnavailable(f"{handle} exists (a server there? stop --dir it first)") from None
            try:
                server = LocalPostgres().start()
            except BaseException:
                handle.rmdir()
                raise
            (handle / "server").write_text(f"{server.dir}\n")
            print(f"MELTANO_DATABASE_URI={server.uri}", flush=True)
            return 0
        if argv:
            print("usage: python -m emulators.postgres [start --dir DIR | stop --dir DIR]", file=sys.stderr)
            return 2
        server = LocalPostgres().start()
    except PostgresUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"MELTANO_DATABASE_URI={server.uri}", flush=True)
    stop = {"now": False}

    def _stop(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop["now"]:
            time.sleep(0.2)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
