"""The path types certificate and key files are given as; no ``cryptography`` needed."""

from __future__ import annotations

import os

#: A file or directory, as text or a path object.
StrPath = str | os.PathLike[str]
#: A certificate in three files: the chain CA, the certificate, its private key.
CertPaths = tuple[StrPath, StrPath, StrPath]
