"""Thin Starlette routes, one module per surface: parse, call the core, serialise."""
