# Stand-in for rabbitmq:3.13-management-alpine when no registry can be reached: Debian bookworm's
# RabbitMQ 3.10, honouring the official image's RABBITMQ_DEFAULT_USER and RABBITMQ_DEFAULT_PASS
# (see rabbitmq-entrypoint.sh). Give the container a fixed hostname: the node's data is kept
# under its name. scripts/docker-standins.sh builds it.
FROM depot-standin/debian:bookworm
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends rabbitmq-server \
    && rm -rf /var/lib/apt/lists/* \
    && chown -R rabbitmq:rabbitmq /etc/rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
COPY rabbitmq-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV HOME=/var/lib/rabbitmq RABBITMQ_LOGS=-
VOLUME /var/lib/rabbitmq
USER rabbitmq
EXPOSE 5672
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["rabbitmq-server"]
