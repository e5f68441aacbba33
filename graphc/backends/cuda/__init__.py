"""The ``cuda`` backend: generated CUDA C (NVRTC through cupy), cuBLAS, one device arena,
optional CUDA graph capture. Importing it never imports cupy; compiling a graph does."""
