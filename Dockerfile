# syntax=docker/dockerfile:1
#
# The in-cluster image: `reconciler run` with a pinned, checksum-verified helm.
#
#   docker build -t reconciler .
#   docker run --rm --read-only --tmpfs /tmp reconciler --help
#
# Runs as UID/GID 65532 with a read-only root filesystem: everything it writes
# (HOME, TMPDIR, helm's cache/config/data, the clone) lives under /tmp and
# /var/lib/reconciler, which the deploy chart mounts as emptyDir volumes.

ARG PYTHON_IMAGE=python:3.11-slim-trixie

# ---- build: a wheel of the package, installed with its dependencies into a venv ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schema ./schema
COPY reconciler ./reconciler
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/reconciler \
 && /opt/reconciler/bin/pip install /wheels/*.whl \
 && /opt/reconciler/bin/pip uninstall --yes pip \
 && /opt/reconciler/bin/reconciler --help > /dev/null

# ---- helm: the official release tarball, verified against its published SHA-256 ----
FROM ${PYTHON_IMAGE} AS helm
# Checksums are the `.sha256sum` files published beside each tarball on get.helm.sh
# (also quoted in the release notes of helm/helm). To move to another version, set
# HELM_VERSION and both checksums from those files; an empty checksum fails the build.
ARG HELM_VERSION=v4.3.0
ARG HELM_SHA256_AMD64=86584a54def73570558f66f5111cc53dfed56689637ae32c1201205d494f54fb
ARG HELM_SHA256_ARM64=31c5794dd55c66a51e6b7d2e2ac7a114ae8b1de41ff1d9ba51748ac973b06a08
ARG TARGETARCH=amd64
SHELL ["/bin/bash", "-o", "pipefail", "-euc"]
WORKDIR /download
RUN case "${TARGETARCH}" in \
      amd64) sum="${HELM_SHA256_AMD64}" ;; \
      arm64) sum="${HELM_SHA256_ARM64}" ;; \
      *) echo "no helm checksum pinned for architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac; \
    if [ -z "${sum}" ]; then \
      echo "HELM_SHA256_${TARGETARCH^^} is empty: pin the published checksum of helm ${HELM_VERSION}" >&2; \
      exit 1; \
    fi; \
    file="helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz"; \
    python -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
      "https://get.helm.sh/${file}" "${file}"; \
    echo "${sum}  ${file}" | sha256sum --check --strict -; \
    tar -xzf "${file}" "linux-${TARGETARCH}/helm"; \
    install -m 0755 "linux-${TARGETARCH}/helm" /usr/local/bin/helm; \
    /usr/local/bin/helm version --template '{{ .Version }}' | grep -qx -- "${HELM_VERSION}"

# ---- final: the runtime only (no compilers, no pip), non-root ----
FROM ${PYTHON_IMAGE}
ARG UID=65532
# git for GitPython, openssh-client for ssh:// remotes. Versions follow the pinned
# base image's Debian release; pinning them as well would break on every point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install --yes --no-install-recommends ca-certificates git openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid "${UID}" reconciler \
 && useradd --uid "${UID}" --gid "${UID}" --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin reconciler \
 && install -d -o "${UID}" -g "${UID}" -m 0750 /var/lib/reconciler
COPY --from=helm /usr/local/bin/helm /usr/local/bin/helm
COPY --from=build /opt/reconciler /opt/reconciler
ENV PATH=/opt/reconciler/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    HELM_CACHE_HOME=/tmp/helm/cache \
    HELM_CONFIG_HOME=/tmp/helm/config \
    HELM_DATA_HOME=/tmp/helm/data \
    RECONCILER_HELM=/usr/local/bin/helm
LABEL org.opencontainers.image.title="reconciler" \
      org.opencontainers.image.description="Pull-based GitOps reconciler for Helm" \
      org.opencontainers.image.licenses="Apache-2.0"
USER ${UID}:${UID}
WORKDIR /var/lib/reconciler
EXPOSE 8080
ENTRYPOINT ["reconciler"]
CMD ["run"]
