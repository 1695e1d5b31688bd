"""Sans-I/O codecs: bytes in, frames out and back. Imports no Trio, no sockets, no clock."""
