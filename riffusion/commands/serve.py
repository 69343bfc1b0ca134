"""``riffusion serve``: the web app's HTTP API and the playground at ``http://127.0.0.1:3013/``.

Heavy imports (torch, diffusers, FastAPI, uvicorn) happen inside :func:`run` only, so building the
command line stays quick.
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import sys
from typing import Any

from riffusion.defaults import DEFAULT_MODEL
from riffusion.errors import RiffusionError, install_hint

__all__ = ["add_parser", "run"]

DEFAULT_PORT = 3013  # the original riffusion server's port, where the web app looks for it


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port {text!r} must be an integer") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} must be in [0, 65535]")
    return value


def _queue(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"max queue {text!r} must be an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"max queue {value} must be >= 0")
    return value


def add_parser(subparsers: Any, **kwargs: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` sub-command to an ``argparse`` sub-parsers object.

    Args:
        subparsers: the object ``ArgumentParser.add_subparsers()`` returned.
        **kwargs: passed on to ``subparsers.add_parser`` (``parents``, ``formatter_class``).

    Returns:
        The sub-parser; its ``handler`` default is :func:`run`.
    """
    summary = "serve the web app's HTTP API and a playground in the browser"
    parser = subparsers.add_parser(
        "serve",
        help=summary,
        description=(
            "Serve POST /run_inference/ (the original riffusion web app's API) and a "
            "one-page playground at http://HOST:PORT/. Needs the 'server' extra."
        ),
        epilog="example:\n  riffusion serve --device cuda\n  # then open http://127.0.0.1:3013/",
        **kwargs,
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, metavar="ID|DIR", help="model id or diffusers folder"
    )
    parser.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda[:N]' or 'mps'")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine)"
    )
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--seed-image-dir",
        default=None,
        metavar="DIR",
        help="serve every PNG in DIR as a seed image, by file stem (og_beat.png -> og_beat)",
    )
    parser.add_argument(
        "--max-queue",
        type=_queue,
        default=8,
        metavar="N",
        help="requests waiting for the device beyond the running one; more get 503 (default: 8)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages from ORIGIN call the API (e.g. http://localhost:3000); repeatable; "
        "requests from any other origin but the server's own get 403",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="accept this name in the Host header (besides loopback names and IP addresses; "
        "e.g. behind a reverse proxy); repeatable",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        metavar="KEY|generate",
        help="require KEY on every request (Authorization: Bearer KEY, or open /?token=KEY); "
        "'generate' makes one and prints the link",
    )
    parser.add_argument("--local-files-only", action="store_true", help="never download the model")
    parser.set_defaults(handler=lambda args, console=None: run(args))
    return parser


def run(args: argparse.Namespace) -> int:
    """Load the model and serve until interrupted; returns the exit status."""
    try:
        import uvicorn

        from riffusion.server import create_app
    except ImportError as error:
        print(
            f"riffusion: error: serve needs the server extra: {install_hint('server')} ({error})",
            file=sys.stderr,
        )
        return 1
    except RiffusionError as error:  # riffusion.server names FastAPI's absence itself
        print(f"riffusion: error: {error}", file=sys.stderr)
        return 1
    from riffusion import Riffuser
    from riffusion.server.connections import serve_config
    from riffusion.server.security import is_loopback_host

    api_key = secrets.token_urlsafe(24) if args.api_key == "generate" else args.api_key
    allowed_hosts = list(args.allowed_host)
    if not _is_address(args.host) and not is_loopback_host(args.host):
        allowed_hosts.append(args.host)  # the name it was told to bind answers too
    print(f"riffusion: loading {args.model} ...", file=sys.stderr, flush=True)
    riffuser = Riffuser.from_pretrained(
        args.model, device=args.device, local_files_only=args.local_files_only
    )
    riffuser.pipeline.set_progress_bar_config(disable=True)
    app = create_app(
        riffuser,
        seed_image_dir=args.seed_image_dir,
        max_queue=args.max_queue,
        cors_origins=args.cors_origin,
        allowed_hosts=allowed_hosts,
        api_key=api_key,
    )
    address = f"http://{args.host}:{args.port}/" + (f"?token={api_key}" if api_key else "")
    print(
        f"riffusion: serving {args.model} on {riffuser.pipeline.device}: open {address}",
        file=sys.stderr,
        flush=True,
    )
    if api_key is None and not is_loopback_host(args.host):
        print(
            f"riffusion: warning: {args.host} is reachable from other machines and no "
            "--api-key is set: anyone who can reach it can generate and upload. Add "
            "--api-key generate (or --api-key KEY).",
            file=sys.stderr,
            flush=True,
        )
    uvicorn.Server(serve_config(app, host=args.host, port=args.port)).run()
    return 0


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
