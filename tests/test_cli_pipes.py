"""A reader that closes the pipe early ends the output quietly, and changes no command's exit status."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.test_cli import autoflow

BASE_ENV = {"PATH": "/usr/bin:/bin", "AUTOFLOW_SECRETS_DIR": "/nonexistent"}


def run_with_closed_reader(command: list[str]) -> int:
    """Run ``command`` with stdout and stderr into one pipe whose reader closes it at once (``2>&1 | (exec 0<&-)``)."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=BASE_ENV) as process:
        assert process.stdout is not None
        process.stdout.close()
        return process.wait(timeout=60)


def test_a_failing_command_keeps_its_status_when_the_reader_is_gone() -> None:
    unpiped = autoflow("validate", "--inputs", "/nonexistent")
    assert unpiped.returncode == 2 and "does not exist" in unpiped.stderr
    code = run_with_closed_reader([sys.executable, "-m", "autoflow", "validate", "--inputs", "/nonexistent"])
    assert code == 2


def test_a_broken_pipe_that_is_not_the_output_is_an_internal_error() -> None:
    """e.g. a child process or socket AutoFlow writes to: a bug to report, not a reader going away."""
    script = textwrap.dedent(
        """
        import os, sys, types
        from autoflow.cli import main

        def run(app, args):
            read_end, write_end = os.pipe()
            os.close(read_end)
            os.write(write_end, b"lost")  # BrokenPipeError: nobody reads this pipe
            return 0

        command = types.SimpleNamespace(add_parser=lambda sub: sub.add_parser("send"), run=run)
        main._modules = lambda: {"send": command}
        sys.exit(main.main(["send"]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=BASE_ENV, timeout=60)
    assert done.returncode == 70
    assert "internal error (BrokenPipeError" in done.stderr and len(done.stderr.strip().splitlines()) == 1
