# Stand-in for gcr.io/distroless/cc-debian12:nonroot when no registry can be reached: glibc,
# libgcc, OpenSSL's libraries, CA certificates, time zones and /etc/passwd with the nonroot user
# (65532), copied from Debian bookworm's packages into an empty image. No shell, no package
# manager. scripts/docker-standins.sh builds it.
FROM depot-standin/debian:bookworm AS files
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata netbase libssl3 \
    && rm -rf /var/lib/apt/lists/*
# hadolint ignore=SC2046
RUN set -eu; \
    mkdir -p /out/usr/lib/x86_64-linux-gnu /out/usr/lib64 /out/usr/bin /out/usr/sbin /out/etc \
      /out/tmp /out/home/nonroot /out/root /out/var/lib; \
    ln -s usr/lib /out/lib; ln -s usr/lib64 /out/lib64; ln -s usr/bin /out/bin; ln -s usr/sbin /out/sbin; \
    chmod 1777 /out/tmp; chown 65532:65532 /out/home/nonroot; chmod 700 /out/root; \
    dpkg -L libc6 libgcc-s1 libssl3 tzdata netbase \
      | while read -r f; do [ -f "$f" ] || [ -L "$f" ] || continue; \
          case "$f" in /usr/share/doc/*|/usr/share/man/*|/usr/share/lintian/*|/usr/share/locale/*) continue;; esac; \
          echo "$f"; done >/tmp/files; \
    tar -cf - -T /tmp/files /etc/ssl/certs /usr/share/ca-certificates 2>/dev/null \
      | tar -C /out --keep-directory-symlink -xf -; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/out/etc/passwd; \
    printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >/out/etc/group; \
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' >/out/etc/nsswitch.conf; \
    ldconfig -r /out; \
    test ! -e /out/bin/sh
FROM scratch
COPY --from=files /out/ /
USER 65532:65532
WORKDIR /home/nonroot
