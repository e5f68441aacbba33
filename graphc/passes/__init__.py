"""Graph -> Graph passes (autodiff, simplify, fusion, memory planning) and their pipeline.

Every pass is a plain function taking a Graph and returning a Graph; see
docs/ARCHITECTURE.md. The passes themselves arrive with the passes issue.
"""
