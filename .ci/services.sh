#!/usr/bin/env bash
# Makes sure nats-server (with JetStream) and RabbitMQ run on loopback, installing them from the
# distribution's packages when missing, and that promtool is there (test/ops/deploy.test.ts runs it).
# Idempotent, and quick when all are there.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

missing=()
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ] || missing+=(rabbitmq-server)
apt_updated=false
apt_update() {
  if [ "$apt_updated" = false ]; then $SUDO apt-get update -qq; apt_updated=true; fi
}

if [ "${#missing[@]}" -gt 0 ]; then
  echo "services: installing ${missing[*]}"
  apt_update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Only the promtool binary out of Debian's prometheus package: installing the package would also
# enable and start a Prometheus server.
if ! command -v promtool >/dev/null 2>&1; then
  echo "services: installing promtool"
  apt_update
  download=$(mktemp -d)
  (cd "$download" && $SUDO apt-get download -qq prometheus)
  dpkg-deb --fsys-tarfile "$download"/prometheus_*.deb | tar -xO ./usr/bin/promtool >"$download/promtool"
  $SUDO install -m 0755 "$download/promtool" /usr/local/bin/promtool
  $SUDO rm -rf "$download"
  promtool --version >/dev/null
fi

if ! port_open 4222; then
  echo "services: starting nats-server"
  $SUDO mkdir -p /var/lib/nats-server
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
fi

if ! port_open 5672; then
  echo "services: starting rabbitmq-server"
  # Loopback only; the package's service may already be starting it, -detached then just fails.
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 $SUDO -E rabbitmq-server -detached >/dev/null 2>&1 || true
fi

deadline=$((SECONDS + 60))
until port_open 4222 && port_open 5672; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "services: nats (4222) or rabbitmq (5672) not listening after 60 s" >&2
    exit 1
  fi
  sleep 1
done
# The AMQP port opens before RabbitMQ finishes booting; wait until it really serves.
if command -v rabbitmqctl >/dev/null 2>&1; then
  $SUDO timeout 60 rabbitmqctl await_startup >/dev/null 2>&1 || {
    echo "services: rabbitmq did not finish starting" >&2
    exit 1
  }
fi
echo "services: nats-server and rabbitmq-server are up"
