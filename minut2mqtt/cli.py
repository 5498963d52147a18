"""`minut2mqtt run | demo`: parse the command line, load settings, start the pieces."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .logs import configure_logging
from .settings import ConfigError, Settings, env_name, leaf_fields, load_settings, require
from .signals import stop_on_signals

log = logging.getLogger("minut2mqtt")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    settings_keys = {key for key, _ in leaf_fields()}
    overrides = {
        key: value
        for key, value in vars(args).items()
        if key in settings_keys and value is not None
    }
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(overrides, duration=args.duration, broker=args.broker)
        settings = load_settings(args.config, overrides)
        if settings.minut.client_id or not settings.minut.accounts:  # else minut.accounts only
            require(settings, "minut.client_id", "minut.client_secret", purpose=args.command)
    except ConfigError as error:
        print(f"minut2mqtt: {error}", file=sys.stderr)
        return 2
    if args.command == "check":
        return run_check(settings)
    configure_logging(settings.log_level, settings.log_format)
    return run_daemon(settings)


def run_check(settings: Settings) -> int:
    from .check import run_checks

    print("configuration: valid")
    results = run_checks(settings)
    for result in results:
        print(f"{result.name}: {'ok' if result.ok else 'FAILED'}: {result.detail}")
    return 0 if all(result.ok for result in results) else 1


def run_daemon(settings: Settings) -> int:
    from .daemon import Daemon, StartupError

    # What lives as long as the process (modules, settings, the Points and homes of the first
    # poll, then the bookkeeping of what each account's first poll published) is frozen out of
    # the garbage collector's full passes: at 2,000 Points one took 80 ms, and no event moved.
    daemon = Daemon(settings, on_long_lived=gc.freeze)
    stop_on_signals(daemon.request_stop)
    log.info("minut2mqtt %s starting", __version__)
    try:
        daemon.start()
    except StartupError as error:
        log.error("%s", error)
        return 1
    gc.freeze()
    daemon.wait()
    daemon.stop()
    return 1 if daemon.failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minut2mqtt",
        description="Bridge Minut Point sensors, homes and events onto MQTT, "
        "with Home Assistant discovery.",
        epilog="Every setting can also come from the environment (e.g. MINUT2MQTT_MQTT__HOST) "
        "or the YAML file; precedence: command line > environment > file > defaults.",
    )
    parser.add_argument("--version", action="version", version=f"minut2mqtt {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="bridge a Minut account to an MQTT broker until stopped")
    check = commands.add_parser(
        "check",
        help="validate the configuration, then try the broker and the Minut API once "
        "(exit status 0 when all is well)",
    )
    for command in (run, check):
        command.add_argument(
            "--config",
            type=Path,
            default=_default_config(),
            help="YAML configuration file (default: $MINUT2MQTT_CONFIG, else none)",
        )
    demo = commands.add_parser(
        "demo",
        help="zero-install demo: a broker of its own + simulated Minut account + the real bridge",
    )
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "amqtt"),
        default="auto",
        help="the demo's MQTT broker: Mosquitto where installed (auto), else embedded amqtt",
    )
    for command in (run, check, demo):
        _add_setting_options(command)
    return parser


def _add_setting_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (override environment and file)")
    for dotted_key, field in leaf_fields():
        options = [f"--{dotted_key}"]
        if "_" in dotted_key and "." not in dotted_key:
            options.append(f"--{dotted_key.replace('_', '-')}")
        help_text = field.description or ""
        group.add_argument(
            *options,
            dest=dotted_key,
            default=None,
            metavar="VALUE",
            help=f"{help_text} [{env_name(dotted_key)}]".strip(),
        )


def _default_config() -> Path | None:
    configured = os.environ.get("MINUT2MQTT_CONFIG")
    return Path(configured) if configured else None


if __name__ == "__main__":
    sys.exit(main())
