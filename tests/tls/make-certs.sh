#!/bin/sh
# make-certs.sh - the throwaway certificates of the TLS tests, made once
# and kept in the tree (they expire in 100 years). Run it in tests/tls/ to
# make new ones. Nothing here protects anything: the keys are public.
#
#   ca.pem            the test cluster's CA
#   node.pem/.key     a node: 127.0.0.1 and localhost, signed by ca.pem,
#                     usable as a server and as a peer (client)
#   other-ca.pem      a CA that signed none of the above (a wrong CA)
#   rogue.pem/.key    a client certificate other-ca signed (not a peer)
set -eu
days=36500
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

openssl req -x509 $ec -keyout ca.key -out ca.pem -days $days \
	-subj "/CN=kvshard test CA" 2>/dev/null
openssl req -x509 $ec -keyout other-ca.key -out other-ca.pem -days $days \
	-subj "/CN=kvshard other test CA" 2>/dev/null

# sign NAME CA: NAME.pem and NAME.key, signed by CA.pem/CA.key
sign() {
	openssl req $ec -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
	cat > "$1.ext" <<EXT
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
EXT
	openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" \
		-CAcreateserial -out "$1.pem" -days $days -extfile "$1.ext" \
		2>/dev/null
	rm -f "$1.csr" "$1.ext"
}
sign node ca
sign rogue other-ca
rm -f ca.key other-ca.key ./*.srl
