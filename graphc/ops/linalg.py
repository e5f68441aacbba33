"""PLACEHOLDER: being written."""
def matmul(*a, **k): raise NotImplementedError
