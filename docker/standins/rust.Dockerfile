# Stand-in for rust:1.95-slim-bookworm when no registry can be reached (the air-gapped build):
# Debian bookworm with the C toolchain, and this machine's own Rust toolchain copied in (the
# build context is its sysroot, documentation left out). scripts/docker-standins.sh builds it.
FROM depot-standin/debian:bookworm
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev pkg-config ca-certificates make \
    && rm -rf /var/lib/apt/lists/*
COPY . /usr/local/rust/
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN rm -f /usr/local/rust/rust.Dockerfile && mkdir -p /usr/local/cargo/bin && rustc --version && cargo --version
