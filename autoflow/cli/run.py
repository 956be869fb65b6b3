"""``autoflow run`` (also plain ``autoflow`` / ``python -m autoflow``): the service."""

from __future__ import annotations

import argparse

from autoflow.cli.app import Application

HELP = "run the available-dates sensor on its schedule (once, when the schedule is null)"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    commands.add_parser("run", help=HELP, description=HELP)


def run(app: Application, args: argparse.Namespace) -> int:
    from autoflow.prefect_env import configure_environment

    configure_environment()
    app.setup_logging()
    config = app.load_config()
    settings = app.settings
    settings.outputs_dir  # noqa: B018 - fail early, naming the variable, when it is missing
    from autoflow.scan import check_source_settings

    check_source_settings(config, settings)  # FLOWAPI_URL, a sql source's password secret...
    if settings.work_pool:
        from autoflow.pool import check_pool_settings

        check_pool_settings(settings)
    from autoflow.prefect_env import start_server_early

    start_server_early(settings.outputs_dir / "logs")  # it starts while the imports below run
    from autoflow.service import Service  # imports Prefect, which takes over logging...

    app.setup_logging()  # ...so AutoFlow's console set-up goes back on
    return Service(config, settings, load_config=app.load_config).run()
