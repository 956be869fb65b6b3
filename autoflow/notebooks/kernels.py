"""Starting a notebook's kernel: always this environment's ``python3``, without AutoFlow's secrets."""

from __future__ import annotations

from typing import IO, Any

from ipykernel.kernelspec import RESOURCES, get_kernel_dict
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from traitlets import default

from autoflow.redaction import environment_without_secrets

#: seconds a kernel may take to start, unless the whole-notebook budget is shorter
KERNEL_START_TIMEOUT = 60.0
#: tries at starting a notebook's kernel: one that dies before answering (e.g. a port another
#: process took between jupyter_client choosing it and the kernel binding it) ran no code yet
KERNEL_START_ATTEMPTS = 3
#: the one secret a notebook may read: it queries FlowAPI itself
KERNEL_SECRETS = ("FLOWAPI_TOKEN",)


class _EnvironmentKernelSpecManager(KernelSpecManager):
    """Kernel specs in which ``python3`` is always this environment's own Python.

    Without this, a ``python3`` kernelspec found earlier on the Jupyter path (the user's own,
    outside a virtualenv, or anything on ``JUPYTER_PATH``) could run notebooks with another
    interpreter and other packages.
    """

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == NATIVE_KERNEL_NAME:
            return self.kernel_spec_class(resource_dir=RESOURCES, **get_kernel_dict())
        return super().get_kernel_spec(kernel_name)


class _EnvironmentKernelManager(AsyncKernelManager):
    """nbclient's default kernel manager, using :class:`_EnvironmentKernelSpecManager`.

    The kernel process's own stdout/stderr (its start-up warnings, not the notebook's output,
    which arrives as cell outputs) go to ``kernel_output`` instead of AutoFlow's terminal.
    """

    kernel_output: IO[bytes] | None = None

    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self) -> KernelSpecManager:
        return _EnvironmentKernelSpecManager(data_dir=self.data_dir)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        # Notebooks need FLOWAPI_TOKEN (they connect to FlowAPI themselves), never the database.
        kw["env"] = environment_without_secrets(kw.get("env") or None, keep=KERNEL_SECRETS)
        if self.kernel_output is not None:
            kw.setdefault("stdout", self.kernel_output)
            kw.setdefault("stderr", self.kernel_output)
        await super()._async_launch_kernel(kernel_cmd, **kw)

