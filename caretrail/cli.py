"""`caretrail`: run and operate the system from the command line."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from shared.auth import ROLES, mint_token

if TYPE_CHECKING:
    from caretrail.kafka_cluster import KafkaCluster
    from caretrail.postgres_server import Cluster
from shared.config import LOCAL_MODE_ENV, Settings, public_url, service_address
from shared.kafka_access import act_as

ROOT = Path(__file__).resolve().parent.parent


def _kafka(args: argparse.Namespace) -> int:
    from caretrail.kafka_cluster import KafkaCluster
    from caretrail.kafka_server import LocalBroker

    if args.action == "credentials":
        return _kafka_credentials(args)
    if args.nodes > 1:
        cluster = KafkaCluster(Path(args.data_dir), nodes=args.nodes, base_port=args.port)
        return _kafka_cluster(args, cluster)
    broker = LocalBroker(data_dir=Path(args.data_dir), port=args.port)
    if args.action == "start":
        started = time.monotonic()
        broker.start()
        print(
            f"kafka is up at {broker.bootstrap} ({time.monotonic() - started:.1f}s); "
            f"log: {broker.log_file}"
        )
    elif args.action == "run":
        broker.run()  # never returns: this process becomes the broker
    elif args.action == "topics":
        from shared.broker import ensure_topics

        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
        created = ensure_topics(bootstrap, replication_factor=args.replication_factor)
        print(f"created: {', '.join(created) or 'none (all present)'}")
        _grant_acls_if_authenticated(bootstrap)
    elif args.action == "stop":
        print("kafka stopped" if broker.stop() else "kafka was not running")
    else:
        pid = broker.running_pid()
        print(f"kafka is running (pid {pid}) at {broker.bootstrap}" if pid else "kafka is stopped")
        return 0 if pid else 3
    return 0


def _kafka_cluster(args: argparse.Namespace, cluster: KafkaCluster) -> int:
    """`caretrail kafka ACTION --nodes N`: the same actions on a cluster of N nodes."""
    if args.action == "run":
        print("kafka run: one node in the foreground; --nodes is for start", file=sys.stderr)
        return 2
    if args.action == "start":
        started = time.monotonic()
        cluster.start()
        print(
            f"kafka cluster of {args.nodes} is up ({time.monotonic() - started:.1f}s); "
            f"KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap}; logs: {args.data_dir}/node-*/broker.log"
        )
    elif args.action == "topics":
        from shared.broker import ensure_topics

        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", cluster.bootstrap)
        created = ensure_topics(bootstrap, replication_factor=min(3, args.nodes))
        print(f"created: {', '.join(created) or 'none (all present)'}")
        _grant_acls_if_authenticated(bootstrap)
    elif args.action == "stop":
        print("kafka stopped" if cluster.stop() else "kafka was not running")
    else:
        pids = cluster.running()
        for node, pid in pids.items():
            print(f"node {node}: " + (f"running (pid {pid})" if pid else "stopped"))
        return 0 if all(pids.values()) else 3
    return 0


def _grant_acls_if_authenticated(bootstrap: str) -> None:
    """`kafka topics` as the admin also grants each service its ACLs (a broker without
    authentication has no authorizer to give them to)."""
    from caretrail.kafka_credentials import grant_service_acls
    from shared.kafka_access import client_options

    if client_options():
        grant_service_acls(bootstrap)
        print("granted: each service's ACLs")


def _kafka_credentials(args: argparse.Namespace) -> int:
    """`caretrail kafka credentials --dir DIR`: a broker's credentials for containers."""
    from caretrail.kafka_credentials import LocalCredentials

    directory = args.dir or os.environ.get("CARETRAIL_KAFKA_CREDENTIALS_DIR")
    if not directory:
        print("kafka credentials: --dir or CARETRAIL_KAFKA_CREDENTIALS_DIR", file=sys.stderr)
        return 2
    hosts = tuple(h for h in args.hosts.split(",") if h) if args.hosts else None
    made = LocalCredentials(Path(directory).resolve(), **({"hosts": hosts} if hosts else {}))
    made.provision_for_containers()
    print(f"kafka credentials: {made.directory} (what was missing is made; nothing is replaced)")
    return 0


def _token(args: argparse.Namespace) -> int:
    settings = Settings.from_env("cli")
    token = mint_token(
        settings,
        role=args.role,
        sub=args.sub,
        org=args.org,
        patient=args.patient,
        scope=args.scope,
        ttl_seconds=args.ttl,
    )
    print(f"# {args.role} {args.sub}" + (f" of {args.org}" if args.org else ""))
    print(token)
    return 0


SERVICES = ("records", "consent", "audit", "notify")


def _service_module(service: str, name: str) -> object | None:
    try:
        return importlib.import_module(f"services.{service}.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"services.{service}.{name}" or err.name == f"services.{service}":
            return None
        raise


def _migrate(args: argparse.Namespace) -> int:
    unknown = set(args.services) - set(SERVICES)
    if unknown:
        print(f"unknown service(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    migrate(args.services or SERVICES)
    return 0


def migrate(services: tuple[str, ...] | list[str]) -> None:
    from shared.migrations import upgrade

    for service in services:
        migrations = ROOT / "services" / service / "migrations"
        if not migrations.exists():
            continue
        settings = Settings.from_env(service)
        upgrade(migrations, settings.database_url)
        print(f"{service}: database at head ({settings.database_url.split('@')[-1]})")


def _share_metrics(service: str) -> None:
    """Make this process write its metrics where the service's web app reads them: a worker
    serves no `/metrics`, so what it counts (facts refused, dead letters) is scraped from the
    web app beside it (prometheus_client's multiprocess mode)."""
    base = Path(os.environ.get("CARETRAIL_METRICS_DIR", ROOT / "var" / "metrics"))
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(base / service))
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    # The services' commands, registered on the parser, imported prometheus_client already;
    # it chose its value class then. No metric exists yet (each is made on first use).
    from prometheus_client import values

    values.ValueClass = values.get_value_class()


def _worker(args: argparse.Namespace) -> int:
    act_as(args.service)
    _share_metrics(args.service)
    module = _service_module(args.service, "worker")
    if module is None:
        print(f"{args.service} has no worker yet", file=sys.stderr)
        return 2
    return int(module.main([]))  # type: ignore[attr-defined]


def _up(args: argparse.Namespace) -> int:
    """Kafka, databases, then every web app and worker under supervisord, which starts again
    whatever dies (caretrail/supervision.py); Ctrl-C stops it all."""
    from caretrail import supervision
    from caretrail.kafka_server import LocalBroker
    from shared.broker import ensure_topics, reachable

    broker = LocalBroker(
        data_dir=Path(os.environ.get("CARETRAIL_KAFKA_DATA", "var/kafka/data")).resolve(),
        port=int(os.environ.get("CARETRAIL_KAFKA_PORT", 9092)),
    )
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
    # Before supervisord starts: the programs it runs inherit each service's Kafka password.
    broker.administer()
    cluster = None
    home = ROOT / "var"
    # The counts of processes no longer running belong to the last run, not this one.
    shutil.rmtree(home / "metrics", ignore_errors=True)
    config = supervision.write_config(
        home,
        [supervision.broker_program(broker.port, broker.data_dir)]
        + supervision.procfile_programs(),
    )
    try:
        if args.db == "postgres":
            cluster = _local_postgres(args.pg_port)
        migrate(SERVICES)
        # A local system serves local patient apps: webhooks to loopback are allowed here.
        os.environ.setdefault("CARETRAIL_NOTIFY_ALLOW_LOOPBACK_WEBHOOKS", "true")
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        supervisord = subprocess.Popen(supervision.supervisord_command(config), env=env)
        try:
            started = time.monotonic()
            while not reachable(broker.bootstrap):
                if supervisord.poll() is not None:
                    return supervisord.returncode
                time.sleep(0.5)
            ensure_topics(broker.bootstrap)
            broker.credentials.grant_service_acls(broker.bootstrap)
            print(f"kafka is up at {broker.bootstrap} ({time.monotonic() - started:.1f}s)")
            _print_welcome()
            print(f"logs: {home / 'log'}; supervisorctl -c {config} status", flush=True)
            return supervisord.wait()
        except KeyboardInterrupt:
            return supervisord.wait()  # it got the Ctrl-C too: it stops every program
    finally:
        if cluster is not None:
            cluster.stop(remove=False)


def _print_welcome() -> None:
    from caretrail.people import CAST

    settings = Settings.from_env("cli")
    print("\ncaretrail is starting:")
    for service in SERVICES:
        base = f"http://{service_address(service)}"
        print(f"  {service:8} {base}   docs {base}/docs")
    print(f"  console  http://{service_address('audit')}/audit/console")
    print(f"  patient  {public_url('records')}/patient")
    print("\ntokens (valid 12 h):")
    for person in CAST:
        print(
            f"  # {person.title}\n  export TOKEN_{person.key.upper().replace('-', '_')}="
            f"{person.token(settings)}"
        )
    print(flush=True)


def _local_postgres(port: int) -> Cluster:
    """A durable cluster under var/postgres with one database per service (env is set)."""
    from caretrail.postgres_server import create_database, start_cluster

    cluster = start_cluster(port, str(ROOT / "var" / "postgres"), durable=True)
    for service in SERVICES:
        url = create_database(cluster.admin_url, f"caretrail_{service}", exist_ok=True)
        os.environ[f"CARETRAIL_{service.upper()}_DATABASE_URL"] = url
    print(f"postgresql is up at 127.0.0.1:{port} (data in var/postgres)")
    return cluster


def _demo(args: argparse.Namespace) -> int:
    from caretrail.demo import main as demo

    return demo()


def _keys(args: argparse.Namespace) -> int:
    from shared.fact_signing import create_private_key, generate, keys_dir

    directory = args.dir or keys_dir()
    for service in SERVICES:
        print(f"{service}: {generate(service, directory)} (public key beside it, .pub.pem)")
    checkpoints = directory / "audit-checkpoints.pem"
    create_private_key(checkpoints)
    print(f"audit checkpoints: {checkpoints} (CARETRAIL_AUDIT_SIGNING_KEY_FILE)")
    return 0


def _docs(args: argparse.Namespace) -> int:
    from caretrail.docs import write

    for path in write():
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    # bench/ sits at the repository root, outside the installed packages.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench.run import main as bench

    return bench(args)


def _web(args: argparse.Namespace) -> int:
    bind = service_address(args.service)
    os.environ["CARETRAIL_SERVICE"] = args.service
    act_as(args.service)  # gunicorn and the app inherit the service's Kafka principal
    _share_metrics(args.service)
    gunicorn = Path(sys.executable).parent / "gunicorn"
    os.execv(
        str(gunicorn),
        [
            str(gunicorn),
            "-c",
            str(ROOT / "deploy" / "gunicorn.conf.py"),
            "--bind",
            bind,
            f"services.{args.service}.app:create_app()",
        ],
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="caretrail", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    kafka = commands.add_parser("kafka", help="run the local Kafka broker (KRaft)")
    kafka.add_argument(
        "action",
        choices=("start", "run", "stop", "status", "topics", "credentials"),
        help="start: in the background, once it answers; run: in the foreground (for a "
        "supervisor); topics: create missing topics on KAFKA_BOOTSTRAP_SERVERS (and, as an "
        "authenticated admin, each service's ACLs); credentials: make a broker's CA, keystore "
        "and passwords in --dir, for brokers in containers (deploy/docker/kafka-node.sh)",
    )
    kafka.add_argument(
        "--replication-factor",
        type=int,
        default=int(os.environ.get("CARETRAIL_KAFKA_REPLICATION_FACTOR", 1)),
    )
    kafka.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="3: a cluster (replication factor 3, min.insync.replicas=2) on --port, port+2, ...",
    )
    kafka.add_argument(
        "--port", type=int, default=int(os.environ.get("CARETRAIL_KAFKA_PORT", 9092))
    )
    kafka.add_argument(
        "--data-dir", default=os.environ.get("CARETRAIL_KAFKA_DATA", "var/kafka/data")
    )
    kafka.add_argument(
        "--dir", default=None, help="credentials: default CARETRAIL_KAFKA_CREDENTIALS_DIR"
    )
    kafka.add_argument(
        "--hosts",
        default=None,
        help="credentials: the names the broker's certificate answers to, comma-separated "
        "(default: localhost and the compose hosts kafka, kafka-2, kafka-3)",
    )
    kafka.set_defaults(run=_kafka)

    token = commands.add_parser("token", help="mint a local bearer token")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--sub", required=True)
    token.add_argument("--org")
    token.add_argument("--patient")
    token.add_argument("--scope", help="SMART v2 scopes; a default per role otherwise")
    token.add_argument("--ttl", type=int, default=8 * 3600, help="lifetime in seconds")
    token.set_defaults(run=_token, local=True)

    migrate = commands.add_parser("migrate", help="bring each service's database to head")
    # (no `choices`: argparse refuses an empty list against them, bpo-9625)
    migrate.add_argument(
        "services", nargs="*", help=f"some of {', '.join(SERVICES)}; all by default"
    )
    migrate.set_defaults(run=_migrate)

    up = commands.add_parser("up", help="run the whole system in the foreground")
    up.add_argument(
        "--db", choices=("sqlite", "postgres"), default=os.environ.get("CARETRAIL_DB", "sqlite")
    )
    up.add_argument("--pg-port", type=int, default=55433)
    up.set_defaults(run=_up, local=True)

    demo = commands.add_parser("demo", help="tell caretrail's story against the running system")
    demo.set_defaults(run=_demo, local=True)

    keys = commands.add_parser("keys", help="provision the key pairs services sign facts with")
    keys.add_argument("action", choices=("generate",))
    keys.add_argument("--dir", type=Path, default=None, help="default: CARETRAIL_FACT_KEYS_DIR")
    keys.set_defaults(run=_keys)

    docs = commands.add_parser("docs", help="regenerate docs/ (AsyncAPI, OpenAPI) from the code")
    docs.set_defaults(run=_docs, local=True)

    bench = commands.add_parser(
        "bench", help="start a fresh system, run the benchmarks, write bench/results/"
    )
    bench.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    bench.add_argument("--quick", action="store_true", help="short runs: checks the bench works")
    bench.add_argument("--seed", type=int, default=1, help="of the generated data")
    bench.add_argument(
        "--trail-size",
        type=int,
        default=100_000,
        help="events in the topics for the audit rebuild and queries (default 100,000)",
    )
    bench.add_argument("--full", action="store_true", help="a trail of 1,000,000 events")
    bench.add_argument("--out", default=str(ROOT / "bench" / "results"))
    bench.add_argument("--keep", action="store_true", help="keep the system's temp directory")
    bench.add_argument(
        "--peer-url",
        help="a FHIR server to load and measure beside caretrail, e.g. http://127.0.0.1:8090/fhir",
    )
    bench.add_argument(
        "--flame",
        nargs="?",
        const="",
        metavar="DIR",
        help="py-spy flame graphs of the records web workers in the read, list and write runs "
        "(into DIR, default the --out directory)",
    )
    bench.add_argument(
        "--only",
        nargs="+",
        metavar="SCENARIO",
        help="run only these of read, list, write, facts, revocation, scaling, relay, rebuild, "
        "queries, recovery (facts takes its rate from read)",
    )
    bench.add_argument(
        "--kafka-nodes",
        type=int,
        choices=(1, 3),
        default=1,
        help="3: a local cluster, which the recovery scenario needs (it kills a broker)",
    )
    bench.set_defaults(run=_bench, local=True)

    web = commands.add_parser("web", help="serve a service's HTTP API with gunicorn")
    web.add_argument("service", choices=SERVICES)
    web.set_defaults(run=_web)

    worker = commands.add_parser("worker", help="run a service's consumers and outbox relay")
    worker.add_argument("service", choices=SERVICES)
    worker.set_defaults(run=_worker)

    # Each service may add its own commands (`caretrail audit verify`, ...) in commands.py.
    for service in SERVICES:
        module = _service_module(service, "commands")
        if module is not None:
            module.register(commands)  # type: ignore[attr-defined]
    return parser


def _use_local_kafka_credentials() -> None:
    from caretrail.kafka_credentials import LocalCredentials

    local = LocalCredentials.of_this_checkout()
    if local.exists():
        for name, value in local.client_env().items():
            os.environ.setdefault(name, value)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "local", False):
        # A developer's machine: the published development secrets and made-up keys are
        # allowed here and in the processes these commands start, nowhere else; the local
        # broker's admin credentials are this checkout's.
        os.environ.setdefault(LOCAL_MODE_ENV, "1")
        _use_local_kafka_credentials()
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
