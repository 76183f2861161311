"""Open JupyterLab at the project root, also inside a container: make lab [LAB_IP=0.0.0.0] [LAB_PORT=8888].

JupyterLab stops as root with "Running as root is not recommended. Use --allow-root to bypass.", and in a
container one usually is root: --allow-root is passed then, and only then. A container's localhost is not
the host's, so there it listens on every interface (reach it through a published port, e.g.
`docker run -p 8888:8888 ...`) and opens no browser. The token is chosen here ($JUPYTER_TOKEN, else a random
one) and handed over in the environment, not on the command line where `ps` would show it; the address to
open, token included, is printed before JupyterLab starts. A busy port fails instead of moving silently to
the next one, so the printed address is the one JupyterLab listens on.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALL_INTERFACES = ("0.0.0.0", "::", "*")


def in_container() -> bool:
    return Path("/.dockerenv").exists() or Path("/run/.containerenv").exists() or bool(os.environ.get("container"))


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def lab_command(jupyter: str, root_dir: Path, ip: str, port: int, as_root: bool, browser: bool) -> list[str]:
    """The jupyter lab command line (the token travels in the environment: JUPYTER_TOKEN)."""
    cmd = [jupyter, "lab", f"--ServerApp.root_dir={root_dir}", f"--ip={ip}", f"--port={port}", "--ServerApp.port_retries=0"]
    if as_root:
        cmd.append("--allow-root")
    if not browser:
        cmd.append("--no-browser")
    return cmd


def addresses(ip: str, port: int, token: str) -> list[str]:
    """Where to open it: on all interfaces, this machine's loopback (or a port published to it) and its name."""
    hosts = ["127.0.0.1", socket.gethostname()] if ip in ALL_INTERFACES else [f"[{ip}]" if ":" in ip else ip]
    return [f"http://{host}:{port}/lab?token={token}" for host in hosts]


def main(argv=None) -> int:
    container = in_container()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ip", default="0.0.0.0" if container else "127.0.0.1",
                   help="address to listen on (default: 0.0.0.0 in a container, else 127.0.0.1)")
    p.add_argument("--port", type=int, default=8888)
    p.add_argument("--dry-run", action="store_true", help="print the command and the address, start nothing")
    args = p.parse_args(argv)
    if not 0 < args.port < 65536:
        print(f"error: LAB_PORT={args.port} is not a port number (1-65535)", file=sys.stderr)
        return 2
    root = is_root()
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24)
    jupyter = str(Path(sys.executable).parent / "jupyter")
    cmd = lab_command(jupyter, REPO, args.ip, args.port, as_root=root, browser=not (container or root))
    where = "in a container" if container else "on this machine"
    print(f"JupyterLab {where}{' as root (--allow-root)' if root else ''}, listening on {args.ip}:{args.port}; open:")
    print("\n".join(f"  {url}" for url in addresses(args.ip, args.port, token)), flush=True)
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    os.execve(jupyter, cmd, {**os.environ, "JUPYTER_TOKEN": token})
    return 1  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
