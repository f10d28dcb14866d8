#!/bin/sh
# Writes keystone.pem into this folder: a self-signed certificate and its key in one file, as HAProxy's
# `crt` wants them, for the names a loopback test uses (keystone.example, localhost, 127.0.0.1). Run again
# to replace it. It is only for the example: git ignores it, and production uses the service's own.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
  -subj /CN=keystone.example \
  -addext subjectAltName=DNS:keystone.example,DNS:localhost,IP:127.0.0.1 \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
umask 077
cat "$tmp/cert.pem" "$tmp/key.pem" > keystone.pem
echo "wrote $(pwd)/keystone.pem"
