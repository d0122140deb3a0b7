"""Tests for the stream service's audio ingest: source choice, track mapping and MP3 renditions.

The encoding tests use real recordings from the shared data folder. Only two short ones are
copied into a temporary data folder, so each ingest takes a few seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import mutagen.mp3
import numpy as np
import pytest
import soundfile

from services.stream.audio_ingest import (
    RECORDING_INFO,
    AudioFolderError,
    Manifest,
    ManifestError,
    ManifestNotFoundError,
    Recording,
    discover_recordings,
    ingest_audio,
    load_manifest,
    manifest_path,
    recording_for_track,
)

TRUMPET = "mihai_sorohan_solo_trumpet_06"
TABLA = "sonicpi_loop_tabla"
SHORT_SOURCES = (f"{TRUMPET}.hq.ogg", f"{TABLA}.flac")
BITRATES_KBPS = (64, 128, 320)


def _data_dir() -> Path:
    configured = os.environ.get("BACKBEAT_DATA_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def real_audio_dir() -> Path:
    audio_dir = _data_dir() / "audio"
    if not audio_dir.is_dir():
        pytest.fail(f"Shared audio folder not found: {audio_dir}. Set BACKBEAT_DATA_DIR to the data folder.")
    return audio_dir


def _copy_sources(data_dir: Path, real_audio_dir: Path, names: Iterable[str]) -> Path:
    """Copy real source files into ``<data_dir>/audio`` and return ``data_dir``."""
    audio_dir = data_dir / "audio"
    audio_dir.mkdir(parents=True)
    for name in names:
        shutil.copyfile(real_audio_dir / name, audio_dir / name)
    return data_dir


@pytest.fixture(scope="module")
def short_ingest(
    tmp_path_factory: pytest.TempPathFactory, real_audio_dir: Path
) -> tuple[Path, Path, Manifest]:
    """Ingest the trumpet and tabla recordings once and return (data dir, store root, manifest)."""
    data_dir = _copy_sources(tmp_path_factory.mktemp("data"), real_audio_dir, SHORT_SOURCES)
    store_root = tmp_path_factory.mktemp("store")
    manifest = ingest_audio(data_dir, store_root, progress=False)
    return data_dir, store_root, manifest


def _fake_recordings(slugs: Iterable[str]) -> list[Recording]:
    return [
        Recording(
            slug=slug,
            title=slug,
            artist="artist",
            license="CC0 1.0",
            credit=f"{slug} credit",
            source_file=f"{slug}.flac",
            source_sha256="0" * 64,
            duration_seconds=1.0,
            channels=2,
            sample_rate_hz=44100,
        )
        for slug in slugs
    ]


def _file_stamps(store_root: Path, manifest: Manifest) -> dict[str, tuple[int, int]]:
    """Return (mtime in ns, inode) for every rendition file, keyed by object key."""
    stamps: dict[str, tuple[int, int]] = {}
    for rendition in manifest.renditions:
        status = (store_root / rendition.object_key).stat()
        stamps[rendition.object_key] = (status.st_mtime_ns, status.st_ino)
    return stamps


def _mp3_info(path: Path) -> Any:
    """Return mutagen's MPEGInfo for an MP3 file, typed Any because mutagen declares no attributes."""
    return mutagen.mp3.MP3(str(path)).info  # type: ignore[no-untyped-call]


# Bitrate index to kbps for MPEG-1 Layer III, and sample rate index to Hz for MPEG-1 (ISO/IEC 11172-3).
_MPEG1_LAYER3_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0)
_MPEG1_SAMPLE_RATES_HZ = (44100, 48000, 32000, 0)


@dataclass(frozen=True)
class FrameHeader:
    is_mpeg1_layer3: bool
    bitrate_kbps: int
    sample_rate_hz: int


def _read_frame_headers(path: Path) -> tuple[list[FrameHeader], int]:
    """Walk the MPEG audio frames after the ID3v2 tag and return the headers and the trailing byte count."""
    data = path.read_bytes()
    offset = 0
    if data[:3] == b"ID3":
        # The ID3v2 size is a 28-bit synchsafe integer that excludes the 10-byte header and footer.
        tag_size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        has_footer = bool(data[5] & 0x10)
        offset = 10 + tag_size + (10 if has_footer else 0)

    headers: list[FrameHeader] = []
    while offset + 4 <= len(data):
        word = int.from_bytes(data[offset : offset + 4], "big")
        if word >> 21 != 0x7FF:
            break
        version_bits = (word >> 19) & 0b11
        layer_bits = (word >> 17) & 0b11
        header = FrameHeader(
            is_mpeg1_layer3=version_bits == 0b11 and layer_bits == 0b01,
            bitrate_kbps=_MPEG1_LAYER3_KBPS[(word >> 12) & 0xF],
            sample_rate_hz=_MPEG1_SAMPLE_RATES_HZ[(word >> 10) & 0b11],
        )
        headers.append(header)
        if not header.is_mpeg1_layer3 or header.bitrate_kbps == 0 or header.sample_rate_hz == 0:
            break
        padding = (word >> 9) & 1
        offset += 144 * header.bitrate_kbps * 1000 // header.sample_rate_hz + padding
    return headers, len(data) - offset


def test_track_rule_matches_documented_formula() -> None:
    recordings = _fake_recordings(sorted(RECORDING_INFO))

    for number in range(200):
        track_id = f"track-{number}"
        digest = hashlib.sha256(track_id.encode()).digest()
        expected = recordings[int.from_bytes(digest[:8], "big") % len(recordings)]
        assert recording_for_track(track_id, recordings) == expected
        assert recording_for_track(track_id, list(reversed(recordings))) == expected


def test_track_rule_spreads_ids() -> None:
    recordings = _fake_recordings(sorted(RECORDING_INFO))
    track_count = 3000

    counts = Counter(
        recording_for_track(f"tr_{number:06d}", recordings).slug for number in range(track_count)
    )

    assert set(counts) == {recording.slug for recording in recordings}
    fair_share = track_count / len(recordings)
    for slug, count in counts.items():
        assert count > fair_share / 2, f"{slug} got {count} of {track_count} tracks"
        assert count < fair_share * 2, f"{slug} got {count} of {track_count} tracks"


def test_track_rule_rejects_empty_list() -> None:
    with pytest.raises(ValueError, match="empty"):
        recording_for_track("track-1", [])


def test_discovery_picks_best_source(real_audio_dir: Path) -> None:
    recordings = discover_recordings(real_audio_dir.parent)

    chosen = {recording.slug: recording.source_file for recording in recordings}
    assert chosen == {
        "brahms_hungarian_dance_no5_us_army_strings": "brahms_hungarian_dance_no5_us_army_strings.hq.ogg",
        "edison_1903_spring_of_love": "edison_1903_spring_of_love.mp3",
        "karissa_hobbs_lets_go_fishin": "karissa_hobbs_lets_go_fishin.hq.ogg",
        "kevin_macleod_galway_excerpt": "kevin_macleod_galway_excerpt.m4a",
        "kevin_macleod_sugar_plum_fairy": "kevin_macleod_sugar_plum_fairy.hq.ogg",
        "kevin_macleod_vibe_ace": "kevin_macleod_vibe_ace.hq.ogg",
        "mihai_sorohan_solo_trumpet_06": "mihai_sorohan_solo_trumpet_06.hq.ogg",
        "sonicpi_guit_em9": "sonicpi_guit_em9.flac",
        "sonicpi_loop_tabla": "sonicpi_loop_tabla.flac",
    }
    assert [recording.slug for recording in recordings] == sorted(chosen)


def test_discovery_reads_metadata_and_duration(real_audio_dir: Path) -> None:
    recordings = {recording.slug: recording for recording in discover_recordings(real_audio_dir.parent)}

    vibe_ace = recordings["kevin_macleod_vibe_ace"]
    assert vibe_ace.title == "Vibe Ace"
    assert vibe_ace.artist == "Kevin MacLeod"
    assert vibe_ace.credit == '"Vibe Ace" by Kevin MacLeod (incompetech.com), CC BY 3.0'
    assert vibe_ace.duration_seconds == pytest.approx(61.5, abs=0.05)
    assert vibe_ace.channels == 2

    em9 = recordings["sonicpi_guit_em9"]
    source_bytes = (real_audio_dir / "sonicpi_guit_em9.flac").read_bytes()
    assert em9.source_sha256 == hashlib.sha256(source_bytes).hexdigest()
    assert em9.duration_seconds == pytest.approx(439768 / 44100)

    galway = recordings["kevin_macleod_galway_excerpt"]
    assert galway.channels == 1
    assert galway.duration_seconds == pytest.approx(15.83, abs=0.01)


def test_discovery_ranks_aac_m4a_below_opus(tmp_path: Path, real_audio_dir: Path) -> None:
    slug = "kevin_macleod_galway_excerpt"
    data_dir = _copy_sources(tmp_path, real_audio_dir, [f"{slug}.opus"])
    # An MP4 file containing AAC is lossy, and Opus comes before lossy .m4a in the preference order.
    with av.open(str(data_dir / "audio" / f"{slug}.m4a"), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100, layout="mono")
        samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(44100) / 44100)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = 44100
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))

    recordings = discover_recordings(data_dir)

    assert [recording.source_file for recording in recordings] == [f"{slug}.opus"]


def test_discovery_skips_slug_without_metadata(tmp_path: Path, real_audio_dir: Path) -> None:
    data_dir = _copy_sources(tmp_path, real_audio_dir, [f"{TRUMPET}.hq.ogg"])
    shutil.copyfile(real_audio_dir / f"{TABLA}.flac", data_dir / "audio" / "unlisted_recording.flac")

    recordings = discover_recordings(data_dir)

    assert [recording.slug for recording in recordings] == [TRUMPET]


def test_missing_audio_folder_raises(tmp_path: Path) -> None:
    audio_dir = tmp_path / "audio"

    with pytest.raises(AudioFolderError) as caught:
        ingest_audio(tmp_path, tmp_path / "store", progress=False)

    message = str(caught.value)
    assert "Audio folder not found" in message
    assert str(audio_dir) in message
    assert ".flac" in message
    assert not (tmp_path / "store").exists()


def test_audio_folder_without_audio_raises(tmp_path: Path) -> None:
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    (audio_dir / "licence.txt").write_text("attribution only\n", encoding="utf-8")

    with pytest.raises(AudioFolderError) as caught:
        discover_recordings(tmp_path)

    assert "No audio files" in str(caught.value)
    assert str(audio_dir) in str(caught.value)


def test_audio_folder_with_only_unlisted_slugs_raises(tmp_path: Path, real_audio_dir: Path) -> None:
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    shutil.copyfile(real_audio_dir / f"{TABLA}.flac", audio_dir / "unlisted_recording.flac")

    with pytest.raises(AudioFolderError, match="No usable recordings"):
        discover_recordings(tmp_path)


def test_invalid_bitrate_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Invalid MP3 bitrates"):
        ingest_audio(tmp_path, tmp_path / "store", bitrates=(128, 100), progress=False)
    with pytest.raises(ValueError, match="No bitrates"):
        ingest_audio(tmp_path, tmp_path / "store", bitrates=(), progress=False)


def test_ingest_writes_store_layout(short_ingest: tuple[Path, Path, Manifest]) -> None:
    _, store_root, manifest = short_ingest

    assert [recording.slug for recording in manifest.recordings] == [TRUMPET, TABLA]
    assert [recording.source_file for recording in manifest.recordings] == list(SHORT_SOURCES)
    for recording in manifest.recordings:
        renditions = manifest.renditions_for(recording.slug)
        assert [rendition.bitrate_kbps for rendition in renditions] == list(BITRATES_KBPS)
        for rendition in renditions:
            path = store_root / "renditions" / recording.slug / f"{rendition.bitrate_kbps}.mp3"
            assert rendition.object_key == f"renditions/{recording.slug}/{rendition.bitrate_kbps}.mp3"
            assert rendition.codec == "mp3"
            assert rendition.content_type == "audio/mpeg"
            assert rendition.size_bytes == path.stat().st_size
            assert rendition.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    leftovers = sorted(path.name for path in (store_root / "renditions").rglob("*.tmp"))
    assert leftovers == []


def test_manifest_file_round_trips(short_ingest: tuple[Path, Path, Manifest]) -> None:
    _, store_root, manifest = short_ingest

    payload = json.loads(manifest_path(store_root).read_text(encoding="utf-8"))
    first = payload["recordings"][0]
    assert payload["format_version"] == 1
    assert first["slug"] == TRUMPET
    assert first["credit"] == "Trumpet loop by Mihai Sorohan (sorohanro), CC BY 3.0"
    assert first["source_file"] == f"{TRUMPET}.hq.ogg"
    assert first["duration_seconds"] == pytest.approx(5.333, abs=0.001)
    assert first["renditions"][1]["object_key"] == f"renditions/{TRUMPET}/128.mp3"
    assert load_manifest(store_root) == manifest


def test_renditions_decode_to_source_audio(short_ingest: tuple[Path, Path, Manifest]) -> None:
    data_dir, store_root, manifest = short_ingest

    for recording in manifest.recordings:
        source_info = soundfile.info(str(data_dir / "audio" / recording.source_file))
        for rendition in manifest.renditions_for(recording.slug):
            samples, sample_rate = soundfile.read(str(store_root / rendition.object_key), dtype="float32")
            label = rendition.object_key
            assert sample_rate == 44100, label
            assert samples.ndim == 2, label
            assert samples.shape[1] == source_info.channels, label
            assert samples.shape[0] / sample_rate == pytest.approx(source_info.duration, abs=0.05), label
            assert float(np.sqrt(np.mean(np.square(samples)))) > 0.01, f"{label} is silent"


def test_renditions_are_cbr_mpeg1_layer3(short_ingest: tuple[Path, Path, Manifest]) -> None:
    _, store_root, manifest = short_ingest

    for rendition in manifest.renditions:
        path = store_root / rendition.object_key
        expected_bps = rendition.bitrate_kbps * 1000

        info = _mp3_info(path)
        assert info.sample_rate == 44100, rendition.object_key
        assert info.version == 1, rendition.object_key
        assert info.layer == 3, rendition.object_key
        assert info.bitrate_mode == mutagen.mp3.BitrateMode.CBR, rendition.object_key
        # mutagen derives the bitrate from the byte and frame totals in the LAME "Info" frame. At
        # 44100 Hz frames differ by one padding byte, so a short file's average is a few bit/s off.
        assert abs(info.bitrate - expected_bps) <= expected_bps // 1000, (rendition.object_key, info.bitrate)

        headers, trailing_bytes = _read_frame_headers(path)
        assert len(headers) > 100, rendition.object_key
        assert all(header.is_mpeg1_layer3 for header in headers), rendition.object_key
        assert {header.bitrate_kbps for header in headers} == {rendition.bitrate_kbps}, rendition.object_key
        assert {header.sample_rate_hz for header in headers} == {44100}, rendition.object_key
        assert trailing_bytes == 0, rendition.object_key


def test_mono_source_stays_mono(tmp_path: Path, real_audio_dir: Path) -> None:
    data_dir = _copy_sources(tmp_path / "data", real_audio_dir, [f"{TRUMPET}.lq.ogg"])

    manifest = ingest_audio(data_dir, tmp_path / "store", bitrates=(64,), progress=False)

    rendition = manifest.rendition(TRUMPET, 64)
    assert manifest.recording(TRUMPET).source_file == f"{TRUMPET}.lq.ogg"
    assert rendition.channels == 1
    assert _mp3_info(tmp_path / "store" / rendition.object_key).channels == 1
    samples, sample_rate = soundfile.read(str(tmp_path / "store" / rendition.object_key), dtype="float32")
    assert sample_rate == 44100
    assert samples.ndim == 1
    assert samples.shape[0] / sample_rate == pytest.approx(5.333, abs=0.05)


def test_second_run_reuses_renditions(
    tmp_path: Path, real_audio_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = _copy_sources(tmp_path / "data", real_audio_dir, [f"{TRUMPET}.hq.ogg"])
    store_root = tmp_path / "store"
    first = ingest_audio(data_dir, store_root, progress=False)
    stamps = _file_stamps(store_root, first)

    second = ingest_audio(data_dir, store_root, progress=True)

    assert second == first
    assert _file_stamps(store_root, second) == stamps
    assert "Encoding MP3 renditions" in capsys.readouterr().err

    forced = ingest_audio(data_dir, store_root, force=True, progress=False)

    forced_stamps = _file_stamps(store_root, forced)
    for object_key, (mtime_ns, inode) in stamps.items():
        assert forced_stamps[object_key][0] != mtime_ns, object_key
        assert forced_stamps[object_key][1] != inode, object_key


def test_changed_rendition_is_reencoded(tmp_path: Path, real_audio_dir: Path) -> None:
    data_dir = _copy_sources(tmp_path / "data", real_audio_dir, [f"{TRUMPET}.hq.ogg"])
    store_root = tmp_path / "store"
    first = ingest_audio(data_dir, store_root, progress=False)
    stamps = _file_stamps(store_root, first)
    damaged_key = f"renditions/{TRUMPET}/128.mp3"
    with (store_root / damaged_key).open("r+b") as handle:
        handle.truncate(1000)
    # A file left by an interrupted run is removed by the next run.
    (store_root / "renditions" / TRUMPET / ".64.abc.mp3.tmp").write_bytes(b"partial")

    second = ingest_audio(data_dir, store_root, progress=False)

    second_stamps = _file_stamps(store_root, second)
    assert second_stamps[damaged_key] != stamps[damaged_key]
    assert (store_root / damaged_key).stat().st_size == first.rendition(TRUMPET, 128).size_bytes
    for object_key in (f"renditions/{TRUMPET}/64.mp3", f"renditions/{TRUMPET}/320.mp3"):
        assert second_stamps[object_key] == stamps[object_key], object_key
    assert not (store_root / "renditions" / TRUMPET / ".64.abc.mp3.tmp").exists()


def test_invalid_manifest_is_rebuilt(tmp_path: Path, real_audio_dir: Path) -> None:
    data_dir = _copy_sources(tmp_path / "data", real_audio_dir, [f"{TRUMPET}.hq.ogg"])
    store_root = tmp_path / "store"
    first = ingest_audio(data_dir, store_root, bitrates=(64,), progress=False)
    manifest_path(store_root).write_text("{not json", encoding="utf-8")

    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(store_root)

    second = ingest_audio(data_dir, store_root, bitrates=(64,), progress=False)
    assert second == first
    assert load_manifest(store_root) == first


def test_load_manifest_missing_raises(tmp_path: Path) -> None:
    with pytest.raises(ManifestNotFoundError) as caught:
        load_manifest(tmp_path)

    assert str(manifest_path(tmp_path)) in str(caught.value)
    assert "backbeat setup" in str(caught.value)


def test_load_manifest_rejects_missing_file(
    tmp_path: Path, short_ingest: tuple[Path, Path, Manifest]
) -> None:
    _, store_root, manifest = short_ingest
    copied_root = tmp_path / "store"
    shutil.copytree(store_root, copied_root)
    (copied_root / f"renditions/{TABLA}/320.mp3").unlink()

    with pytest.raises(ManifestError, match="missing") as caught:
        load_manifest(copied_root)

    assert "backbeat setup" in str(caught.value)
    assert load_manifest(copied_root, check_files=False) == manifest


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("object_key", "../../etc/passwd", "object_key"),
        ("size_bytes", "12", "size_bytes"),
        ("bitrate_kbps", True, "bitrate_kbps"),
    ],
)
def test_load_manifest_rejects_invalid_rendition(
    tmp_path: Path, short_ingest: tuple[Path, Path, Manifest], field: str, value: object, problem: str
) -> None:
    _, store_root, _ = short_ingest
    payload = json.loads(manifest_path(store_root).read_text(encoding="utf-8"))
    payload["recordings"][0]["renditions"][0][field] = value
    target = manifest_path(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(payload), encoding="utf-8")

    with pytest.raises(ManifestError, match=problem):
        load_manifest(tmp_path, check_files=False)
