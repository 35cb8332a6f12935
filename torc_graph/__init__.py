"""torc_graph: a graph-database-backed workflow manager, wire-compatible with torc v0.6.4."""

__version__ = "0.1.0"
