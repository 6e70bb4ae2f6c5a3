"""``fedbroker pki``: run the federation's CA (init, sign, revoke) and make a member's key request (request).

The CA's operator runs init, sign and revoke in the CA directory; each member runs request on its own host, so
its private key never leaves it. See docs/deploy.md for the rotation and revocation procedures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryptography import x509

from federation.ca import CaFiles, init_ca, request_key, revoke, sign_request
from federation.errors import ConfigError


def add_arguments(pki: argparse.ArgumentParser) -> None:
    actions = pki.add_subparsers(dest="pki_command", required=True, metavar="ACTION")
    init = actions.add_parser("init", help="create the federation CA: ca.pem, ca.key (0600), crl.pem, index.json")
    init.add_argument("--dir", type=Path, required=True, help="the CA directory (must not hold a CA yet)")
    init.add_argument("--name", default="fedbroker federation CA", help="the CA's common name")
    init.add_argument("--days", type=int, default=3650, help="CA validity in days")

    request = actions.add_parser("request", help="on a member's host: make its key (0600) and a CSR for the CA")
    request.add_argument("id", help="the member id (the roster id; it becomes the certificate's SAN)")
    request.add_argument("--dir", type=Path, default=Path("."), help="where to write ID.key and ID.csr")

    sign = actions.add_parser("sign", help="at the CA: issue a certificate for a CSR (SAN = its id)")
    sign.add_argument("csr", type=Path)
    sign.add_argument("--ca-dir", type=Path, required=True)
    sign.add_argument("--days", type=int, default=365, help="validity in days (capped at the CA's)")
    sign.add_argument("--out", type=Path, help="certificate path (default: ID.pem beside the CSR)")

    revoke_cmd = actions.add_parser("revoke", help="at the CA: revoke a member's certificates and write crl.pem")
    revoke_cmd.add_argument("id")
    revoke_cmd.add_argument("--ca-dir", type=Path, required=True)
    revoke_cmd.add_argument("--serial", action="append", default=[], help="revoke only this serial (hex)")
    revoke_cmd.add_argument("--cert", type=Path, action="append", default=[], help="revoke this certificate file")


def run(args: argparse.Namespace) -> int:
    if args.pki_command == "init":
        files = init_ca(args.dir, args.name, days=args.days)
        print(f"CA in {files.directory}: give {files.cert.name} and {files.crl.name} to every host; keep ca.key here")
        return 0
    if args.pki_command == "request":
        key, csr = request_key(args.id, args.dir)
        print(f"{key} (keep it on this host) and {csr} (send it to the CA operator)")
        return 0
    if args.pki_command == "sign":
        files = CaFiles(args.ca_dir)
        try:
            csr_pem = args.csr.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{args.csr}: cannot read the CSR ({exc.strerror})") from exc
        member_id, cert_pem = sign_request(files, csr_pem, days=args.days, source=str(args.csr))
        out = args.out or args.csr.with_name(f"{member_id}.pem")
        out.write_bytes(cert_pem)
        serial = x509.load_pem_x509_certificate(cert_pem).serial_number
        print(f"{out}: certificate for {member_id}, serial {serial:x}; put it where the roster's cert for it points")
        return 0
    if args.pki_command == "revoke":
        files = CaFiles(args.ca_dir)
        serials = [_serial(text) for text in args.serial] + [_cert_serial(path) for path in args.cert]
        fresh = revoke(files, args.id, serials=serials or None)
        listed = ", ".join(f"{s:x}" for s in fresh) or "none new"
        print(f"revoked for {args.id}: {listed}; publish {files.crl} to every host (nodes re-read it on change)")
        return 0
    raise AssertionError(args.pki_command)


def _serial(text: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise ConfigError(f"serial {text!r} is not hexadecimal (as fedbroker pki sign prints it)") from None


def _cert_serial(path: Path) -> int:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes()).serial_number
    except (OSError, ValueError):
        raise ConfigError(f"{path}: not a readable PEM certificate") from None
