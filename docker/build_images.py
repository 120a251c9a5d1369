"""`make images`: build the images of docker/images.toml with buildah, start each, record sizes.

No Docker engine and no registry here: the base is Debian bookworm's own Python 3.11, made with
mmdebstrap and imported as localhost/motionnft-base:bookworm (cached), and buildah builds on top of
it (vfs storage, chroot isolation). Each service image is then started from the image exactly as its
CMD says (`buildah run`, host network, a free loopback port through `<PREFIX>PORT`) until `/readyz`
answers 200; its HEALTHCHECK command runs inside it too. The slim judge image must hold no torch.
Sizes go to docs/images.md. Safe to re-run: an image whose inputs (Dockerfile, context files) are
unchanged is not rebuilt (--force rebuilds), working containers are always removed, every wait is
bounded. stdlib only (run with any Python >= 3.11).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILDAH = ["buildah", "--storage-driver", "vfs"]
BASE_IMAGE = "localhost/motionnft-base:bookworm"
WORK = ROOT / "build" / "images"  # ignored by git: the base rootfs tarball and build logs
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY = os.environ.get("DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# PyTorch's CPU index is unreachable here: the CPU reward image built here takes torch from PyPI
# (the CUDA build, ~5 GB more); a production build keeps the Dockerfile's default, the CPU index.
TORCH_INDEX_HERE = os.environ.get("TORCH_INDEX_URL", "https://pypi.org/simple")
INPUTS_LABEL = "org.motionnft.inputs"
READY_TIMEOUT_S = 180.0
BUILD_TIMEOUT_S = 3600.0
# Free disk a build here needs, GB: vfs keeps the whole image's rootfs in the working container, the
# committed layer and the layer's blob in TMPDIR at once (about 3 x its size; measured peaks: the
# reward image with PyPI's CUDA torch 18 GB in storage plus its 6 GB blob). Checked before building.
BUILD_DISK_GB = {"reward-api": 20.0, "mllm-judge": 3.0, "trainer": 23.0}
STORAGE = Path("/var/lib/containers/storage")  # buildah's default root for root, vfs included
HEAVY = {"torch", "torchvision", "transformers", "nvidia", "triton"}  # what the slim judge must not hold
START, END = "<!-- images:start -->", "<!-- images:end -->"
PREFIXES = {"reward_api": "REWARD_API_", "mllm_judge": "MLLM_JUDGE_"}


def log(message: str) -> None:
    print(f"[images] {message}", flush=True)


def sh(args: list[str], *, timeout: float = 600.0, check: bool = True, quiet: bool = False) -> str:
    """Run a command (bounded), return its stdout; on failure show what it said."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise SystemExit(
            f"failed ({result.returncode}): {' '.join(args)}\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
        )
    if not quiet and result.returncode != 0:
        log(f"(exit {result.returncode}) {' '.join(args)}: {result.stderr.strip()[-500:]}")
    return result.stdout


def image_inspect(ref: str) -> dict | None:
    result = subprocess.run([*BUILDAH, "inspect", "--type", "image", ref], capture_output=True, text=True, timeout=120)
    return json.loads(result.stdout) if result.returncode == 0 else None


def ensure_base() -> None:
    """localhost/motionnft-base:bookworm from Debian's packages (mmdebstrap), unless already there."""
    if image_inspect(BASE_IMAGE) is not None:
        log(f"base {BASE_IMAGE}: present")
        return
    WORK.mkdir(parents=True, exist_ok=True)
    tarball = WORK / "base-rootfs.tar"
    if not tarball.exists():
        log(f"base: mmdebstrap bookworm from {MIRROR} (about a minute)")
        partial = WORK / "base-rootfs.partial.tar"
        sources = [f"deb {MIRROR} bookworm main", f"deb {MIRROR} bookworm-updates main",
                   f"deb {SECURITY} bookworm-security main"]  # fmt: skip
        sh(["mmdebstrap", "--format=tar", "--variant=apt", "--include=python3,python3-venv,ca-certificates",
            "bookworm", str(partial), *sources], timeout=1200)  # fmt: skip
        partial.rename(tarball)  # only a complete tarball is ever reused
    containerfile = WORK / "Base.Containerfile"
    containerfile.write_text('FROM scratch\nADD base-rootfs.tar /\nCMD ["/bin/bash"]\n')
    sh([*BUILDAH, "bud", "--isolation", "chroot", "--format", "docker", "-f", str(containerfile),
        "-t", BASE_IMAGE, str(WORK)], timeout=600)  # fmt: skip
    log(f"base {BASE_IMAGE}: imported")


def free_gb(path: Path) -> float:
    """Free space of the filesystem `path` is on (its nearest existing parent), GB."""
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 1e9


def log_disk() -> None:
    tmp = Path(os.environ.get("TMPDIR", "/var/tmp"))
    log(f"disk: {free_gb(STORAGE):.1f} GB free for {STORAGE}, {free_gb(tmp):.1f} GB for {tmp}")


def check_disk(key: str, ref: str) -> None:
    """Refuse to start a build that cannot finish: a full disk fails it much later, mid-commit."""
    need, free = BUILD_DISK_GB.get(key, 3.0), free_gb(STORAGE)
    if free < need:
        raise SystemExit(
            f"{ref}: building it here needs about {need:.0f} GB free for {STORAGE}, and {free:.1f} GB "
            "are. Free some (`make clean` removes the test venv, 7 GB, which make images does not use) "
            "or build on a machine with more disk."
        )


def context_files() -> list[Path]:
    """The files of the build context after .dockerignore, approximated by its allowlist."""
    allowed = ["pyproject.toml", "README.md", "docker/requirements.py", "docker/healthcheck.py",
               "motionnft", "services", "trainer", "workers", "cli", "configs"]  # fmt: skip
    files: list[Path] = []
    for name in allowed:
        path = ROOT / name
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files += [p for p in candidates if "__pycache__" not in p.parts and not p.name.endswith(".pyc")]
    return files


def inputs_digest(dockerfile: Path) -> str:
    """A hash of what the image is made from: Dockerfile, context files, the build args given here."""
    digest = hashlib.sha256(f"{BASE_IMAGE}\0{TORCH_INDEX_HERE}\0".encode())
    for path in [dockerfile, *context_files()]:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build(key: str, spec: dict, force: bool) -> float | None:
    """Build one image; the seconds it took, or None when the same inputs were built before."""
    ref = f"{spec['image']}:{spec['tag']}"
    dockerfile = ROOT / spec["dockerfile"]
    digest = inputs_digest(dockerfile)
    existing = image_inspect(ref)
    labels = ((existing or {}).get("Docker") or {}).get("config", {}).get("Labels") or {}
    if existing is not None and labels.get(INPUTS_LABEL) == digest and not force:
        log(f"{ref}: up to date (inputs {digest})")
        return None
    check_disk(key, ref)  # just before its build: the images built before it took their share
    log(f"{ref}: building from {spec['dockerfile']}")
    WORK.mkdir(parents=True, exist_ok=True)
    args = [*BUILDAH, "bud", "--isolation", "chroot", "--format", "docker", "--layers=false",
            "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--build-arg", f"TORCH_INDEX_URL={TORCH_INDEX_HERE}",
            "--label", f"{INPUTS_LABEL}={digest}", "-f", str(dockerfile), "-t", ref]  # fmt: skip
    if CA_BUNDLE.exists():  # the machine's CA bundle for pip, read-only, in every RUN; never in a layer
        args += ["--volume", f"{CA_BUNDLE}:/run/motionnft-ca.crt:ro", "--build-arg", "PIP_CERT=/run/motionnft-ca.crt"]
    started = time.monotonic()
    with (WORK / f"{key}.build.log").open("w") as out:
        result = subprocess.run([*args, str(ROOT)], stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S)
    if result.returncode != 0:
        tail = (WORK / f"{key}.build.log").read_text()[-3000:]
        raise SystemExit(f"{ref}: build failed (log {WORK / f'{key}.build.log'}):\n{tail}")
    seconds = time.monotonic() - started
    log(f"{ref}: built in {seconds:.0f} s")
    return seconds


@contextlib.contextmanager
def container(ref: str, name: str) -> Iterator[str]:
    """A working container of `ref`, removed afterwards whatever happens."""
    sh([*BUILDAH, "rm", name], check=False, quiet=True)  # a leftover of an interrupted run
    sh([*BUILDAH, "from", "--pull-never", "--name", name, ref])
    try:
        yield name
    finally:
        sh([*BUILDAH, "rm", name], check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except OSError:
        return 0


def service_pid(root: int, module: str) -> int | None:
    """The pid of the `python -m services.<module>` process under `root` (buildah run's child), if any."""
    for pid in (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()):
        with contextlib.suppress(OSError):
            cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
            # The interpreter itself, not buildah-chroot-exec (whose argv also names the module): a
            # signal to that helper ends `buildah run` with status 1 instead of letting the app drain.
            is_python = Path(cmdline[0].decode(errors="replace")).name.startswith("python")
            if is_python and f"services.{module}".encode() in cmdline and os.getsid(pid) == os.getsid(root):
                return pid
    return None


def check_service(ref: str, spec: dict) -> str:
    """Start the image's CMD as its USER on a free port; wait for /readyz; run HEALTHCHECK; stop it."""
    config = (image_inspect(ref) or {})["Docker"]["config"]
    command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    health = (config.get("Healthcheck") or {}).get("Test") or []
    assert health[:1] == ["CMD"], f"{ref}: HEALTHCHECK missing or not exec form: {health}"
    prefix, port = PREFIXES[spec["serves"]], free_port()
    with container(ref, f"motionnft-check-{spec['serves']}") as name:
        run = [*BUILDAH, "run", "--isolation", "chroot", "--network", "host", "--env", f"{prefix}PORT={port}", name]
        log(f"{ref}: starting {' '.join(command)} on 127.0.0.1:{port} as {config.get('User')}")
        proc = subprocess.Popen([*run, "--", *command], start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        started, status, exit_code = time.monotonic(), 0, None
        try:
            while time.monotonic() - started < READY_TIMEOUT_S and proc.poll() is None:
                status = get(f"http://127.0.0.1:{port}/readyz")
                if status == 200:
                    break
                time.sleep(0.5)
            ready_s = time.monotonic() - started
            if status != 200:
                raise SystemExit(f"{ref}: /readyz not 200 within {READY_TIMEOUT_S:.0f} s (exit {proc.poll()})")
            assert get(f"http://127.0.0.1:{port}/healthz") == 200, "/healthz"
            sh([*run, "--", *health[1:]], timeout=60)  # the HEALTHCHECK command, inside the image
            log(f"{ref}: /readyz 200 after {ready_s:.1f} s; HEALTHCHECK passes")
        finally:
            # SIGTERM to the service process itself (as a kubelet or `docker stop` would): it drains and
            # exits, and `buildah run` returns its exit status. Signalling buildah instead ends buildah.
            with contextlib.suppress(ProcessLookupError):
                os.kill(service_pid(proc.pid, spec["serves"]) or proc.pid, signal.SIGTERM)
            try:
                output, _ = proc.communicate(timeout=45)
                exit_code = proc.returncode
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                output, _ = proc.communicate(timeout=15)
            if status != 200:
                print(output[-3000:], file=sys.stderr)
    log(f"{ref}: SIGTERM -> exit {exit_code}")
    if exit_code != 0:  # the services drain and exit 0 on SIGTERM; anything else is a broken image
        raise SystemExit(f"{ref}: exit status {exit_code} after SIGTERM, not 0:\n{output[-3000:]}")
    return f"/readyz 200 after {ready_s:.0f} s; HEALTHCHECK ok; SIGTERM: drained, exit 0"


def check_no_torch(ref: str) -> str:
    """The slim judge: `import torch` fails and site-packages holds no torch or nvidia-* libraries."""
    with container(ref, "motionnft-check-notorch") as name:
        probe = [*BUILDAH, "run", "--isolation", "chroot", name, "--", "python", "-c", "import torch"]
        assert subprocess.run(probe, capture_output=True, timeout=120).returncode != 0, f"{ref}: torch imports"
        root = Path(sh([*BUILDAH, "mount", name]).strip())
        try:
            site = root.glob("opt/venv/lib/python3*/site-packages/*")
            heavy = [p.name for p in site if p.name.split("-")[0] in HEAVY]
        finally:
            sh([*BUILDAH, "umount", name], check=False)
        assert not heavy, f"{ref}: site-packages holds {heavy}"
    log(f"{ref}: `import torch` fails; no torch, transformers or nvidia-* in site-packages")
    return "no torch"


def size_mb(ref: str) -> float:
    """The image's uncompressed size as `buildah images` reports it ("756 MB", "5.61 GB": decimal units)."""
    number, unit = json.loads(sh([*BUILDAH, "images", "--json", ref]))[0]["size"].split()
    return float(number) * {"B": 1e-6, "kB": 1e-3, "MB": 1.0, "GB": 1e3, "TB": 1e6}[unit]


def write_table(rows: list[dict], out: Path, catalogue: dict) -> None:
    """Merge `rows` into build/images/results.json; the table of all results goes between docs' markers."""
    record = WORK / "results.json"
    results = json.loads(record.read_text()) if record.exists() else {}
    for row in rows:  # an image skipped as unchanged keeps the build time it was built in
        previous = results.get(row["key"], {}).get("seconds")
        results[row["key"]] = {**row, "seconds": previous} if row["seconds"] is None else row
    record.write_text(json.dumps(results, indent=1))
    text = out.read_text() if out.exists() else f"# Container images\n\n{START}\n{END}\n"
    # Rows measured elsewhere (e.g. `make images-trainer` on the build machine) stay in the docs when
    # this checkout has not built that image: build/ is not committed, the table is.
    recorded = {line.split("|")[1].strip(): line for line in text.split(START)[-1].split(END)[0].splitlines()
                if line.startswith("| `")}  # fmt: skip
    lines = ["| image | extras | built here | size | build | checks |", "|---|---|---|---|---|---|"]
    for key, spec in catalogue.items():
        row, ref = results.get(key), f"`{spec['image']}:{spec['tag']}`"
        if row is None:
            lines.append(recorded.get(ref) or f"| {ref} | {', '.join(spec['extras'])} | no | - | - | linted only |")
            continue
        seconds = "unchanged" if row["seconds"] is None else f"{row['seconds']:.0f} s"
        lines.append(f"| {ref} | {', '.join(spec['extras'])} | yes | {row['mb'] / 1000:.2f} GB | {seconds} "
                     f"| {row['checks']} |")  # fmt: skip
    print("\n".join(lines))
    if START not in text or END not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    out.write_text(head + START + "\n" + "\n".join(lines) + "\n" + END + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("keys", nargs="*", help="images.toml keys (default: those with build_here = true)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the inputs are unchanged")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images.md")
    args = parser.parse_args(argv)
    catalogue = tomllib.loads((ROOT / "docker" / "images.toml").read_text())["images"]
    keys = args.keys or [k for k, spec in catalogue.items() if spec["build_here"]]
    unknown = [k for k in keys if k not in catalogue]
    if unknown:
        raise SystemExit(f"no image {unknown} in docker/images.toml; one of {sorted(catalogue)}")
    started = time.monotonic()
    log_disk()
    ensure_base()
    rows = []
    for key in keys:
        spec = catalogue[key]
        ref = f"{spec['image']}:{spec['tag']}"
        seconds = build(key, spec, args.force)
        checks = [check_service(ref, spec)] if spec.get("serves") else []
        if key == "mllm-judge":
            checks.append(check_no_torch(ref))
        if key == "trainer":
            checks.append(check_trainer(ref))
        rows.append({"key": key, "seconds": seconds, "mb": size_mb(ref), "checks": "; ".join(checks)})
    sh([*BUILDAH, "rmi", "--prune"], check=False)  # untagged images an earlier build of a tag left behind
    write_table(rows, args.out, catalogue)
    log(f"done in {time.monotonic() - started:.0f} s")
    return 0


# A one-node Ray inside the image: `ray start --block` keeps every Ray process its child, so stopping
# it stops them all (`ray stop` would kill every Ray process of the host: chroot shares the pid space).
RAY_SMOKE = """
ray start --head --block --num-cpus=1 --node-ip-address=127.0.0.1 --port=$RAY_PORT --disable-usage-stats \
    --include-dashboard=false >/tmp/ray-start.log 2>&1 & head=$!
RAY_ADDRESS=127.0.0.1:$RAY_PORT timeout 180 python -c '
import time, ray
for _ in range(90):
    try:
        ray.init(address="auto", logging_level="ERROR")
        break
    except ConnectionError:
        time.sleep(1)
import trainer.loop, workers.policies.factory
print("task", ray.get(ray.remote(lambda: 41 + 1).remote()))
'
rc=$?; kill -TERM $head; wait $head; exit $rc
"""


def check_trainer(ref: str) -> str:
    """KubeRay's conventions (bash, ray and wget on PATH), then a Ray head in the image runs a task."""
    with container(ref, "motionnft-check-trainer") as name:
        script = "command -v ray wget && ray --version && python -m trainer --help >/dev/null && echo ok"
        out = sh([*BUILDAH, "run", "--isolation", "chroot", name, "--", "bash", "-c", script], timeout=300)
        assert out.strip().endswith("ok"), out
        run = [*BUILDAH, "run", "--isolation", "chroot", "--network", "host", "--env", f"RAY_PORT={free_port()}",
               "--env", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0", name, "--", "bash", "-c", RAY_SMOKE]  # fmt: skip
        out = sh(run, timeout=300)
    assert "task 42" in out, out
    return "bash, ray, wget on PATH; a Ray head in the image runs a task; the trainer and policies import"


if __name__ == "__main__":
    raise SystemExit(main())
