"""Memory of a 1 GiB file upload and download through `gateway serve` (granian, one worker).

Usage: ``.venv/bin/python bench/files/run.py [--mib 1024]`` (about a minute; needs ~2 GiB
of free disk in the system's temporary directory)

The gateway runs on the embedded default (SQLite, embedded Valkey, the demo tenant) in a
temporary data directory, with ``GATEWAY_MAX_UPLOAD_BYTES`` just above the file, pinned
to CPU 0 when ``taskset`` can. This process, on CPU 1, creates a Document and then:

1. uploads ``--mib`` MiB (a 1 MiB random block repeated) with ``PUT .../files/file``,
   chunked (no ``Content-Length``), and checks the SHA-256 the gateway reports;
2. downloads it with ``GET`` and checks size and SHA-256.

Meanwhile a thread samples the resident set size (RSS, from ``/proc``) of every process
of the server's session (granian, its worker and the embedded Valkey) every 20 ms. The
report gives the RSS before, the peak during each transfer and the throughput; it is
printed and written to ``bench/results/files-<date>-<host>.txt``. The file is far
larger than the memory the gateway uses: a body held in memory would show as an RSS
peak of the file's size.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import PIN_SERVER, RESULTS, free_port, machine, on_client_cpu

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
PASSWORD = "bench-files-password"  # noqa: S105 - a throwaway admin of a temporary gateway


def _session_rss(session: int) -> int:
    """Bytes resident in every process whose session id is `session`."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) != session:  # field 6 of stat: the session id
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, IndexError, ValueError):
            continue
    return total


class Sampler:
    """The peak RSS of a process session since the last `reset`, sampled every 20 ms."""

    def __init__(self, session: int) -> None:
        self.session = session
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _session_rss(self.session))
            time.sleep(0.02)

    def reset(self) -> int:
        self.peak = current = _session_rss(self.session)
        return current

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _serve(data_dir: Path, port: int, limit: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_ADMIN_LOGIN": "admin",
        "GATEWAY_ADMIN_PASSWORD": PASSWORD,
        "GATEWAY_MAX_UPLOAD_BYTES": str(limit),
        "GATEWAY_LOG_LEVEL": "warning",
    }
    serve = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        [*PIN_SERVER, *serve], cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL
    )


def _ready(proc: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway serve exited early ({proc.returncode})")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError("gateway serve not ready after 60 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server's own process group (it was started in a new session)."""
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(grace)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        return


def _blocks(block: bytes, count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield block


def run(mib: int) -> list[str]:
    block = secrets.token_bytes(MIB)
    expected = hashlib.sha256()
    for _ in range(mib):
        expected.update(block)
    size = mib * MIB
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="jgw-bench-files-") as tmp:
        proc = _serve(Path(tmp) / "data", port, size + MIB)
        try:
            _ready(proc, base)
            with on_client_cpu(), httpx.Client(base_url=base, timeout=600) as client:
                issued = client.post(
                    "/api/v1/auth/keys",
                    json={"login": "admin", "password": PASSWORD, "name": "bench"},
                )
                issued.raise_for_status()
                auth = {"Authorization": f"Bearer {issued.json()['key']}"}
                created = client.post(
                    "/api/v1/collections/Document", json={"title": "Big"}, headers=auth
                )
                created.raise_for_status()
                path = f"/api/v1/collections/Document/{created.json()['data']['id']}/files/file"
                with Sampler(proc.pid) as sampler:
                    idle = sampler.reset()
                    started = time.perf_counter()
                    uploaded = client.put(
                        path,
                        content=_blocks(block, mib),
                        headers={**auth, "Content-Type": "application/octet-stream"},
                    )
                    upload_seconds = time.perf_counter() - started
                    upload_peak = sampler.peak
                    uploaded.raise_for_status()
                    if uploaded.json()["data"]["sha256"] != expected.hexdigest():
                        raise RuntimeError("the gateway stored other bytes")
                    after_upload = sampler.reset()
                    digest, received = hashlib.sha256(), 0
                    started = time.perf_counter()
                    with client.stream("GET", path, headers=auth) as got:
                        got.raise_for_status()
                        for chunk in got.iter_raw():
                            digest.update(chunk)
                            received += len(chunk)
                    download_seconds = time.perf_counter() - started
                    download_peak = sampler.peak
                if (received, digest.hexdigest()) != (size, expected.hexdigest()):
                    raise RuntimeError("the download differs from the upload")
        finally:
            _stop(proc)
    info = machine(commit=True)
    return [
        f"# Files: {mib} MiB up and down through `gateway serve` (granian, 1 worker, SQLite)",
        "",
        *(f"{key}: {value}" for key, value in info.items()),
        "command: .venv/bin/python bench/files/run.py" + ("" if mib == 1024 else f" --mib {mib}"),
        "",
        "RSS of the server's session (granian, its worker, the embedded Valkey), every 20 ms:",
        f"  before the upload:  {idle / MIB:8.1f} MiB",
        f"  peak during upload: {upload_peak / MIB:8.1f} MiB  "
        f"(+{(upload_peak - idle) / MIB:.1f} MiB; {size / MIB / upload_seconds:.0f} MiB/s)",
        f"  after the upload:   {after_upload / MIB:8.1f} MiB",
        f"  peak during download: {download_peak / MIB:6.1f} MiB  "
        f"(+{(download_peak - after_upload) / MIB:.1f} MiB; "
        f"{size / MIB / download_seconds:.0f} MiB/s)",
        f"  file: {size / MIB:.0f} MiB, SHA-256 {expected.hexdigest()} (checked both ways)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="file size in MiB (1024)")
    lines = run(parser.parse_args().mib)
    report = "\n".join(lines) + "\n"
    print(report)
    info = machine()
    out = RESULTS / f"files-{info['date']}-{info['hostname']}.txt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
