"""A PEP 517 build backend in the standard library only, so that
``pip install ./python`` needs nothing from a package index, not even
setuptools or wheel (build isolation installs no build requirements)."""
import base64
import hashlib
import io
import os
import tarfile
import zipfile

NAME = "effect_ipc"
DIST = "effect_ipc"
VERSION = "0.1.0"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = "py3-none-any"


def _metadata():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    return (
        "Metadata-Version: 2.1\n"
        "Name: effect-ipc\n"
        "Version: %s\n"
        "Summary: effect-ipc for Python: byte channels, ChildPipe children, effect/rpc JSON RPC and file:// logs\n"
        "License: MIT\n"
        "Requires-Python: >=3.7\n"
        "Description-Content-Type: text/markdown\n\n%s" % (VERSION, readme)
    )


def _package_files():
    base = os.path.join(ROOT, NAME)
    for name in sorted(os.listdir(base)):
        if name.endswith(".py"):
            yield os.path.join(base, name), "%s/%s" % (NAME, name)


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d\n" % (path, digest, len(data))


def _wheel(directory, files):
    """Writes a wheel holding ``files`` (archive name -> bytes) and the metadata; returns its file name."""
    info = "%s-%s.dist-info" % (DIST, VERSION)
    entries = list(files.items()) + [
        ("%s/METADATA" % info, _metadata().encode("utf-8")),
        ("%s/WHEEL" % info, ("Wheel-Version: 1.0\nGenerator: effect_ipc_build\nRoot-Is-Purelib: true\nTag: %s\n"
                             % TAG).encode()),
        ("%s/top_level.txt" % info, (NAME + "\n").encode()),
    ]
    record = "".join(_record_line(name, data) for name, data in entries) + "%s/RECORD,,\n" % info
    filename = "%s-%s-%s.whl" % (DIST, VERSION, TAG)
    with zipfile.ZipFile(os.path.join(directory, filename), "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
        archive.writestr("%s/RECORD" % info, record)
    return filename


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = {}
    for path, name in _package_files():
        with open(path, "rb") as f:
            files[name] = f.read()
    return _wheel(wheel_directory, files)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {"%s.pth" % NAME: (ROOT + "\n").encode()})


def build_sdist(sdist_directory, config_settings=None):
    base = "%s-%s" % (DIST, VERSION)
    filename = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz") as archive:
        for name in ("pyproject.toml", "README.md", "_build/effect_ipc_build.py"):
            archive.add(os.path.join(ROOT, name), "%s/%s" % (base, name))
        for path, name in _package_files():
            archive.add(path, "%s/%s" % (base, name))
        info = tarfile.TarInfo("%s/PKG-INFO" % base)
        data = _metadata().encode("utf-8")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return filename
