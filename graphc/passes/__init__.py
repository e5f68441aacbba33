"""Graph -> Graph passes (autodiff, simplify, fusion, memory planning) and their pipeline.

Every pass is a plain function taking a Graph and returning a Graph; see
docs/ARCHITECTURE.md. The passes themselves arrive with the passes issue.
`autodiff.differentiate`: a graph -> joint, forward and backward graphs, saved values explicit.
"""
