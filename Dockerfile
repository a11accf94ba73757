# The operator image: docker build -t docker.io/intel/intel-deviceplugin-operator-py:devel .
#
# Builder: this project's runtime dependencies from requirements/image.lock and setuptools from
# requirements/build.lock, each file checked against the lock's sha256 (--require-hashes; no
# resolution, no source builds, so no compiler), into the virtualenv /opt/venv; then the project
# itself, built offline with that setuptools; pip check proves the lock complete. Byte-compiled
# ahead of time because the root filesystem is read-only at run time. Final: the same Python base
# with that virtualenv only, run as the non-root user 65532 (the Deployment sets the same ids).
#
# The base is pinned by digest: the manifest list of python:3.11-slim-bookworm as published by
# Docker Official Images, from docker-library/repo-info repos/python/remote/3.11-slim-bookworm.md
# (commit bc9bbb47fc709dc4b29d3b128d66823b953b97a7, built 2026-08-25, Python 3.11.16). To move it,
# take the new digest from there. tools/image.py passes this ARG, or the image id of its local
# Debian bookworm base when this cannot be pulled, and records the one used as the labels
# org.opencontainers.image.base.name and .base.digest.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm@sha256:fe556eaffd0d96abd8685b83bb8a69addd0dc730fa193669a7df0d49ddcfac02

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY requirements/image.lock requirements/build.lock ./requirements/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps --only-binary=:all: \
      -r requirements/image.lock -r requirements/build.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/venv/bin/pip install --no-deps --no-index --no-build-isolation . \
 && /opt/venv/bin/pip check \
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
