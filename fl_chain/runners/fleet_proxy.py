"""The public face of a SuperLink: Flower's Fleet API and nothing else.

Flower 1.42's SuperLink serves its Fleet API (what SuperNodes use), its Control API (`flwr run`, `flwr
ls`, `flwr stop`, ...) and its ServerAppIo API (the ServerApp's own channel) from one HTTP port: the
`--control-api-address` and `--fleet-api-address` options are deprecated and no longer separate them, and
the Control API's account authentication (OIDC) exists only in Flower Enterprise. Whoever reaches that port
could submit a run of their own app, which would then execute on the coordinator's machine. So on a
non-loopback address flchain runs the SuperLink on loopback and puts Debian's nginx in front of it: the
public address passes POSTs under /v1/fleet/ (normalized by nginx, so no `..` or encoded slash can leave
that prefix) and answers everything else with 403. TLS, when configured, ends at nginx; the hop to the
SuperLink stays on loopback."""

from __future__ import annotations

import shutil
from pathlib import Path

from fl_chain.errors import FlchainError
from fl_chain.runners.processes import Managed, check_certificates, spawn, wait_port

FLEET_PREFIX = "/v1/fleet/"
NGINX_HINT = "install Debian's nginx (`apt-get install nginx`, part of `make setup`)"

_CONF = """daemon off;
worker_processes 1;
pid "{dir}/nginx.pid";
error_log "{log}" notice;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    server_tokens off;
    underscores_in_headers on;
    client_max_body_size 0;
    client_body_temp_path "{dir}/client_body";
    proxy_temp_path "{dir}/proxy";
    fastcgi_temp_path "{dir}/fastcgi";
    uwsgi_temp_path "{dir}/uwsgi";
    scgi_temp_path "{dir}/scgi";
    server {{
        listen {listen};
{tls}
        # The only API nodes need. A proxy_pass with a URI sends the normalized path upstream.
        location {prefix} {{
            limit_except POST {{ deny all; }}
            proxy_pass http://127.0.0.1:{upstream}{prefix};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
        }}
        # Control API (runs, logs, nodes), ServerAppIo API, docs: not from the network.
        location / {{ return 403; }}
    }}
}}
"""


def nginx_binary() -> str:
    """The nginx executable, or a one-line error saying how to install it."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None
    )
    if found is None:
        raise FlchainError(
            "a SuperLink on a non-loopback address exposes only Flower's Fleet API, through nginx "
            f"(Flower 1.42 serves its Control API on the same port): nginx not found; {NGINX_HINT}"
        )
    return found


def proxy_config(
    host: str, port: int, upstream: int, workdir: Path, log: Path, certificates: Path | None
) -> str:
    """nginx's configuration: `host:port` passes Fleet API requests to 127.0.0.1:`upstream`, nothing else."""
    files = check_certificates(certificates) if certificates is not None else {}
    for name in (workdir, log, *files.values()):
        if any(c in str(name) for c in '"\\$\n'):  # every path is quoted in the configuration
            raise FlchainError(f"{name}: a path the Fleet proxy reads has a quote, $, \\ or newline")
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    tls = ""
    if files:
        listen += " ssl"
        pem, key = files["server.pem"].resolve(), files["server.key"].resolve()
        tls = f'        ssl_certificate "{pem}";\n        ssl_certificate_key "{key}";\n'
        tls += "        ssl_protocols TLSv1.2 TLSv1.3;"
    return _CONF.format(dir=workdir, log=log, listen=listen, tls=tls, prefix=FLEET_PREFIX, upstream=upstream)


def start_fleet_proxy(host: str, port: int, upstream: int, log: Path, certificates: Path | None) -> Managed:
    """nginx on `host:port` passing only the Fleet API to the SuperLink on 127.0.0.1:`upstream`; its
    configuration, pid file and temporary files live beside `log`."""
    binary = nginx_binary()
    workdir = log.parent / "fleet-proxy"
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(proxy_config(host, port, upstream, workdir, log.resolve(), certificates))
    cmd = [binary, "-e", str(log.resolve()), "-p", str(workdir), "-c", str(conf)]
    proxy = spawn("Fleet proxy (nginx)", cmd, log)
    try:
        wait_port("127.0.0.1" if host in ("0.0.0.0", "::") else host, port, proxy)
    except BaseException:
        proxy.stop()
        raise
    return proxy
