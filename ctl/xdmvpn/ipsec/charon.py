"""A private strongSwan charon for one network namespace (the lab and the tests).

Debian's charon (5.9.8) reads the file named by $STRONGSWAN_CONF (default
/etc/strongswan.conf) and writes its pid file at the compiled-in /var/run/charon.pid
(/var/run is a link to /run), refusing to start while that file names a live process. So
two charons on one machine need two /run directories: each one runs in a private mount
namespace (`unshare --mount`) where a tmpfs is mounted on /run, with the machine's
/run/xdmvpn bound back into it. The pid file then lives in that private tmpfs, while the
vici socket (under /run/xdmvpn) stays visible to the daemon and to swanctl outside.

    charon = start_charon("lab-hub", "/run/xdmvpn/lab/charon-hub")
    ... xdmvpn run with [ipsec] vici-socket = charon.vici_uri ...
    charon.stop()                    # or stop_charon(workdir) from another process

Only the plugins IKE needs are loaded (`load_modular` off): kernel-netlink (IKE works
without ESP in the kernel; installing ESP SAs fails there), socket-default, vici, and the
crypto and certificate plugins for PSK and X.509 authentication.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import XdmvpnError

CHARON = "/usr/lib/ipsec/charon"
SOCKET_DIR = "/run/xdmvpn/charon"
PLUGINS = ("random nonce openssl aes sha1 sha2 hmac gcm kdf pem pkcs1 pkcs8 x509 pubkey "
           "constraints revocation kernel-netlink socket-default vici")

# Inside the private mount namespace: a tmpfs on /run (where the compiled-in pid file
# goes), the machine's /run/xdmvpn bound back into it, then charon itself.
_ENTER = """set -e
mount -n --make-rprivate /
mkdir -p "$1"
mount -n -t tmpfs -o mode=0755 xdmvpn-charon "$1"
mkdir -p "$1/xdmvpn"
mount -n --rbind /run/xdmvpn "$1/xdmvpn"
mount -n --move "$1" /run
exec "$2"
"""


def strongswan_conf(vici_socket: str, log_path: str, retransmit: bool = True) -> str:
    """strongswan.conf of a private charon: our plugins, our vici socket, a file log, no
    routes or virtual IPs in the namespace; quick retransmissions (a lab, not the WAN)."""
    timing = ("    retransmit_timeout = 1.0\n    retransmit_base = 1.4\n"
              "    retransmit_tries = 3\n") if retransmit else ""
    return f"""charon {{
    load_modular = no
    load = {PLUGINS}
    install_routes = no
    install_virtual_ip = no
    port = 500
    port_nat_t = 4500
{timing}    plugins {{
        vici {{
            socket = unix://{vici_socket}
        }}
    }}
    filelog {{
        charon {{
            path = {log_path}
            time_format = %b %e %T
            default = 1
            ike = 1
            cfg = 1
            append = yes
            flush_line = yes
        }}
    }}
    syslog {{
        daemon {{
            default = -1
        }}
    }}
}}
"""


@dataclass
class Charon:
    """A running private charon."""
    netns: str
    workdir: Path
    vici_socket: str
    pid: int
    proc: subprocess.Popen | None = None

    @property
    def vici_uri(self) -> str:
        return f"unix://{self.vici_socket}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "charon.log"

    def alive(self) -> bool:
        """charon itself runs (the nsenter wrapper around it may outlive it by a moment)."""
        if self.proc is not None and self.proc.poll() is not None:
            return False
        return _is_charon(self.pid)

    def stop(self, timeout: float = 10.0) -> None:
        _stop(self.pid, self.proc, timeout)
        _cleanup(self.workdir, self.vici_socket)


def default_socket(netns: str) -> str:
    return f"{SOCKET_DIR}/{netns}.vici"


def start_charon(netns: str, workdir: str | Path, vici_socket: str | None = None,
                 timeout: float = 10.0) -> Charon:
    """Start a charon inside network namespace `netns` (a name under /run/netns), with its
    configuration, log and pid file in `workdir`; returns once its vici socket accepts
    connections. Raises XdmvpnError (with the log's last line) when it does not come up."""
    if os.geteuid() != 0:
        raise XdmvpnError("starting charon needs root (namespaces, mounts, IKE ports)")
    if not os.access(CHARON, os.X_OK):
        raise XdmvpnError(f"{CHARON} not found: install strongswan-charon")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    vici_socket = vici_socket or default_socket(netns)
    if len(vici_socket.encode()) > 107:
        raise XdmvpnError(f"vici socket path too long for a Unix socket: {vici_socket}")
    if not vici_socket.startswith("/run/xdmvpn/"):
        raise XdmvpnError(f"the vici socket must be under /run/xdmvpn/ (shared with the "
                          f"namespace's private /run), got {vici_socket}")
    Path(vici_socket).parent.mkdir(parents=True, exist_ok=True)
    old = _read_pid(workdir)
    if old is not None and _is_charon(old):
        raise XdmvpnError(f"a charon already runs for {workdir} (pid {old})")
    try:
        os.unlink(vici_socket)
    except FileNotFoundError:
        pass
    log_path = workdir / "charon.log"
    conf = workdir / "strongswan.conf"
    conf.write_text(strongswan_conf(vici_socket, str(log_path)))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "STRONGSWAN_CONF": str(conf)}
    with open(workdir / "charon.out", "ab") as out:
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", "--", "unshare", "--mount", "--",
             "sh", "-c", _ENTER, "xdmvpn-charon", str(workdir / "run"), CHARON],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
    # nsenter (network namespace only), unshare (no --fork) and sh all exec: the pid is
    # charon's; _charon_child also copes with an nsenter that forks.
    charon = Charon(netns, workdir, vici_socket, proc.pid, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise XdmvpnError(f"charon in {netns} exited with status {proc.returncode}: "
                              f"{_last_line(workdir)}")
        if _accepts(vici_socket):
            pid = _charon_child(proc.pid) or proc.pid
            charon.pid = pid
            (workdir / "charon.pid").write_text(f"{pid}\n")
            return charon
        time.sleep(0.05)
    charon.stop()
    raise XdmvpnError(f"charon in {netns}: no vici socket {vici_socket} after {timeout:g} s: "
                      f"{_last_line(workdir)}")


def stop_charon(workdir: str | Path, vici_socket: str | None = None,
                timeout: float = 10.0) -> bool:
    """Stop the charon started with this workdir (from its pid file); False if none ran."""
    workdir = Path(workdir)
    pid = _read_pid(workdir)
    ran = pid is not None and _is_charon(pid)
    if ran:
        _stop(pid, None, timeout)
    if vici_socket is None and (workdir / "strongswan.conf").exists():
        text = (workdir / "strongswan.conf").read_text()
        marker = "socket = unix://"
        if marker in text:
            vici_socket = text.split(marker, 1)[1].split()[0]
    _cleanup(workdir, vici_socket)
    return ran


# -- helpers ------------------------------------------------------------------------------

def _accepts(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _charon_child(pid: int) -> int | None:
    """The charon process below `pid` (nsenter forks once to enter the namespace)."""
    if _is_charon(pid):
        return pid
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    for child in children:
        found = _charon_child(int(child))
        if found:
            return found
    return None


def _is_charon(pid: int) -> bool:
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return exe == CHARON and state not in ("Z", "X")


def _read_pid(workdir: Path) -> int | None:
    try:
        return int((workdir / "charon.pid").read_text())
    except (OSError, ValueError):
        return None


def _stop(pid: int, proc: subprocess.Popen | None, timeout: float) -> None:
    if _is_charon(pid):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_charon(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _is_charon(pid):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _cleanup(workdir: Path, vici_socket: str | None) -> None:
    for path in (workdir / "charon.pid", vici_socket):
        if path:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _last_line(workdir: Path) -> str:
    for name in ("charon.out", "charon.log"):
        try:
            lines = (workdir / name).read_text(errors="replace").strip().splitlines()
        except OSError:
            continue
        if lines:
            return lines[-1]
    return "(no output)"
