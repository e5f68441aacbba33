"""The op definitions, one module per family; `registry` holds the table they fill.

Families are imported by `graphc/__init__.py` (not here) so that `graphc.ops.registry`
can be imported by the IR without pulling in the tensor front end.
"""
