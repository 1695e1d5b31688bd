"""Security building blocks: certificates, TLS, node identity and private-topic keys.

* ``certs``: a chain CA and the node/SDK certificates it signs (ECDSA or RSA),
  with their roles in extendedKeyUsage, plus ``node_id_from_cert``.
* ``network_certs``: what ``amop certs`` writes for a local network, reused
  when run again (``create_network_certs``).
* ``layout``: the FISCO 2.x and 3.x certificate directories, and what a node
  loads from them.
* ``identity``: certificate roles, node ids derived from keys, and the
  signing and checking of link-state advertisements.
* ``tls``: ``ssl.SSLContext`` factories trusting only the chain's CAs, and
  ``ServerTLS``, which serves 2.x (secp256k1, TLS 1.2) and 3.x (OpenSSL
  defaults) clients on one port, choosing by the ClientHello (``clienthello``).
* ``keys``: secp256k1 key pairs, Ethereum Keccak-256 and 65-byte recoverable
  signatures (r||s||v, low s) for the private-topic challenge of PROTOCOL.md
  section 3.
"""
