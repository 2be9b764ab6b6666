"""llama.cpp's ``llama-imatrix`` and ``llama-quantize`` command-line tools, built once from the llama.cpp source that
the installed ``llama-cpp-python`` vendors, and cached.

Why: the Python package quantises through ``llama_model_quantize``, whose ``imatrix`` parameter is a pointer to a C++
``std::unordered_map`` (not reachable through ctypes), and pip builds neither tool. llama.cpp's i-quants of 1 to 2
bits per weight (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S) refuse to quantise without an importance matrix, so
benchmarks/vs_llamacpp.py makes those files with the tools. Building from the SAME source as the library that later
loads the files (the package's sdist, ``vendor/llama.cpp``) keeps the GGUF and imatrix formats in step.

The build (``build_tools``; about 10-20 minutes on one core), in ``cache_dir()/llama.cpp-tools/<version>/``::

    pip download llama-cpp-python==<version> --no-deps --no-binary :all: -d sdist/
    tar xzf sdist/llama_cpp_python-<version>.tar.gz -C src/
    cmake -S src/llama_cpp_python-<version>/vendor/llama.cpp -B build -DCMAKE_BUILD_TYPE=Release \\
        -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON \\
        -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \\
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \\
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON
    nice -n 10 cmake --build build --config Release --target llama-imatrix llama-quantize -j1

then the two (statically linked) executables are copied to ``bin/``; cmake's output is kept in ``build.log``. The
AVX-512 / AMX-off flags are those of the llama-cpp-python build the committed numbers come from (see
benchmarks/vs_llamacpp.py: a native build's AMX matmul crashed in this machine's virtual machine); on a CPU without
AVX-512 pass ``flags=PORTABLE_FLAGS`` (or set MECHLAB_LLAMACPP_PORTABLE=1). Quantisation itself does not depend on
the SIMD flags (llama.cpp quantises with its reference C code); the imatrix pass runs the F32 model's matmuls, whose
float32 last bits do.

Needs cmake (``pip install torch==2.13.0 cmake`` provides one), a C/C++ compiler and the sdist (PyPI, or a cached
copy under ``sdist/``). Where one is missing, :func:`llama_tools` prints one line saying what and returns None.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import NamedTuple

from mechlab.data.corpora import cache_dir

TOOLS = ("llama-imatrix", "llama-quantize")
COMMON_FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
                "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
                "-DLLAMA_BUILD_TOOLS=ON"]
# AVX-512 kernels, AMX off: the flags of the llama-cpp-python build that runs the files (vs_llamacpp.py's docstring)
AVX512_FLAGS = ["-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_AVX512=ON",
                "-DGGML_AVX512_VNNI=ON", "-DGGML_AVX512_BF16=ON", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF",
                "-DGGML_AMX_BF16=OFF"]
# the portable x86-64-v3 build of .ci/run
PORTABLE_FLAGS = ["-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON"]


class LlamaTools(NamedTuple):
    """Paths of the two built executables."""

    imatrix: Path
    quantize: Path


def installed_version() -> str | None:
    """The version of the installed ``llama_cpp`` package (e.g. "0.3.36"), or None where it is not installed."""
    try:
        import llama_cpp
    except ImportError:
        return None
    return getattr(llama_cpp, "__version__", None)


def tools_root(version: str) -> Path:
    """Where the build of ``version`` lives: ``cache_dir()/llama.cpp-tools/<version>`` (sdist/, src/, build/,
    build.log, bin/)."""
    return cache_dir() / "llama.cpp-tools" / version


def cached_tools(version: str) -> LlamaTools | None:
    """The cached executables of ``version``, or None where either is missing."""
    bin_dir = tools_root(version) / "bin"
    paths = LlamaTools(*(bin_dir / name for name in TOOLS))
    return paths if all(os.access(p, os.X_OK) for p in paths) else None


def missing_prerequisite() -> str | None:
    """One line naming what the build lacks on this machine (cmake, a C or C++ compiler), or None."""
    if shutil.which("cmake") is None:
        return "cmake is not installed (pip install torch==2.13.0 cmake provides one)"
    if not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")):
        return "no C compiler (cc, gcc or clang) on PATH"
    if not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")):
        return "no C++ compiler (c++, g++ or clang++) on PATH"
    return None


def _sdist(version: str, root: Path, log) -> Path | None:
    """The package's source archive: the cached one under root/sdist, else downloaded there with pip."""
    sdist_dir = root / "sdist"
    found = sorted(sdist_dir.glob(f"llama_cpp_python-{version}.tar.gz"))
    if found:
        return found[0]
    sdist_dir.mkdir(parents=True, exist_ok=True)
    log(f"llama.cpp tools: downloading the llama-cpp-python {version} sdist")
    cmd = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-deps", "--no-binary",
           ":all:", "--disable-pip-version-check", "-d", str(sdist_dir)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        return None
    found = sorted(sdist_dir.glob(f"llama_cpp_python-{version}.tar.gz"))
    return found[0] if found else None


def _run_logged(cmd: list[str], logfile: Path, log) -> bool:
    """Run ``cmd``, appending its output to ``logfile``; print a progress line per build step reported."""
    with logfile.open("a", buffering=1) as fh:  # line-buffered: the log can be followed while it builds
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        last = 0.0
        for line in proc.stdout:
            fh.write(line)
            if line.startswith("[") and "%]" in line[:8] and time.monotonic() - last > 30:  # cmake's "[ 42%] ..."
                log(f"llama.cpp tools: {line.strip()[:100]}")
                last = time.monotonic()
        return proc.wait() == 0


def build_tools(version: str, jobs: int = 1, niceness: int = 10, flags: list[str] | None = None,
                log=print) -> LlamaTools | None:
    """Build ``llama-imatrix`` and ``llama-quantize`` of llama-cpp-python ``version``'s vendored llama.cpp into
    :func:`tools_root` (the commands of the module docstring; ``jobs`` compile jobs under ``nice -n niceness``).
    Returns their paths, or None after printing one line saying why it could not build (the full cmake output is in
    build.log)."""
    root = tools_root(version)
    why = missing_prerequisite()
    if why is not None:
        log(f"llama.cpp tools: cannot build: {why}")
        return None
    sdist = _sdist(version, root, log)
    if sdist is None:
        log(f"llama.cpp tools: cannot build: no llama-cpp-python {version} sdist (pip download failed: no network?) "
            f"and none cached under {root / 'sdist'}")
        return None
    src = root / "src"
    tree = src / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if not (tree / "CMakeLists.txt").is_file():
        log(f"llama.cpp tools: unpacking {sdist.name}")
        shutil.rmtree(src, ignore_errors=True)
        with tarfile.open(sdist) as tar:
            tar.extractall(src, filter="data")
    if not (tree / "CMakeLists.txt").is_file():
        log(f"llama.cpp tools: cannot build: {sdist.name} holds no vendor/llama.cpp")
        return None
    if flags is None:
        flags = PORTABLE_FLAGS if os.environ.get("MECHLAB_LLAMACPP_PORTABLE") else AVX512_FLAGS
    build, logfile = root / "build", root / "build.log"
    logfile.write_text("")
    log(f"llama.cpp tools: building {' and '.join(TOOLS)} with {jobs} job(s) (cmake output in {logfile}; "
        f"10-20 minutes on one core)")
    configure = ["cmake", "-S", str(tree), "-B", str(build), *COMMON_FLAGS, *flags]
    compile_ = ["nice", "-n", str(niceness), "cmake", "--build", str(build), "--config", "Release", "--target",
                *TOOLS, f"-j{jobs}"]
    if shutil.which("nice") is None:
        compile_ = compile_[3:]
    for cmd in (configure, compile_):
        if not _run_logged(cmd, logfile, log):
            log(f"llama.cpp tools: cannot build: '{' '.join(cmd[:4])} ...' failed (see {logfile})")
            return None
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in TOOLS:
        built = next((p for p in (build / "bin" / name, build / "bin" / "Release" / name) if p.is_file()), None)
        if built is None:
            log(f"llama.cpp tools: cannot build: cmake made no {name} (see {logfile})")
            return None
        part = bin_dir / f"{name}.part"
        shutil.copy2(built, part)
        part.replace(bin_dir / name)
    log(f"llama.cpp tools: built into {bin_dir}")
    return cached_tools(version)


def llama_tools(version: str | None = None, jobs: int = 1, log=print) -> LlamaTools | None:
    """The two executables for llama-cpp-python ``version`` (default: the installed package's), built once and then
    read from the cache. None (with one printed line) where llama_cpp is not installed or the build cannot run."""
    version = version or installed_version()
    if version is None:
        log("llama.cpp tools: llama_cpp is not installed, so there is no version to build the tools of")
        return None
    return cached_tools(version) or build_tools(version, jobs=jobs, log=log)


def main() -> None:
    """``python benchmarks/llamacpp_tools.py [VERSION]``: build (or find) the tools and print their paths."""
    tools = llama_tools(sys.argv[1] if len(sys.argv) > 1 else None)
    if tools is None:
        raise SystemExit(1)
    print(*tools, sep="\n")


if __name__ == "__main__":
    main()
