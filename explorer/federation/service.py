"""The site service over HTTPS (Tornado, which the dashboards already serve with).

=========================  ==========================================================
``POST /v1/analyses``      a request document (:func:`explorer.federation.analyses.parse_request`)
                           with ``Authorization: Bearer TOKEN``; 200 released, 202 queued
                           for review (with a ticket), 400/401/403/413/422 refused with why
``GET /v1/tickets/ID``     a queued result: 202 still pending, 200 released, 403 rejected
``GET /v1/health``         the site's name: for a coordinator's first contact
=========================  ==========================================================

Analyses run on one worker thread, so the service keeps answering (health, tickets) while one
runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from explorer.errors import ExplorerError
from explorer.federation.analyses import MAX_REQUEST_BYTES
from explorer.federation.site import Site


def make_app(site: Site):
    import tornado.web

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="federation")

    class Base(tornado.web.RequestHandler):
        def token(self) -> str | None:
            header = self.request.headers.get("Authorization", "")
            return header[7:].strip() if header.startswith("Bearer ") else None

        def reply(self, status: int, body: dict) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            self.set_header("Cache-Control", "no-store")
            self.finish(json.dumps(body, default=str))

        def write_error(self, status_code, **kwargs):
            self.reply(status_code, {"error": self._reason, "site": site.policy.site})

    class Analyses(Base):
        async def post(self):
            body = self.request.body
            if len(body) > MAX_REQUEST_BYTES:
                status, answer = site.handle(body, self.token())  # refused by size, and audited
            else:
                loop = asyncio.get_running_loop()
                status, answer = await loop.run_in_executor(executor, site.handle, body, self.token())
            self.reply(status, answer)

    class Tickets(Base):
        def get(self, ticket):
            self.reply(*site.ticket(ticket, self.token()))

    class Health(Base):
        def get(self):
            self.reply(200, {"site": site.policy.site, "status": "up"})

    return tornado.web.Application([(r"/v1/analyses", Analyses), (r"/v1/tickets/([A-Za-z0-9T-]+)", Tickets),
                                    (r"/v1/health", Health)])


def serve(site: Site, *, port: int, address: str = "0.0.0.0", certificate=None, key=None, ready=None) -> None:
    """Serve ``site`` until interrupted; HTTPS with ``certificate`` and ``key`` (PEM files)."""
    import tornado.httpserver
    import tornado.ioloop

    if certificate is None or key is None:
        raise ExplorerError("a site serves over TLS only: give --cert and --key (`explorer federation cert` makes a "
                            "self-signed pair for a test network; use your institution's certificate otherwise)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(certificate), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ExplorerError(f"cannot load the TLS certificate {certificate} and key {key}: {exc}") from None
    # a body over twice the request limit is cut off by the server itself; up to that, the handler
    # answers 413 with the reason
    server = tornado.httpserver.HTTPServer(make_app(site), ssl_options=context, max_body_size=2 * MAX_REQUEST_BYTES)
    server.listen(port, address=address)
    if ready is not None:
        ready()
    tornado.ioloop.IOLoop.current().start()


def self_signed_certificate(hosts: list[str], folder, *, days: int = 365) -> tuple[Path, Path]:
    """A self-signed certificate for ``hosts`` (names or IP addresses) and its key, as
    ``site.crt`` and ``site.key`` in ``folder``: for test networks; a coordinator trusts it by
    naming the certificate as the site's ``ca``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=days))
                   .add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    crt, pem = folder / "site.crt", folder / "site.key"
    crt.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    return crt, pem
