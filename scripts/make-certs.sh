#!/bin/sh
# Self-signed CA and a SuperLink certificate for `flchain server --certificates DIR`.
# Usage: scripts/make-certs.sh DIR [HOST_OR_IP ...]   (default: localhost 127.0.0.1)
# Writes DIR/ca.crt, DIR/ca.key, DIR/server.pem, DIR/server.key. Give clients DIR/ca.crt only.
set -eu
dir=${1:?usage: make-certs.sh DIR [HOST_OR_IP ...]}
shift
[ $# -gt 0 ] || set -- localhost 127.0.0.1
mkdir -p "$dir"
san=""
for h in "$@"; do
  case "$h" in
    *[!0-9.]*) entry="DNS:$h" ;;
    *) entry="IP:$h" ;;
  esac
  san="${san:+$san,}$entry"
done
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=flchain-ca" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" \
  -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$san" > "$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 365 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
chmod 600 "$dir/ca.key" "$dir/server.key"
echo "wrote $dir/ca.crt $dir/server.pem $dir/server.key (SAN: $san)"
