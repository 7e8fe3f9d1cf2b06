"""The MXNet 1.9.1 engine: Gluon networks, MXNet's C++ record iterator, ps-lite for hosts."""
