"""Tests for scripts/fetch_data.py, run as a command against a mirror served on 127.0.0.1.

The mirror is laid out as <owner>/<repo>/<commit>/<path>, like raw.githubusercontent.com,
and is built from the local data folder (BACKBEAT_DATA_DIR, or ../shared/data next to
the repository). The Spotify zip is built here from the CSV.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "fetch_data.py"
DATA_DIR = Path(os.environ.get("BACKBEAT_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")
RUN_TIMEOUT_SECONDS = 120

# The targets used by the rejection tests: one plain file and the file taken from the zip.
TAMPERED_FILE = "audio/kevin_macleod_vibe_ace.txt"
ZIPPED_FILE = "catalog/spotify_songs.csv"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_sha256sums(data_dir: Path) -> dict[str, str]:
    """Parse SHA256SUMS ("<sum>  ./<path>" per line) into {path: sum}."""
    sums = {}
    for line in (data_dir / "SHA256SUMS").read_text(encoding="ascii").splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        sums[name.removeprefix("./")] = digest
    return sums


def files_under(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def build_mirror(
    root: Path, data_dir: Path, files: Any, replacements: dict[str, bytes] | None = None
) -> None:
    """Lay out every file of `files` under `root` as <owner>/<repo>/<commit>/<path>.

    `replacements` maps a target to the bytes served in place of the real file.
    """
    replacements = replacements or {}
    for data_file in files:
        mirror_path = root / data_file.repository / data_file.commit / data_file.path
        mirror_path.parent.mkdir(parents=True, exist_ok=True)
        source = data_dir / data_file.target
        content = replacements.get(data_file.target)

        if data_file.zip_member is None:
            if content is None:
                shutil.copyfile(source, mirror_path)
            else:
                mirror_path.write_bytes(content)
            continue

        with zipfile.ZipFile(mirror_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            if content is None:
                archive.write(source, arcname=data_file.zip_member)
            else:
                archive.writestr(data_file.zip_member, content)


@contextmanager
def serve(root: Path, stalled_suffix: str | None = None) -> Iterator[tuple[str, list[str]]]:
    """Serve `root` over HTTP on 127.0.0.1 and yield the base URL and the list of request paths.

    A request whose path ends with `stalled_suffix` gets its headers and 10 bytes of a
    1000-byte body, and then nothing until the server stops.
    """
    requests: list[str] = []
    stopping = threading.Event()

    class MirrorHandler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            requests.append(self.path)
            if stalled_suffix is not None and self.path.endswith(stalled_suffix):
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b"0123456789")
                self.wfile.flush()
                stopping.wait(RUN_TIMEOUT_SECONDS)
                return
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), MirrorHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield f"http://127.0.0.1:{port}", requests
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()


def run_script(dest: Path, base_url: str, timeout_seconds: float = 10) -> subprocess.CompletedProcess[str]:
    # no_proxy keeps urllib from sending loopback requests to a proxy set in the environment.
    environment = dict(os.environ, no_proxy="127.0.0.1", NO_PROXY="127.0.0.1")
    command = [sys.executable, str(SCRIPT), "--dest", str(dest), "--base-url", base_url]
    return subprocess.run(
        [*command, "--timeout", str(timeout_seconds)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


def lines_starting_with(output: str, status: str) -> list[str]:
    return [line for line in output.splitlines() if line.split(maxsplit=1)[:1] == [status]]


@pytest.fixture(scope="module")
def fetch_data() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_data_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not (DATA_DIR / "SHA256SUMS").is_file():
        pytest.skip(f"data folder {DATA_DIR} has no SHA256SUMS; set BACKBEAT_DATA_DIR to the data folder")
    return DATA_DIR


@pytest.fixture(scope="module")
def expected_sums(data_dir: Path) -> dict[str, str]:
    return read_sha256sums(data_dir)


@pytest.fixture(scope="module")
def mirror(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, fetch_data: ModuleType
) -> Iterator[tuple[str, list[str]]]:
    root = tmp_path_factory.mktemp("mirror")
    build_mirror(root, data_dir, fetch_data.FILES)
    with serve(root) as served:
        yield served


def test_table_matches_sha256sums(fetch_data: ModuleType, expected_sums: dict[str, str]) -> None:
    table = {data_file.target: data_file.sha256 for data_file in fetch_data.FILES}

    assert len(table) == len(fetch_data.FILES)
    assert table == expected_sums


def test_source_url_layout(fetch_data: ModuleType) -> None:
    by_target = {data_file.target: data_file for data_file in fetch_data.FILES}

    zipped = fetch_data.source_url(fetch_data.DEFAULT_BASE_URL, by_target[ZIPPED_FILE])
    brahms = fetch_data.source_url(
        "http://127.0.0.1:1/mirror/", by_target["audio/brahms_hungarian_dance_no5_us_army_strings.txt"]
    )

    assert zipped == (
        "https://raw.githubusercontent.com/mustafaamahmoudm74/Spotify/"
        "c09d65b6f19843184504362a9f25ab1b006376e6/spotify_songs.zip"
    )
    assert brahms == (
        "http://127.0.0.1:1/mirror/librosa/data/450cdd8a002c98e7bdbfebb309fc1ed024001f77/audio/"
        "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_%28string_orchestra%29.txt"
    )


def test_fetch_writes_every_file(
    tmp_path: Path, mirror: tuple[str, list[str]], expected_sums: dict[str, str]
) -> None:
    base_url, _ = mirror
    dest = tmp_path / "data"

    result = run_script(dest, base_url)

    assert result.returncode == 0, result.stderr
    assert files_under(dest) == set(expected_sums)
    for target, digest in expected_sums.items():
        assert sha256_of(dest / target) == digest, target
    assert len(lines_starting_with(result.stdout, "downloaded")) == len(expected_sums)


def test_second_run_downloads_nothing(
    tmp_path: Path, mirror: tuple[str, list[str]], expected_sums: dict[str, str]
) -> None:
    base_url, requests = mirror
    dest = tmp_path / "data"
    first = run_script(dest, base_url)
    assert first.returncode == 0, first.stderr
    requests.clear()

    second = run_script(dest, base_url)

    assert second.returncode == 0, second.stderr
    assert requests == []
    assert len(lines_starting_with(second.stdout, "present")) == len(expected_sums)


def test_damaged_local_file_is_replaced(
    tmp_path: Path, mirror: tuple[str, list[str]], expected_sums: dict[str, str]
) -> None:
    base_url, requests = mirror
    dest = tmp_path / "data"
    first = run_script(dest, base_url)
    assert first.returncode == 0, first.stderr
    (dest / TAMPERED_FILE).write_bytes(b"damaged\n")
    requests.clear()

    second = run_script(dest, base_url)

    assert second.returncode == 0, second.stderr
    assert len(requests) == 1
    assert requests[0].endswith("/audio/Kevin_MacLeod_-_Vibe_Ace.txt")
    assert lines_starting_with(second.stdout, "replaced") == [f"replaced    {TAMPERED_FILE}"]
    assert sha256_of(dest / TAMPERED_FILE) == expected_sums[TAMPERED_FILE]


@pytest.mark.parametrize("target", [TAMPERED_FILE, ZIPPED_FILE])
def test_tampered_file_is_rejected(
    tmp_path: Path, data_dir: Path, fetch_data: ModuleType, expected_sums: dict[str, str], target: str
) -> None:
    tampered = (data_dir / target).read_bytes() + b"tampered\n"
    root = tmp_path / "mirror"
    build_mirror(root, data_dir, fetch_data.FILES, replacements={target: tampered})
    dest = tmp_path / "data"

    with serve(root) as (base_url, _):
        result = run_script(dest, base_url)

    assert result.returncode == 1
    failed = lines_starting_with(result.stderr, "FAILED")
    assert len(failed) == 1
    assert target in failed[0]
    assert expected_sums[target] in failed[0]
    assert hashlib.sha256(tampered).hexdigest() in failed[0]
    assert not (dest / target).exists()
    # No temporary .part or .zip.part file is left, only the verified files.
    assert files_under(dest) == set(expected_sums) - {target}


def test_missing_file_fails_with_http_status(
    tmp_path: Path, data_dir: Path, fetch_data: ModuleType, expected_sums: dict[str, str]
) -> None:
    root = tmp_path / "mirror"
    build_mirror(root, data_dir, fetch_data.FILES)
    missing = next(data_file for data_file in fetch_data.FILES if data_file.target == TAMPERED_FILE)
    (root / missing.repository / missing.commit / missing.path).unlink()
    dest = tmp_path / "data"

    with serve(root) as (base_url, _):
        result = run_script(dest, base_url)

    assert result.returncode == 1
    failed = lines_starting_with(result.stderr, "FAILED")
    assert len(failed) == 1
    assert TAMPERED_FILE in failed[0]
    assert "HTTP 404" in failed[0]
    assert files_under(dest) == set(expected_sums) - {TAMPERED_FILE}


def test_stalled_download_times_out(
    tmp_path: Path, data_dir: Path, fetch_data: ModuleType, expected_sums: dict[str, str]
) -> None:
    root = tmp_path / "mirror"
    build_mirror(root, data_dir, fetch_data.FILES)
    dest = tmp_path / "data"

    with serve(root, stalled_suffix="/audio/Kevin_MacLeod_-_Vibe_Ace.txt") as (base_url, _):
        result = run_script(dest, base_url, timeout_seconds=0.5)

    assert result.returncode == 1
    failed = lines_starting_with(result.stderr, "FAILED")
    assert len(failed) == 1
    assert TAMPERED_FILE in failed[0]
    assert "timed out after 0.5 s" in failed[0]
    assert files_under(dest) == set(expected_sums) - {TAMPERED_FILE}


def test_invalid_base_url_is_rejected(tmp_path: Path) -> None:
    result = run_script(tmp_path / "data", "ftp://127.0.0.1/mirror")

    assert result.returncode == 2
    assert "invalid base URL 'ftp://127.0.0.1/mirror'" in result.stderr
    assert not (tmp_path / "data").exists()
