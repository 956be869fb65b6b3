"""``python -m autoflow``: the same program as the ``autoflow`` command."""

from autoflow.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
