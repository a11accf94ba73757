# The operator image: docker build -t docker.io/intel/intel-deviceplugin-operator-py:devel .
#
# Builder: a wheel of this project, installed with its pinned dependencies (binary wheels
# only, so no compiler is needed) into the virtualenv /opt/venv, byte-compiled ahead of time
# because the root filesystem is read-only at run time. Final: the same Python base with that
# virtualenv only, run as the non-root user 65532 (the Deployment sets the same ids).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --only-binary=:all: /wheels/*.whl \
 && /opt/venv/bin/pip uninstall --yes pip setuptools \
 && /opt/venv/bin/python -m compileall -q -j 0 /opt/venv/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="intel-deviceplugin-operator-py" \
      org.opencontainers.image.description="Operator for the Intel device plugins (Python drop-in replacement)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /opt/venv /opt/venv
# The reference image's command, for manifests that name it (`command:` in a Deployment, an OLM
# bundle): `run` with the reference's flags. The console script runs /opt/venv/bin/python.
COPY --from=builder /opt/venv/bin/intel_deviceplugin_operator /usr/local/bin/intel_deviceplugin_operator
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
# Admission webhooks, secure metrics, health probes (/healthz, /readyz).
EXPOSE 9443 8443 8081
ENTRYPOINT ["deviceplugin-operator", "run"]
