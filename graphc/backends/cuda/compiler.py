"""Compiling generated CUDA C with nvcc, for tests and ``graphc doctor``.

The runtime compiles with NVRTC (through cupy) on a machine with a GPU; machines without
one (CI, development) still have nvcc, so every generated translation unit is checked by
``nvcc --ptx`` here: a compile error in generated code fails a test instead of a user's
first GPU run. `source_key` names a compiled source in caches (in memory and on disk).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile

from ...errors import BackendError

#: Bump when what a cached compilation depends on changes besides the source and arch
#: (options, the prelude's contract with the runtime).
FORMAT_VERSION = 1
#: Options every compilation uses: C++17 (hex float literals), no fast math.
OPTIONS = ("-std=c++17",)


def nvcc_path() -> str | None:
    """The nvcc executable on PATH (or in $CUDA_HOME/bin), or None."""
    found = shutil.which("nvcc")
    if found is None:
        home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
        candidate = os.path.join(home, "bin", "nvcc") if home else None
        if candidate and os.access(candidate, os.X_OK):
            found = candidate
    return found


def nvcc_available() -> bool:
    return nvcc_path() is not None


def source_key(source: str, arch: str = "sm_90") -> str:
    """A cache key of ``source`` compiled for ``arch``."""
    h = hashlib.sha256()
    for part in (f"graphc-cuda-{FORMAT_VERSION}", arch, " ".join(OPTIONS), source):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _first_errors(text: str, limit: int = 12) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    errors = [i for i, ln in enumerate(lines) if re.search(r"\berror\b", ln)]
    if not errors:
        return "\n".join(lines[:limit])
    out: list[str] = []
    for i in errors:
        out += lines[i:i + 3]   # the message and the source line nvcc quotes with it
        if len(out) >= limit:
            break
    return "\n".join(out[:limit])


def ptx(source: str, arch: str = "sm_90", optimize: bool = True, options: tuple = (),
        timeout: float = 300.0) -> str:
    """PTX of the CUDA C translation unit ``source`` for ``arch`` (``nvcc --ptx``);
    `BackendError` with nvcc's first errors when it fails, or when nvcc is missing.
    ``optimize=False`` skips the device optimizer (``-Xcicc -O0``): the same errors, six
    times faster, for checking that generated code compiles. ``options``: more nvcc
    options (the tests add ``-Werror all-warnings``)."""
    nvcc = nvcc_path()
    if nvcc is None:
        raise BackendError("nvcc was not found on PATH (nor in $CUDA_HOME/bin): install the "
                           "CUDA toolkit to compile CUDA kernels ahead of time")
    with tempfile.TemporaryDirectory(prefix="graphc-nvcc-") as d:
        src, out = os.path.join(d, "kernels.cu"), os.path.join(d, "kernels.ptx")
        with open(src, "w") as f:
            f.write(source)
        cmd = [nvcc, "--ptx", f"-arch={arch}", *OPTIONS, *(() if optimize else ("-Xcicc", "-O0")),
               *options, "-x", "cu", "-o", out, src]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BackendError(f"nvcc could not compile the generated kernels: {e}") from None
        if proc.returncode != 0 or not os.path.exists(out):
            msg = _first_errors(proc.stderr + proc.stdout)
            raise BackendError(f"nvcc failed on the generated kernels (exit "
                               f"{proc.returncode}):\n{msg}")
        with open(out) as f:
            return f.read()
