"""Audio ingest for the stream service: one source file per recording, encoded to MP3 renditions.

The data folder's ``audio/`` subfolder contains real recordings, several of them in more than one
format. Files belong to the same recording when their names share the part before the first dot
(the slug), so ``kevin_macleod_vibe_ace.hq.ogg`` and ``kevin_macleod_vibe_ace.lq.ogg`` are one
recording. For each slug the best file is chosen in the order of ``SOURCE_PREFERENCE``: lossless
first (FLAC, WAV, ALAC in MP4), then high-quality Ogg Vorbis, then the other lossy formats. Ties go
to the file name that sorts first, so the choice is deterministic. Title, artist, licence and
credit line come from ``RECORDING_INFO``. A slug without an entry there is skipped with a warning,
because the service must not stream audio whose licence terms are unknown.

Track-to-recording rule
-----------------------
A catalog track id maps to one recording with::

    index = int.from_bytes(hashlib.sha256(track_id.encode("utf-8")).digest()[:8], "big") % len(recordings)

where ``recordings`` is sorted by slug. The result depends only on the track id and the set of
slugs, so every process maps a track to the same recording for as long as the audio folder
contains the same recordings. Adding or removing a recording remaps most tracks.

Object store layout
-------------------
Under the store root::

    renditions/manifest.json            recordings and renditions, see ``load_manifest``
    renditions/<slug>/<bitrate>.mp3     MP3, 44100 Hz, constant bitrate, mono or stereo as the source

Every rendition is MPEG-1 Layer III at 44100 Hz and constant bitrate. It starts with an ID3v2 tag
(title and artist) and a LAME "Info" frame that carries the encoder delay and padding, so
decoders that read it return exactly the source's sample count. Files are written to a temporary
file in the same folder and renamed into place, so readers never see a partial file. Re-running
ingest reuses a rendition when the previous manifest lists the same source sha256, title and
artist, and the file still has the recorded size.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import av
from tqdm import tqdm

logger = logging.getLogger(__name__)

AUDIO_SUBDIR: Final = "audio"
RENDITIONS_DIR: Final = "renditions"
MANIFEST_FILE_NAME: Final = "manifest.json"
MANIFEST_FORMAT_VERSION: Final = 1

DEFAULT_BITRATES_KBPS: Final = (64, 128, 320)
OUTPUT_SAMPLE_RATE_HZ: Final = 44100
MP3_CODEC: Final = "mp3"
MP3_CONTENT_TYPE: Final = "audio/mpeg"
# Bitrates that an MPEG-1 Layer III frame header can signal (ISO/IEC 11172-3), in kbps.
MPEG1_LAYER3_BITRATES_KBPS: Final = frozenset({32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320})

AUDIO_EXTENSIONS: Final = (".aac", ".flac", ".m4a", ".mp3", ".ogg", ".opus", ".wav")
# Source kinds, best first. "alac" is an .m4a file whose audio stream is ALAC (lossless) and "m4a"
# is any other .m4a file. "hq.ogg" and "lq.ogg" are .ogg files with that variant in the name.
SOURCE_PREFERENCE: Final = ("flac", "wav", "alac", "hq.ogg", "ogg", "opus", "m4a", "aac", "mp3", "lq.ogg")

# Slugs become folder names and object keys, so only this character set is accepted.
_SLUG_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_-]*")
_HASH_CHUNK_BYTES: Final = 1 << 20
_TEMP_SUFFIX: Final = ".mp3.tmp"
_LOCK_FILE_NAME: Final = ".ingest.lock"


class AudioIngestError(Exception):
    """Base class for errors raised by audio ingest."""


class AudioFolderError(AudioIngestError):
    """The audio folder is missing or contains no usable recordings."""


class ManifestError(AudioIngestError):
    """The rendition manifest is invalid or lists files that are missing."""


class ManifestNotFoundError(ManifestError):
    """The rendition manifest does not exist because ingest has not run on this store."""


@dataclass(frozen=True)
class RecordingInfo:
    """Title, artist, licence and the credit line to show wherever the recording plays."""

    title: str
    artist: str
    license: str
    credit: str


RECORDING_INFO: Final[Mapping[str, RecordingInfo]] = {
    "brahms_hungarian_dance_no5_us_army_strings": RecordingInfo(
        title="Hungarian Dance No. 5 in F sharp minor (string orchestra)",
        artist="The U.S. Army Strings",
        license="Public Domain (PD Mark 1.0)",
        credit=(
            '"Hungarian Dance No. 5" by Johannes Brahms, performed by The U.S. Army Strings '
            "(via Musopen), Public Domain"
        ),
    ),
    "edison_1903_spring_of_love": RecordingInfo(
        title="Spring of Love",
        artist="Eugene Jaudas and Louis Atz",
        license="Public Domain",
        credit=(
            '"Spring of Love" by Eugene Jaudas (violin) and Louis Atz (flute), '
            "Edison Concert cylinder 8404 (1903), Public Domain"
        ),
    ),
    "karissa_hobbs_lets_go_fishin": RecordingInfo(
        title="Let's Go Fishin'",
        artist="Karissa Hobbs",
        license="CC BY 3.0",
        credit="\"Let's Go Fishin'\" by Karissa Hobbs, CC BY 3.0",
    ),
    "kevin_macleod_galway_excerpt": RecordingInfo(
        title="Galway (excerpt)",
        artist="Kevin MacLeod",
        license="CC BY 3.0",
        credit='"Galway" by Kevin MacLeod (incompetech.com), CC BY 3.0',
    ),
    "kevin_macleod_sugar_plum_fairy": RecordingInfo(
        title="P. I. Tchaikovsky: Dance of the Sugar Plum Fairy",
        artist="Kevin MacLeod",
        license="CC BY 3.0",
        credit='"Dance of the Sugar Plum Fairy" by Kevin MacLeod (incompetech.com), CC BY 3.0',
    ),
    "kevin_macleod_vibe_ace": RecordingInfo(
        title="Vibe Ace",
        artist="Kevin MacLeod",
        license="CC BY 3.0",
        credit='"Vibe Ace" by Kevin MacLeod (incompetech.com), CC BY 3.0',
    ),
    "mihai_sorohan_solo_trumpet_06": RecordingInfo(
        title="Solo Trumpet 06 (Jazz Trumpet Loops Pack in F 90 bpm)",
        artist="Mihai Sorohan",
        license="CC BY 3.0",
        credit="Trumpet loop by Mihai Sorohan (sorohanro), CC BY 3.0",
    ),
    "sonicpi_guit_em9": RecordingInfo(
        title="Electric Guitar Em9",
        artist="Sub-d",
        license="CC0 1.0",
        credit="Electric guitar Em9 by Sub-d (freesound.org), from the Sonic Pi samples, CC0 1.0",
    ),
    "sonicpi_loop_tabla": RecordingInfo(
        title="Tabla Loop",
        artist="lezaarth",
        license="CC0 1.0",
        credit="Tabla loop by lezaarth (freesound.org), from the Sonic Pi samples, CC0 1.0",
    ),
}


@dataclass(frozen=True)
class Recording:
    """A distinct recording and the source file that its renditions are encoded from."""

    slug: str
    title: str
    artist: str
    license: str
    credit: str
    source_file: str
    """File name inside the data folder's ``audio/`` subfolder."""
    source_sha256: str
    duration_seconds: float
    """Length of the decoded source audio."""
    channels: int
    """Channel count of the source."""
    sample_rate_hz: int
    """Sample rate of the source."""


@dataclass(frozen=True)
class RenditionFile:
    """One encoded file in the object store."""

    slug: str
    bitrate_kbps: int
    object_key: str
    """Path relative to the store root, with ``/`` separators, e.g. ``renditions/<slug>/128.mp3``."""
    size_bytes: int
    sha256: str
    channels: int
    sample_rate_hz: int
    codec: str = MP3_CODEC
    content_type: str = MP3_CONTENT_TYPE


@dataclass(frozen=True)
class Manifest:
    """Recordings sorted by slug, and their renditions sorted by slug and bitrate."""

    recordings: tuple[Recording, ...]
    renditions: tuple[RenditionFile, ...]

    def recording(self, slug: str) -> Recording:
        """Return the recording with this slug, or raise KeyError."""
        for recording in self.recordings:
            if recording.slug == slug:
                return recording
        raise KeyError(slug)

    def renditions_for(self, slug: str) -> tuple[RenditionFile, ...]:
        """Return the renditions of one recording, lowest bitrate first."""
        return tuple(rendition for rendition in self.renditions if rendition.slug == slug)

    def rendition(self, slug: str, bitrate_kbps: int) -> RenditionFile:
        """Return the rendition of a recording at a bitrate, or raise KeyError."""
        for rendition in self.renditions:
            if rendition.slug == slug and rendition.bitrate_kbps == bitrate_kbps:
                return rendition
        raise KeyError((slug, bitrate_kbps))


def recording_for_track(track_id: str, recordings: Sequence[Recording]) -> Recording:
    """Map a catalog track id to a recording with the rule in the module docstring.

    The recordings are sorted by slug here, so the caller's order does not matter.
    Raises ValueError when ``recordings`` is empty.
    """
    if not recordings:
        raise ValueError(
            f"No recording for track {track_id!r}: the recording list is empty. Run `backbeat setup`."
        )
    ordered = sorted(recordings, key=lambda recording: recording.slug)
    digest = hashlib.sha256(track_id.encode("utf-8")).digest()
    index = int.from_bytes(digest[:8], "big") % len(ordered)
    return ordered[index]


def object_key_for(slug: str, bitrate_kbps: int) -> str:
    """Return the object key of a rendition, relative to the store root."""
    return f"{RENDITIONS_DIR}/{slug}/{bitrate_kbps}.mp3"


def manifest_path(store_root: Path) -> Path:
    """Return the path of the rendition manifest under a store root."""
    return store_root / RENDITIONS_DIR / MANIFEST_FILE_NAME


# Discovery of recordings in the audio folder.


def discover_recordings(data_dir: Path) -> list[Recording]:
    """List the distinct recordings in ``<data_dir>/audio``, sorted by slug.

    Every chosen source file is hashed and decoded in full to measure its duration, which takes
    well under a second for the shared data folder. Raises AudioFolderError when the folder is
    missing or contains no recording with an entry in RECORDING_INFO, and AudioIngestError when a
    chosen source file cannot be decoded.
    """
    audio_dir = data_dir / AUDIO_SUBDIR
    files_by_slug = _group_audio_files(audio_dir)

    recordings: list[Recording] = []
    for slug in sorted(files_by_slug):
        info = RECORDING_INFO.get(slug)
        if info is None:
            logger.warning(
                "Skipping recording %s in %s: RECORDING_INFO has no title, artist or licence for it",
                slug,
                audio_dir,
            )
            continue
        source = _choose_source(files_by_slug[slug])
        recordings.append(_describe_recording(slug, info, source))

    if not recordings:
        raise AudioFolderError(
            f"No usable recordings in audio folder {audio_dir}: expected audio files whose slug "
            f"(the file name before the first dot) is one of {sorted(RECORDING_INFO)}."
        )
    return recordings


def _group_audio_files(audio_dir: Path) -> dict[str, list[Path]]:
    """Group the audio files in a folder by slug, ignoring other files."""
    extensions = ", ".join(AUDIO_EXTENSIONS)
    if not audio_dir.exists():
        raise AudioFolderError(
            f"Audio folder not found: {audio_dir}. Expected a folder of recordings ({extensions}) "
            f"named {AUDIO_SUBDIR!r} inside the data folder."
        )
    if not audio_dir.is_dir():
        raise AudioFolderError(f"Audio folder {audio_dir} is not a folder. Expected a folder of recordings.")

    files_by_slug: dict[str, list[Path]] = {}
    for path in sorted(audio_dir.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        slug = path.name.split(".", 1)[0]
        if _SLUG_PATTERN.fullmatch(slug) is None:
            logger.warning(
                "Skipping audio file %s: its slug %r is not lowercase letters, digits, '_' and '-'",
                path,
                slug,
            )
            continue
        files_by_slug.setdefault(slug, []).append(path)

    if not files_by_slug:
        raise AudioFolderError(
            f"No audio files in audio folder {audio_dir}. Expected files ending in {extensions}."
        )
    return files_by_slug


def _choose_source(paths: Sequence[Path]) -> Path:
    """Return the preferred source file among the files of one recording."""
    ranked = sorted(paths, key=lambda path: (SOURCE_PREFERENCE.index(_source_kind(path)), path.name))
    chosen = ranked[0]
    if len(ranked) > 1:
        logger.debug("Chose %s over %s", chosen.name, ", ".join(path.name for path in ranked[1:]))
    return chosen


def _source_kind(path: Path) -> str:
    """Return the entry of SOURCE_PREFERENCE that describes a file."""
    extension = path.suffix.lower()
    variant = ".".join(path.name.split(".")[1:-1]).lower()
    if extension == ".ogg":
        if variant in ("hq", "lq"):
            return f"{variant}.ogg"
        return "ogg"
    if extension == ".m4a":
        return "alac" if _probe_codec_name(path) == "alac" else "m4a"
    return extension.removeprefix(".")


def _probe_codec_name(path: Path) -> str:
    """Return the codec name of the first audio stream of a file."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioIngestError(f"Audio file {path} has no audio stream.")
            return container.streams.audio[0].codec_context.name
    except av.FFmpegError as error:
        raise AudioIngestError(f"Failed to read audio file {path}: {error}") from error


def _describe_recording(slug: str, info: RecordingInfo, source: Path) -> Recording:
    """Hash and decode a source file and combine the result with the recording's metadata."""
    duration_seconds, channels, sample_rate_hz = _measure_audio(source)
    return Recording(
        slug=slug,
        title=info.title,
        artist=info.artist,
        license=info.license,
        credit=info.credit,
        source_file=source.name,
        source_sha256=_sha256_of_file(source),
        duration_seconds=duration_seconds,
        channels=channels,
        sample_rate_hz=sample_rate_hz,
    )


def _measure_audio(path: Path) -> tuple[float, int, int]:
    """Decode a file's first audio stream and return (duration in seconds, channels, sample rate)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioIngestError(f"Audio file {path} has no audio stream.")
            stream = container.streams.audio[0]
            channels = stream.codec_context.channels
            sample_rate_hz = stream.codec_context.sample_rate
            # Sample counts are summed per rate so the duration has no accumulated rounding error.
            samples_by_rate: Counter[int] = Counter()
            for frame in container.decode(stream):
                samples_by_rate[frame.sample_rate] += frame.samples
    except av.FFmpegError as error:
        raise AudioIngestError(f"Failed to decode audio file {path}: {error}") from error

    # Rounded to microseconds here, so a Recording equals its copy read back from the manifest.
    duration_seconds = round(sum(samples / rate for rate, samples in samples_by_rate.items() if rate > 0), 6)

    if channels < 1 or sample_rate_hz < 1 or duration_seconds <= 0.0:
        raise AudioIngestError(
            f"Audio file {path} decodes to no audio "
            f"(channels={channels}, sample rate={sample_rate_hz} Hz, duration={duration_seconds} s)."
        )
    return duration_seconds, channels, sample_rate_hz


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# Encoding and the object store.


def ingest_audio(
    data_dir: Path,
    store_root: Path,
    bitrates: Sequence[int] = DEFAULT_BITRATES_KBPS,
    force: bool = False,
    progress: bool = True,
) -> Manifest:
    """Encode every recording in ``<data_dir>/audio`` to MP3 renditions and write the manifest.

    ``bitrates`` are in kbps and must be MPEG-1 Layer III bitrates. A rendition is reused instead
    of re-encoded when the previous manifest lists the same source sha256, title and artist and
    the file has the recorded size, unless ``force`` is true. ``progress`` shows a tqdm bar on
    stderr over the (recording, bitrate) pairs. An exclusive lock on the store serialises
    concurrent runs. The manifest is written once, after every rendition is in place.
    """
    bitrates_kbps = _validate_bitrates(bitrates)
    recordings = discover_recordings(data_dir)
    audio_dir = data_dir / AUDIO_SUBDIR
    renditions_dir = store_root / RENDITIONS_DIR
    renditions_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    logger.info(
        "Audio ingest started: %d recordings from %s, bitrates %s kbps, store %s, force=%s",
        len(recordings),
        audio_dir,
        bitrates_kbps,
        store_root,
        force,
    )
    with _exclusive_lock(renditions_dir / _LOCK_FILE_NAME):
        previous = None if force else _read_previous_manifest(store_root)
        renditions: list[RenditionFile] = []
        encoded_count = 0
        with tqdm(
            total=len(recordings) * len(bitrates_kbps),
            desc="Encoding MP3 renditions",
            unit="file",
            disable=not progress,
        ) as progress_bar:
            for recording in recordings:
                _remove_stale_temp_files(renditions_dir / recording.slug)
                for bitrate_kbps in bitrates_kbps:
                    progress_bar.set_postfix_str(f"{recording.slug} {bitrate_kbps} kbps")
                    rendition = _reusable_rendition(previous, recording, bitrate_kbps, store_root)
                    if rendition is None:
                        rendition = _write_rendition(
                            audio_dir / recording.source_file, recording, bitrate_kbps, store_root
                        )
                        encoded_count += 1
                    renditions.append(rendition)
                    progress_bar.update(1)

        manifest = Manifest(recordings=tuple(recordings), renditions=tuple(renditions))
        _write_json_atomically(manifest_path(store_root), _manifest_to_json(manifest))

    logger.info(
        "Audio ingest finished in %.1f s: %d renditions encoded, %d reused, manifest %s",
        time.perf_counter() - started,
        encoded_count,
        len(renditions) - encoded_count,
        manifest_path(store_root),
    )
    return manifest


def _validate_bitrates(bitrates: Sequence[int]) -> tuple[int, ...]:
    """Return the bitrates sorted and without duplicates, or raise ValueError."""
    if not bitrates:
        raise ValueError("No bitrates requested: expected at least one MPEG-1 Layer III bitrate in kbps.")
    invalid = [bitrate for bitrate in bitrates if bitrate not in MPEG1_LAYER3_BITRATES_KBPS]
    if invalid:
        raise ValueError(
            f"Invalid MP3 bitrates {invalid} kbps: expected values from {sorted(MPEG1_LAYER3_BITRATES_KBPS)}."
        )
    return tuple(sorted(set(bitrates)))


@contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock on a lock file, waiting for other holders."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_previous_manifest(store_root: Path) -> Manifest | None:
    """Return the existing manifest, or None when it is missing or invalid."""
    try:
        return load_manifest(store_root, check_files=False)
    except ManifestNotFoundError:
        return None
    except ManifestError as error:
        logger.warning("Ignoring the existing manifest and re-encoding every rendition: %s", error)
        return None


def _reusable_rendition(
    previous: Manifest | None, recording: Recording, bitrate_kbps: int, store_root: Path
) -> RenditionFile | None:
    """Return the previous manifest's entry for a rendition when its file is still valid."""
    if previous is None:
        return None
    try:
        previous_recording = previous.recording(recording.slug)
        previous_rendition = previous.rendition(recording.slug, bitrate_kbps)
    except KeyError:
        return None

    # The title and artist are written into the file's ID3 tag, so a change re-encodes it.
    same_source = (
        previous_recording.source_sha256 == recording.source_sha256
        and previous_recording.title == recording.title
        and previous_recording.artist == recording.artist
    )
    if not same_source or previous_rendition.object_key != object_key_for(recording.slug, bitrate_kbps):
        return None

    try:
        size_bytes = (store_root / previous_rendition.object_key).stat().st_size
    except FileNotFoundError:
        return None
    if size_bytes != previous_rendition.size_bytes:
        logger.info(
            "Re-encoding %s: size is %d bytes, the manifest records %d",
            previous_rendition.object_key,
            size_bytes,
            previous_rendition.size_bytes,
        )
        return None

    logger.debug("Reusing %s", previous_rendition.object_key)
    return previous_rendition


def _remove_stale_temp_files(slug_dir: Path) -> None:
    """Delete temporary files that an interrupted run left in a recording's folder."""
    if not slug_dir.is_dir():
        return
    for stale in slug_dir.glob(f".*{_TEMP_SUFFIX}"):
        logger.info("Removing temporary file %s left by an interrupted ingest", stale)
        stale.unlink(missing_ok=True)


def _write_rendition(
    source: Path, recording: Recording, bitrate_kbps: int, store_root: Path
) -> RenditionFile:
    """Encode one rendition into a temporary file and rename it to its object key."""
    object_key = object_key_for(recording.slug, bitrate_kbps)
    destination = store_root / object_key
    destination.parent.mkdir(parents=True, exist_ok=True)
    channels = 2 if recording.channels >= 2 else 1

    started = time.perf_counter()
    descriptor, temp_name = tempfile.mkstemp(
        prefix=f".{bitrate_kbps}.", suffix=_TEMP_SUFFIX, dir=destination.parent
    )
    os.close(descriptor)
    temp_path = Path(temp_name)
    try:
        _encode_mp3(source, temp_path, bitrate_kbps, channels, recording.title, recording.artist)
        _fsync_path(temp_path, os.O_RDONLY)
        size_bytes = temp_path.stat().st_size
        sha256 = _sha256_of_file(temp_path)
        # mkstemp creates the file with mode 0600, and other processes serve these files.
        temp_path.chmod(0o644)
        os.replace(temp_path, destination)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    _fsync_path(destination.parent, os.O_RDONLY | os.O_DIRECTORY)

    logger.info(
        "Encoded %s at %d kbps from %s in %.2f s (%d bytes)",
        object_key,
        bitrate_kbps,
        source.name,
        time.perf_counter() - started,
        size_bytes,
    )
    return RenditionFile(
        slug=recording.slug,
        bitrate_kbps=bitrate_kbps,
        object_key=object_key,
        size_bytes=size_bytes,
        sha256=sha256,
        channels=channels,
        sample_rate_hz=OUTPUT_SAMPLE_RATE_HZ,
    )


def _encode_mp3(
    source: Path, destination: Path, bitrate_kbps: int, channels: int, title: str, artist: str
) -> None:
    """Encode a source file to constant-bitrate MP3 at 44100 Hz with libmp3lame."""
    layout = "stereo" if channels == 2 else "mono"
    try:
        with (
            av.open(str(source)) as input_container,
            av.open(str(destination), mode="w", format="mp3") as output,
        ):
            output.metadata["title"] = title
            output.metadata["artist"] = artist
            input_stream = input_container.streams.audio[0]
            output_stream = output.add_stream("libmp3lame", rate=OUTPUT_SAMPLE_RATE_HZ, layout=layout)
            # FFmpeg's libmp3lame wrapper encodes at constant bitrate when bit_rate is set and
            # neither a VBR quality nor ABR mode is requested.
            output_stream.bit_rate = bitrate_kbps * 1000
            output_stream.format = "fltp"
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=OUTPUT_SAMPLE_RATE_HZ)

            for frame in input_container.decode(input_stream):
                for resampled in resampler.resample(frame):
                    output.mux(output_stream.encode(resampled))
            for resampled in resampler.resample(None):
                output.mux(output_stream.encode(resampled))
            output.mux(output_stream.encode(None))
    except av.FFmpegError as error:
        raise AudioIngestError(
            f"Failed to encode {source} to {bitrate_kbps} kbps MP3 at {destination}: {error}"
        ) from error


def _fsync_path(path: Path, flags: int) -> None:
    """Flush a file's or folder's data and metadata to disk."""
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_json_atomically(path: Path, payload: Mapping[str, Any]) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it over ``path``."""
    text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temp_path = Path(temp_name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        temp_path.chmod(0o644)
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    _fsync_path(path.parent, os.O_RDONLY | os.O_DIRECTORY)


# Manifest serialisation.


def load_manifest(store_root: Path, *, check_files: bool = True) -> Manifest:
    """Read ``<store_root>/renditions/manifest.json``.

    The file is a JSON object: ``format_version`` (1) and ``recordings``, a list sorted by slug.
    Each recording has ``slug``, ``title``, ``artist``, ``license``, ``credit``, ``source_file``,
    ``source_sha256``, ``duration_seconds``, ``channels``, ``sample_rate_hz`` and ``renditions``,
    a list sorted by bitrate. Each rendition has ``bitrate_kbps``, ``codec``, ``content_type``,
    ``object_key``, ``size_bytes``, ``sha256``, ``channels`` and ``sample_rate_hz``.

    With ``check_files``, every rendition file must exist with its recorded size. Raises
    ManifestNotFoundError when the manifest is missing and ManifestError when it is invalid.
    """
    path = manifest_path(store_root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise ManifestNotFoundError(
            f"Rendition manifest not found: {path}. Run `backbeat setup` to encode the audio renditions."
        ) from error

    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise ManifestError(
            f"Rendition manifest {path} is not valid JSON ({error}). Run `backbeat setup` to rebuild it."
        ) from error
    manifest = _manifest_from_json(payload, path)

    if check_files:
        for rendition in manifest.renditions:
            _check_rendition_file(store_root, rendition, path)
    return manifest


def _check_rendition_file(store_root: Path, rendition: RenditionFile, path: Path) -> None:
    file_path = store_root / rendition.object_key
    try:
        size_bytes = file_path.stat().st_size
    except FileNotFoundError as error:
        raise ManifestError(
            f"Rendition file {file_path} listed in {path} is missing. Run `backbeat setup` to re-encode it."
        ) from error
    if size_bytes != rendition.size_bytes:
        raise ManifestError(
            f"Rendition file {file_path} is {size_bytes} bytes but {path} records {rendition.size_bytes}. "
            "Run `backbeat setup` to re-encode it."
        )


def _manifest_to_json(manifest: Manifest) -> dict[str, Any]:
    recordings: list[dict[str, Any]] = []
    for recording in manifest.recordings:
        renditions = [
            {
                "bitrate_kbps": rendition.bitrate_kbps,
                "codec": rendition.codec,
                "content_type": rendition.content_type,
                "object_key": rendition.object_key,
                "size_bytes": rendition.size_bytes,
                "sha256": rendition.sha256,
                "channels": rendition.channels,
                "sample_rate_hz": rendition.sample_rate_hz,
            }
            for rendition in manifest.renditions_for(recording.slug)
        ]
        recordings.append(
            {
                "slug": recording.slug,
                "title": recording.title,
                "artist": recording.artist,
                "license": recording.license,
                "credit": recording.credit,
                "source_file": recording.source_file,
                "source_sha256": recording.source_sha256,
                "duration_seconds": recording.duration_seconds,
                "channels": recording.channels,
                "sample_rate_hz": recording.sample_rate_hz,
                "renditions": renditions,
            }
        )
    return {"format_version": MANIFEST_FORMAT_VERSION, "recordings": recordings}


def _manifest_from_json(payload: Any, path: Path) -> Manifest:
    """Build a Manifest from parsed JSON, raising ManifestError on any invalid field."""
    if not isinstance(payload, dict):
        raise _invalid(path, "the top level is not a JSON object")
    version = _int_field(payload, "format_version", path, "manifest")
    if version != MANIFEST_FORMAT_VERSION:
        raise _invalid(path, f"format_version is {version}, expected {MANIFEST_FORMAT_VERSION}")

    recordings: list[Recording] = []
    renditions: list[RenditionFile] = []
    for index, item in enumerate(_list_field(payload, "recordings", path, "manifest")):
        where = f"recordings[{index}]"
        if not isinstance(item, dict):
            raise _invalid(path, f"{where} is not a JSON object")
        recording = _recording_from_json(item, path, where)
        recordings.append(recording)
        for rendition_index, rendition_item in enumerate(_list_field(item, "renditions", path, where)):
            rendition_where = f"{where}.renditions[{rendition_index}]"
            if not isinstance(rendition_item, dict):
                raise _invalid(path, f"{rendition_where} is not a JSON object")
            renditions.append(_rendition_from_json(rendition_item, recording.slug, path, rendition_where))

    slugs = [recording.slug for recording in recordings]
    if slugs != sorted(set(slugs)):
        raise _invalid(path, "recordings are not sorted by slug or contain a duplicate slug")
    return Manifest(recordings=tuple(recordings), renditions=tuple(renditions))


def _recording_from_json(item: dict[str, Any], path: Path, where: str) -> Recording:
    slug = _str_field(item, "slug", path, where)
    if _SLUG_PATTERN.fullmatch(slug) is None:
        raise _invalid(path, f"{where}.slug {slug!r} is not a valid slug")
    return Recording(
        slug=slug,
        title=_str_field(item, "title", path, where),
        artist=_str_field(item, "artist", path, where),
        license=_str_field(item, "license", path, where),
        credit=_str_field(item, "credit", path, where),
        source_file=_str_field(item, "source_file", path, where),
        source_sha256=_str_field(item, "source_sha256", path, where),
        duration_seconds=_float_field(item, "duration_seconds", path, where),
        channels=_int_field(item, "channels", path, where),
        sample_rate_hz=_int_field(item, "sample_rate_hz", path, where),
    )


def _rendition_from_json(item: dict[str, Any], slug: str, path: Path, where: str) -> RenditionFile:
    bitrate_kbps = _int_field(item, "bitrate_kbps", path, where)
    object_key = _str_field(item, "object_key", path, where)
    # Object keys are derived, never free text, so a manifest cannot point outside the store.
    if object_key != object_key_for(slug, bitrate_kbps):
        raise _invalid(
            path, f"{where}.object_key is {object_key!r}, expected {object_key_for(slug, bitrate_kbps)!r}"
        )
    return RenditionFile(
        slug=slug,
        bitrate_kbps=bitrate_kbps,
        object_key=object_key,
        size_bytes=_int_field(item, "size_bytes", path, where),
        sha256=_str_field(item, "sha256", path, where),
        channels=_int_field(item, "channels", path, where),
        sample_rate_hz=_int_field(item, "sample_rate_hz", path, where),
        codec=_str_field(item, "codec", path, where),
        content_type=_str_field(item, "content_type", path, where),
    )


def _required(item: dict[str, Any], key: str, path: Path, where: str) -> Any:
    if key not in item:
        raise _invalid(path, f"{where}.{key} is missing")
    return item[key]


def _str_field(item: dict[str, Any], key: str, path: Path, where: str) -> str:
    value = _required(item, key, path, where)
    if not isinstance(value, str):
        raise _invalid(path, f"{where}.{key} is {type(value).__name__}, expected a string")
    return value


def _int_field(item: dict[str, Any], key: str, path: Path, where: str) -> int:
    value = _required(item, key, path, where)
    # JSON true and false parse as bool, which is a subclass of int.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _invalid(path, f"{where}.{key} is {value!r}, expected a non-negative integer")
    return value


def _float_field(item: dict[str, Any], key: str, path: Path, where: str) -> float:
    value = _required(item, key, path, where)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _invalid(path, f"{where}.{key} is {value!r}, expected a non-negative number")
    return float(value)


def _list_field(item: dict[str, Any], key: str, path: Path, where: str) -> list[Any]:
    value = _required(item, key, path, where)
    if not isinstance(value, list):
        raise _invalid(path, f"{where}.{key} is {type(value).__name__}, expected a list")
    return value


def _invalid(path: Path, problem: str) -> ManifestError:
    return ManifestError(
        f"Rendition manifest {path} is invalid: {problem}. Run `backbeat setup` to rebuild it."
    )
