# Stand-in for nginx:1.27-alpine when no registry can be reached: Debian bookworm's nginx-light
# (1.22), logs to the container's output, wget for health checks (as busybox's in the official
# image). See nginx-entrypoint.sh for the one directive 1.22 lacks. scripts/docker-standins.sh builds it.
FROM depot-standin/debian:bookworm
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light wget \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
COPY nginx-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
EXPOSE 80
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["nginx", "-g", "daemon off;"]
