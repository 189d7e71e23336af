#!/bin/sh
# The official rabbitmq image's contract, for the stand-in: RABBITMQ_DEFAULT_USER and
# RABBITMQ_DEFAULT_PASS (default guest/guest) name the user created on first start, who may
# connect from other containers; logs go to standard output.
set -eu
cat >/etc/rabbitmq/rabbitmq.conf <<CONF
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
loopback_users = none
listeners.tcp.default = 5672
log.console = true
log.file = false
CONF
chmod 600 /etc/rabbitmq/rabbitmq.conf
exec "$@"
