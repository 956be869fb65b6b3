"""Starting a notebook's kernel: always this environment's ``python3``, without AutoFlow's secrets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import signal
from dataclasses import dataclass
from collections.abc import Mapping
from typing import IO, Any

from ipykernel.kernelspec import RESOURCES, get_kernel_dict
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import ensure_async
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbclient.util import run_hook
from traitlets import default

from autoflow.errors import AutoFlowError
from autoflow.redaction import environment_without_secrets
from autoflow.settings import Settings

log = logging.getLogger("autoflow.notebooks")

#: seconds a kernel may take to start, unless the whole-notebook budget is shorter
KERNEL_START_TIMEOUT = Settings().kernel_start_timeout
#: tries at starting a notebook's kernel: one that dies before answering (e.g. a port another
#: process took between jupyter_client choosing it and the kernel binding it) ran no code yet
KERNEL_START_ATTEMPTS = 3
#: seconds to wait for a killed kernel to be gone before giving up on it
KILL_WAIT = 10.0
#: the one secret a notebook may read: it queries FlowAPI itself
KERNEL_SECRETS = ("FLOWAPI_TOKEN",)


#: variables of AutoFlow's own a kernel does not get: the Prefect API it reports to (it changes
#: once a temporary server is up, after kernels may have been started ahead of need)
KERNEL_HIDDEN = ("PREFECT_API_URL",)


def kernel_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a notebook's kernel gets: ``env`` (default this process's) without secrets
    other than :data:`KERNEL_SECRETS` and without :data:`KERNEL_HIDDEN`."""
    kept = environment_without_secrets(env, keep=KERNEL_SECRETS)
    return {name: value for name, value in kept.items() if name not in KERNEL_HIDDEN}


class EnvironmentKernelSpecManager(KernelSpecManager):
    """Kernel specs in which ``python3`` is always this environment's own Python.

    Without this, a ``python3`` kernelspec found earlier on the Jupyter path (the user's own,
    outside a virtualenv, or anything on ``JUPYTER_PATH``) could run notebooks with another
    interpreter and other packages.
    """

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == NATIVE_KERNEL_NAME:
            return self.kernel_spec_class(resource_dir=RESOURCES, **get_kernel_dict())
        return super().get_kernel_spec(kernel_name)


@dataclass
class KernelProcess:
    """The kernel process one try launched (``pid`` is ``None`` until then): its process group and
    connection file are removed with :func:`kill_kernel`, from any thread."""

    pid: int | None = None
    process: Any = None
    connection_file: str | None = None


def interrupt_kernel(kernel: KernelProcess) -> None:
    """Send the kernel's process group SIGINT, as Jupyter's interrupt does: the running cell ends
    in KeyboardInterrupt. Never raises."""
    if kernel.pid is not None:
        with contextlib.suppress(OSError):
            os.killpg(kernel.pid, signal.SIGINT)


def kill_kernel(kernel: KernelProcess) -> None:
    """Kill the kernel's whole process group (it leads a session of its own), reap it, and remove
    its connection file; never raises and never waits long."""
    if kernel.pid is not None:
        try:
            os.killpg(kernel.pid, signal.SIGKILL)  # jupyter_client starts kernels with start_new_session
        except ProcessLookupError:
            pass  # the kernel and everything it started are gone
        except OSError:
            with contextlib.suppress(OSError):
                os.kill(kernel.pid, signal.SIGKILL)
    if kernel.process is not None:
        with contextlib.suppress(Exception):
            kernel.process.wait(KILL_WAIT)
    if kernel.connection_file:
        with contextlib.suppress(OSError):
            os.remove(kernel.connection_file)


class EnvironmentKernelManager(AsyncKernelManager):
    """nbclient's default kernel manager, using :class:`EnvironmentKernelSpecManager`.

    The kernel process's own stdout/stderr (its start-up warnings, not the notebook's output,
    which arrives as cell outputs) go to ``kernel_output`` instead of AutoFlow's terminal.
    """

    kernel_output: IO[bytes] | None = None
    #: filled in once the kernel process is launched, so it can be killed from another thread
    launched: KernelProcess | None = None

    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self) -> KernelSpecManager:
        return EnvironmentKernelSpecManager(data_dir=self.data_dir)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        # Notebooks need FLOWAPI_TOKEN (they connect to FlowAPI themselves), never the database.
        kw["env"] = kernel_environment(kw.get("env") or None)
        if self.kernel_output is not None:
            kw.setdefault("stdout", self.kernel_output)
            kw.setdefault("stderr", self.kernel_output)
        await super()._async_launch_kernel(kernel_cmd, **kw)
        if self.launched is not None:
            self.launched.pid = getattr(self.provisioner, "pid", None)
            self.launched.process = getattr(self.provisioner, "process", None)
            self.launched.connection_file = self.connection_file


class KernelStartFailed(AutoFlowError):
    """A kernel died before answering, or did not answer within its bound (and was killed)."""

    def __init__(self, reason: str, *, seconds: float, timed_out: bool) -> None:
        super().__init__(reason)
        self.reason, self.seconds, self.timed_out = reason, seconds, timed_out


async def start_kernel_within(client: NotebookClient, seconds: float, *, connect_only: bool = False, **kwargs: Any) -> None:
    """Start ``client``'s kernel and wait for its ``kernel_info`` reply, for at most ``seconds``
    (``connect_only``: the kernel manager's kernel is running already; only connect to it).

    jupyter_client's own wait only ends when the kernel answers or is seen to be dead, so a kernel
    that never binds its ports, or binds them and never answers, is bounded here instead: past
    ``seconds`` the kernel is killed, the client's sockets closed, and :class:`KernelStartFailed` raised.
    """
    client.startup_timeout = int(seconds + KILL_WAIT) + 1  # jupyter_client's own bound: a backstop to this one
    try:
        await asyncio.wait_for(_start(client, connect_only=connect_only, **kwargs), seconds)
    except asyncio.TimeoutError:
        await _abandon(client)
        raise KernelStartFailed(f"it did not answer within {seconds:g} s", seconds=seconds, timed_out=True) from None
    except RuntimeError as exc:
        # nbclient has cleaned up already, but only the kernel itself if it was alive: "Kernel died
        # before replying to kernel_info"
        if "kernel died" not in str(exc).lower():
            raise
        _kill_group(client)
        raise KernelStartFailed("it exited before answering", seconds=seconds, timed_out=False) from None
    except DeadKernelError:
        _kill_group(client)
        raise KernelStartFailed("it exited before answering", seconds=seconds, timed_out=False) from None


async def _start(client: NotebookClient, *, connect_only: bool, **kwargs: Any) -> None:
    if connect_only:
        await _connect(client)
        return
    await client.async_start_new_kernel(**kwargs)
    await client.async_start_new_kernel_client()


#: seconds to wait for a kernel_info request's status messages on IOPub before asking again
IOPUB_WAIT = 0.05


async def _connect(client: NotebookClient) -> None:
    """Connect ``client`` to the running kernel of its manager, as nbclient's
    ``async_start_new_kernel_client`` does, without its wait for a silent IOPub channel (0.2 s).

    The kernel answered ``kernel_info`` once already. IOPub (publish/subscribe) may still drop
    messages sent before the subscription took hold, so ``kernel_info`` is asked until its own
    ``idle`` status arrives on IOPub: from then on no output of the notebook can be lost.
    """
    assert client.km is not None
    kc = client.kc = client.km.client()
    kc.start_channels()
    while True:
        msg_id = kc.kernel_info()
        reply = await _reply_to(kc.shell_channel, msg_id, timeout=1.0)
        if reply is not None and await _idle_seen(kc.iopub_channel, msg_id):
            break
        if not await ensure_async(kc.is_alive()):
            raise RuntimeError("Kernel died before replying to kernel_info")
    kc._handle_kernel_info_reply(reply)
    kc.allow_stdin = False
    await run_hook(client.on_notebook_start, notebook=client.nb)


async def _reply_to(channel: Any, msg_id: str, *, timeout: float) -> dict[str, Any] | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await channel.get_msg(timeout=left)
        except queue.Empty:
            return None
        if msg.get("parent_header", {}).get("msg_id") == msg_id:
            return dict(msg)
    return None


async def _idle_seen(channel: Any, msg_id: str) -> bool:
    while True:
        try:
            msg = await channel.get_msg(timeout=IOPUB_WAIT)
        except queue.Empty:
            return False
        if msg.get("parent_header", {}).get("msg_id") == msg_id and msg.get("content", {}).get("execution_state") == "idle":
            return True


async def _abandon(client: NotebookClient) -> None:
    """Kill the kernel that did not start in time and close the client's sockets, never waiting long."""
    manager, kernel_client = client.km, client.kc
    client.kc = None
    if kernel_client is not None:
        with contextlib.suppress(Exception):
            kernel_client.stop_channels()  # closes its sockets (linger 100 ms): nothing stays blocked in a send
    if manager is None:
        return
    try:
        await asyncio.wait_for(ensure_async(manager.shutdown_kernel(now=True)), KILL_WAIT)
    except Exception as exc:  # noqa: BLE001 - the kernel is killed below whatever went wrong here
        log.debug("stopping a kernel that did not start: %s", exc)
    _kill_group(client, manager)


def _kill_group(client: NotebookClient, manager: Any = None) -> None:
    """Kill what is left of the kernel's process group (a grandchild can outlive the kernel)."""
    launched = getattr(manager or client.km, "launched", None)
    if isinstance(launched, KernelProcess):
        kill_kernel(launched)
