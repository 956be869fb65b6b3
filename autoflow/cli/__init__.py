"""The ``autoflow`` command: one module per subcommand over :class:`~autoflow.cli.app.Application`."""
