"""Security building blocks: certificates, mutual-TLS contexts and private-topic keys.

* ``certs``: a chain CA and the node/SDK certificates it signs, written in the
  FISCO BCOS file layout (``ca.crt``/``ca.key``, ``node.crt``/``node.key``,
  ``sdk.crt``/``sdk.key``), plus ``node_id_from_cert``.
* ``tls``: ``ssl.SSLContext`` factories for mutual TLS that trust only the chain
  CA, with the secp256k1 workaround (TLS 1.2 and the secp256k1 ECDH group).
* ``keys``: secp256k1 key pairs, Ethereum Keccak-256 and 65-byte recoverable
  signatures (r||s||v, low s) for the private-topic challenge of PROTOCOL.md
  section 3.
"""
