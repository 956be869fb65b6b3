# AutoFlow service image.
#
#   docker build -t autoflow .
#   docker run --rm \
#     -v /path/to/inputs:/mounts/inputs:ro -v /path/to/outputs:/mounts/outputs:rw autoflow
#
# The service runs as user "autoflow", UID 1000 and GID 1000 unless built with
# --build-arg AUTOFLOW_UID=... --build-arg AUTOFLOW_GID=...: a bind-mounted outputs directory
# must be writable by that UID (e.g. `chown 1000 /path/to/outputs`). The user owns only its
# home directory (which holds Prefect's home) and /mounts/outputs; it cannot modify the code.
#
# Builds behind a TLS-intercepting proxy can give its CA bundle as an optional build secret,
# used only while packages download and never stored in a layer:
#   docker build --secret id=build_ca_bundle,src=/path/to/ca-bundle.crt -t autoflow .
#
# Dependencies are exactly the versions in requirements.lock (those development and CI use),
# installed in a layer that a change to AutoFlow's code leaves cached. The build tools (uv and
# the wheel build) stay in the build stages; the image gets the virtualenv and the package.

# --- runtime: what the image and the build stages share -------------------------------------
FROM debian:bookworm-slim AS runtime

# python3 (3.11 in bookworm) runs AutoFlow; pandoc and asciidoctor-pdf (with its bundled Noto
# fonts; matplotlib brings DejaVu) make the PDF reports; graphviz draws the workflow graphs; tini is PID 1, passing signals on and
# reaping orphaned processes.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates \
        graphviz \
        pandoc \
        python3 \
        python3-venv \
        ruby-asciidoctor-pdf \
        tini \
    && rm -rf /var/lib/apt/lists/*

# --- tools: uv (the version the Makefile uses) and an empty virtualenv ----------------------
FROM runtime AS tools
RUN --mount=type=secret,id=build_ca_bundle \
    if [ -s /run/secrets/build_ca_bundle ]; then export PIP_CERT=/run/secrets/build_ca_bundle; fi \
    && python3 -m venv /opt/build-tools \
    && /opt/build-tools/bin/pip install --no-cache-dir --disable-pip-version-check uv==0.13.9 \
    && python3 -m venv /opt/autoflow/venv

# --- dependencies: pyproject.toml's, at the versions requirements.lock pins -------------------
FROM tools AS dependencies
COPY pyproject.toml requirements.lock /opt/autoflow/
RUN --mount=type=secret,id=build_ca_bundle \
    if [ -s /run/secrets/build_ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/build_ca_bundle; fi \
    && cd /opt/autoflow \
    && python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > requirements.in \
    && UV_NO_CACHE=1 UV_COMPILE_BYTECODE=1 UV_PYTHON_DOWNLOADS=never \
        /opt/build-tools/bin/uv pip install --python venv/bin/python -r requirements.in --constraint requirements.lock

# --- package: AutoFlow itself, built into a wheel and installed under /install -----------------
FROM tools AS package
COPY pyproject.toml README.md /src/
COPY autoflow /src/autoflow
RUN --mount=type=secret,id=build_ca_bundle \
    if [ -s /run/secrets/build_ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/build_ca_bundle; fi \
    && export UV_NO_CACHE=1 UV_COMPILE_BYTECODE=1 UV_PYTHON_DOWNLOADS=never \
    && /opt/build-tools/bin/uv build --wheel --out-dir /dist /src \
    && /opt/build-tools/bin/uv pip install --python /opt/autoflow/venv/bin/python --prefix /install \
        --no-deps --no-index /dist/*.whl

# --- the image ---------------------------------------------------------------------------------
FROM runtime

ARG AUTOFLOW_UID=1000 AUTOFLOW_GID=1000
RUN groupadd --gid "${AUTOFLOW_GID}" autoflow \
    && useradd --uid "${AUTOFLOW_UID}" --gid autoflow --create-home --home-dir /home/autoflow \
        --shell /usr/sbin/nologin autoflow \
    && install -d -o autoflow -g autoflow /home/autoflow/.prefect /mounts/outputs \
    && install -d /mounts/inputs

# Prefect stays offline (no analytics, no promotions, no telemetry) and keeps its home
# (the temporary server's database, or the prefect service's) in the user's home.
ENV PATH=/opt/autoflow/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    VIRTUAL_ENV=/opt/autoflow/venv \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AUTOFLOW_INPUTS_DIR=/mounts/inputs \
    AUTOFLOW_OUTPUTS_DIR=/mounts/outputs \
    PREFECT_HOME=/home/autoflow/.prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT=false \
    PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY=false \
    DO_NOT_TRACK=1

USER ${AUTOFLOW_UID}:${AUTOFLOW_GID}

# Healthy while the service writing to $AUTOFLOW_OUTPUTS_DIR is alive (`autoflow health --help`).
HEALTHCHECK --interval=60s --timeout=30s --start-period=5m --retries=3 \
    CMD ["python", "-m", "autoflow", "health"]

ENTRYPOINT ["tini", "--"]
CMD ["python", "-m", "autoflow"]

# Last, so that everything above stays cached: root-owned, read-only for the user.
COPY --from=dependencies /opt/autoflow/venv /opt/autoflow/venv
COPY --from=package /install/ /opt/autoflow/venv/
