"""fatune_build.py: the PEP 517 build backend of fatune's wheel (pyproject.toml names it).

`pip install .` or `pip wheel .` call build_wheel(), which runs the project's Makefile (make lib,
the fatune CLI and the extension, in the build directory: config setting build-dir, default
build) and zips what a machine without a compiler, Lua or SQLite needs to run them:

    fatune/__init__.py, _torch.py, integrations/   the Python package
    fatune/_fatune.abi3.so                          the extension (limited API: CPython 3.10+)
    fatune/libfatune.so                             the runtime library (RUNPATH $ORIGIN)
    fatune/liblua5.4.so.0, fatune/libsqlite3.so.0   its Lua and SQLite, bundled beside it (Debian's
                                                    static archives are not PIC, so they cannot be
                                                    linked into a shared library)
    fatune-V.data/scripts/fatune                    the CLI (Lua and SQLite linked statically),
                                                    installed on PATH (the venv's bin/)

Like auditwheel, it bundles every shared library the ELF files need except those the manylinux
policy lets a wheel expect from the system (glibc's), refuses a dependency it can neither bundle
nor expect, and tags the wheel manylinux_2_N for the newest glibc symbol version the files use.
No third-party build requirement: it runs offline, with build isolation or without.
"""
import base64
import hashlib
import os
import re
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "fatune"
SUMMARY = "FlashAttention kernels from Lua templates, compiled with NVRTC and tuned per GPU"
# Libraries every manylinux platform has (PEP 600 / auditwheel's policy): never bundled.
SYSTEM_LIBS = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libgcc_s.so.1",
               "ld-linux-x86-64.so.2", "libutil.so.1", "libstdc++.so.6"}
# Bundled where the build links them dynamically.
BUNDLE = ("liblua5.4.so.0", "libsqlite3.so.0")


def _version():
    with open(os.path.join(ROOT, "runtime", "fatune.h")) as f:
        m = re.search(r'#define FAT_VERSION "([^"]+)"', f.read())
    if not m:
        raise RuntimeError("fatune_build: no FAT_VERSION in runtime/fatune.h")
    return m.group(1)


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def _metadata(version):
    return ("Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: %s\nRequires-Python: >=3.10\n"
            "License: see the source tree\nProvides-Extra: torch\nProvides-Extra: transformers\n"
            "Requires-Dist: torch; extra == \"torch\"\nRequires-Dist: transformers; extra == \"transformers\"\n"
            % (NAME, version, SUMMARY))


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    version = _version()
    d = os.path.join(metadata_directory, "%s-%s.dist-info" % (NAME, version))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "METADATA"), "w") as f:
        f.write(_metadata(version))
    return os.path.basename(d)


def _setting(config_settings, key, default):
    v = (config_settings or {}).get(key, default)
    return v[-1] if isinstance(v, list) else v


def _run(cmd, **kw):
    """subprocess.run, a missing tool named as such."""
    try:
        return subprocess.run(cmd, **kw)
    except FileNotFoundError:
        raise RuntimeError("fatune_build: `%s` is not installed; building fatune's wheel needs make, a C compiler "
                           "and binutils (readelf), with ldd" % cmd[0]) from None


def _make(build, jobs):
    cmd = ["make", "--no-print-directory", "-j%d" % jobs, "BUILD=%s" % build, "PYTHON=%s" % sys.executable,
           "lib", "%s/fatune" % build, "python"]
    print("fatune_build: %s" % " ".join(cmd), file=sys.stderr)
    r = _run(cmd, cwd=ROOT, stdout=sys.stderr, stderr=sys.stderr)
    if r.returncode != 0:
        raise RuntimeError("fatune_build: `%s` failed (exit %d); its output is above" % (" ".join(cmd), r.returncode))


def _needed(path):
    """DT_NEEDED of an ELF file."""
    out = _run(["readelf", "-d", "-W", path], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
    return needed


def _resolve(path):
    """soname -> path as the system loader finds the dependencies of path (ldd)."""
    out = _run(["ldd", path], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (\S+) \(", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def _glibc(data):
    """The newest GLIBC_2.N version an ELF file asks for (its version-needed strings)."""
    vs = [int(m) for m in re.findall(rb"GLIBC_2\.(\d+)", data)]
    return max(vs) if vs else 17


def _payload(build):
    """(archive name, path, executable) of every file of the wheel but its dist-info."""
    version = _version()
    files = []
    for sub in ("", "integrations"):
        d = os.path.join(ROOT, "python", NAME, sub)
        for n in sorted(os.listdir(d)):
            if n.endswith(".py"):
                files.append(("/".join(x for x in (NAME, sub, n) if x), os.path.join(d, n), False))
    lib = os.path.join(build, "libfatune.so")
    files.append((NAME + "/_fatune.abi3.so", os.path.join(build, "_fatune.abi3.so"), True))
    files.append((NAME + "/libfatune.so", lib, True))
    files.append(("%s-%s.data/scripts/fatune" % (NAME, version), os.path.join(build, "fatune"), True))
    elves = [p for _, p, _ in files if p.endswith(".so") or p.endswith("/fatune")]
    for p in elves:
        with open(p, "rb") as f:
            if b"__asan_init" in f.read():
                raise RuntimeError("fatune_build: %s is a sanitizer build (make SAN=...); build the wheel from a plain "
                                   "one: pip wheel . -C build-dir=build-wheel" % p)
    resolved = _resolve(lib)
    bundled = []
    for p in elves:
        for so in _needed(p):
            if so in SYSTEM_LIBS or so in ("libfatune.so",) or so in bundled:
                continue
            if so not in BUNDLE or so not in resolved:
                raise RuntimeError("fatune_build: %s needs %s, which a wheel can neither expect on the target system "
                                   "nor bundle from here" % (p, so))
            bundled.append(so)
            files.append((NAME + "/" + so, os.path.realpath(resolved[so]), True))
    for so in list(bundled):                               # what the bundled libraries need in turn
        for dep in _needed(os.path.realpath(resolved[so])):
            if dep not in SYSTEM_LIBS and dep not in bundled:
                raise RuntimeError("fatune_build: %s needs %s, which is not bundled" % (so, dep))
    return files


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    build = _setting(config_settings, "build-dir", "build")
    jobs = int(_setting(config_settings, "jobs", os.cpu_count() or 1))
    build_abs = build if os.path.isabs(build) else os.path.join(ROOT, build)
    _make(build, jobs)
    version = _version()
    files = _payload(build_abs)
    glibc = 17
    for _, p, _ in files:
        if p.endswith(".so") or p.endswith(".so.0") or p.endswith("/fatune"):
            with open(p, "rb") as f:
                glibc = max(glibc, _glibc(f.read()))
    tag = "cp310-abi3-manylinux_2_%d_x86_64" % glibc
    name = "%s-%s-%s.whl" % (NAME, version, tag)
    distinfo = "%s-%s.dist-info" % (NAME, version)
    os.makedirs(wheel_directory, exist_ok=True)
    path = os.path.join(wheel_directory, name)
    tmp = path + ".tmp"
    record = []
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        def add(arcname, data, executable=False):
            info = zipfile.ZipInfo(arcname, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
            record.append(_record_line(arcname, data))

        for arcname, p, executable in files:
            with open(p, "rb") as f:
                add(arcname, f.read(), executable)
        add(distinfo + "/METADATA", _metadata(version).encode())
        add(distinfo + "/WHEEL", ("Wheel-Version: 1.0\nGenerator: fatune_build\nRoot-Is-Purelib: false\nTag: %s\n"
                                  % tag).encode())
        add(distinfo + "/top_level.txt", (NAME + "\n").encode())
        record.append(distinfo + "/RECORD,,")
        z.writestr(zipfile.ZipInfo(distinfo + "/RECORD", date_time=(2026, 1, 1, 0, 0, 0)),
                   ("\n".join(record) + "\n").encode())
    os.replace(tmp, path)
    print("fatune_build: wrote %s" % path, file=sys.stderr)
    return name
