#!/usr/bin/env bash
# Makes sure the local PostgreSQL and RabbitMQ the tests use are up, starting them with their
# documented commands when they are installed but stopped. Exits non-zero, loudly, when either
# stays unreachable: a test that needs a service never passes silently.
set -euo pipefail

PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
AMQP_HOST=${AMQP_HOST:-127.0.0.1}
AMQP_PORT=${AMQP_PORT:-5672}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() { # name host port seconds
  local i
  for ((i = 0; i < $4 * 2; i++)); do
    if port_open "$2" "$3"; then return 0; fi
    sleep 0.5
  done
  return 1
}

if ! port_open "$PG_HOST" "$PG_PORT"; then
  echo "PostgreSQL is not answering on $PG_HOST:$PG_PORT; trying to start it" >&2
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  wait_for postgres "$PG_HOST" "$PG_PORT" 30 || {
    echo "FATAL: PostgreSQL is unreachable at $PG_HOST:$PG_PORT" >&2
    exit 1
  }
fi

if ! port_open "$AMQP_HOST" "$AMQP_PORT"; then
  echo "RabbitMQ is not answering on $AMQP_HOST:$AMQP_PORT; trying to start it" >&2
  if command -v rabbitmq-server >/dev/null 2>&1; then
    rabbitmq-server -detached || true
  fi
  wait_for rabbitmq "$AMQP_HOST" "$AMQP_PORT" 90 || {
    echo "FATAL: RabbitMQ is unreachable at $AMQP_HOST:$AMQP_PORT" >&2
    exit 1
  }
fi
echo "services: PostgreSQL $PG_HOST:$PG_PORT and RabbitMQ $AMQP_HOST:$AMQP_PORT are up"
