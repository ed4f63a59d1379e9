#!/usr/bin/env bash
# Local Apache Kafka (KRaft) support for Flowline tests and the demo.
#
#   kafka.sh fetch [LIBS_DIR]   resolve the broker's runtime jars with Maven into LIBS_DIR
#                               (default: deploy/kafka/libs); a no-op when already up to date
#   kafka.sh clean [LIBS_DIR]   remove the resolved jars
#
# The broker itself is started by services/common/brokers.py (ApacheKafkaBroker), which
# renders server.properties.template and uses log4j2.properties from this directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/pom.xml"

die() { echo "kafka.sh: $*" >&2; exit 1; }

# The stamp is the pom's hash: editing the pom (e.g. a Kafka version bump) refetches,
# while an unchanged pom keeps `fetch` at a few milliseconds.
pom_stamp() { sha256sum "$pom" | cut -d' ' -f1; }

fetch() {
  local libs="${1:-$here/libs}" stamp
  stamp="$(pom_stamp)"
  if [[ -f "$libs/.stamp" && "$(cat "$libs/.stamp")" == "$stamp" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 \
    || die "mvn not found: install Maven 3.6+ (e.g. 'apt-get install maven') and retry"
  mkdir -p "$(dirname "$libs")"
  # Several test processes may call fetch at once; serialise them and re-check once
  # the lock is held so only the first one pays for Maven.
  exec 9>"$libs.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  if [[ -f "$libs/.stamp" && "$(cat "$libs/.stamp")" == "$stamp" ]]; then
    return 0
  fi
  # Resolve into a scratch dir and swap it in, so an interrupted fetch never leaves a
  # half-populated libs dir that looks complete.
  local tmp="$libs.tmp.$$"
  rm -rf "$tmp"
  local mvn_args=(-q -B -f "$pom" dependency:copy-dependencies
                  "-DoutputDirectory=$tmp" -DincludeScope=runtime)
  # Offline first: on a machine with a warm ~/.m2 this avoids any network round trip.
  if ! mvn -o "${mvn_args[@]}" >/dev/null 2>&1; then
    rm -rf "$tmp"
    mvn "${mvn_args[@]}" || { rm -rf "$tmp"; die "Maven could not resolve $pom"; }
  fi
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "no kafka jar in $tmp"; }
  echo "$stamp" >"$tmp/.stamp"
  rm -rf "$libs"
  mv "$tmp" "$libs"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  fetch) fetch "$@" ;;
  clean) rm -rf "${1:-$here/libs}" "${1:-$here/libs}.lock" ;;
  *) die "usage: kafka.sh fetch|clean [LIBS_DIR]" ;;
esac
