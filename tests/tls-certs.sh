#!/bin/sh
# The TLS tests' and benchmarks' certificates, made in the current directory
# with the openssl command: sh tests/tls-certs.sh. The unit tests, the CPython
# interop suite and bench_tls all use this one set; whoever changes it renames
# the set in tests/CMakeLists.txt (MPCONN_TLS_CERTS) so stale copies are not used.
#
# ca (RSA-2048) signs server (RSA-2048), server_ec, client, expired, other;
# wild (*.wild.test, f*.part.test), future (valid from 2099); bench (RSA-2048:
# localhost, 127.0.0.1 and *.bench.test, so a client may name the server
# many ways); rogue signs untrusted and rogueclient; self is self-signed.
set -e
ec='-newkey ec -pkeyopt ec_paramgen_curve:P-256'
cax='-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign'
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -subj /CN=mpconn-test-ca -days 3 $cax
openssl req -x509 $ec -nodes -keyout rogue.key -out rogue.pem -subj /CN=rogue-ca -days 3 $cax
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'subjectAltName=DNS:other.example\nextendedKeyUsage=serverAuth\n' > other.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
printf 'subjectAltName=DNS:*.wild.test,DNS:f*.part.test\n' > wild.ext
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:*.bench.test\nextendedKeyUsage=serverAuth\n' > bench.ext
leaf() {
  name=$1 cn=$2 ca=$3 ext=$4 days=$5; shift 5
  openssl req "$@" -nodes -keyout $name.key -out $name.csr -subj /CN=$cn
  openssl x509 -req -in $name.csr -CA $ca.pem -CAkey $ca.key -CAcreateserial -days $days -extfile $ext -out $name.pem
}
leaf server localhost ca server.ext 3 -newkey rsa:2048
leaf server_ec localhost ca server.ext 3 $ec
leaf client client ca client.ext 3 $ec
leaf expired localhost ca server.ext -1 $ec
leaf other other.example ca other.ext 3 $ec
leaf untrusted localhost rogue server.ext 3 $ec
leaf wild wild ca wild.ext 3 $ec
leaf rogueclient client rogue client.ext 3 $ec
leaf bench localhost ca bench.ext 3 -newkey rsa:2048
# x509 -req sets no start date; `openssl ca` does
mkdir db && touch db/index.txt && echo 1000 > db/serial
printf '[ca]\ndefault_ca=c\n[c]\ndatabase=db/index.txt\nnew_certs_dir=db\nserial=db/serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' > ca.cnf
openssl req $ec -nodes -keyout future.key -out future.csr -subj /CN=localhost
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in future.csr -out future.pem -startdate 20990101000000Z -enddate 20990201000000Z -extfile server.ext
openssl req -x509 $ec -nodes -keyout self.key -out self.pem -subj /CN=localhost -days 3 -addext subjectAltName=DNS:localhost,IP:127.0.0.1
openssl pkey -in server.key -aes256 -passout pass:sesame -out server-enc.key
cat server.pem server.key > server-both.pem
mkdir cadir && cp ca.pem cadir/ && openssl rehash cadir
