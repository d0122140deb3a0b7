"""Tests for the licensing service: the rights rule, the royalty ledger and the LicensingService API.

Rights come from the rights database that the `state` fixture builds from the real catalog. Each
ledger test writes a fresh SQLite file. The gRPC tests run LicensingServicer in an in-process server
on a free loopback port.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from backbeat.licensing.v1 import licensing_service_pb2 as pb
from backbeat.licensing.v1 import licensing_service_pb2_grpc as pb_grpc
from mesh.errors import InvalidArgument, NotFound
from mesh.server import ServiceDefinition, build_server
from services.licensing.ledger import STREAM_THRESHOLD_MS, Ledger, PlaybackReport
from services.licensing.rights import MAX_BATCH, Rights, album_withheld, build_rights
from services.licensing.servicer import LicensingServicer
from services.markets import MARKETS
from services.metadata.catalog import Catalog
from services.setup import StatePaths

# "Higher Love" by Kygo, on album 4wquJImu8RtyEuDtIAsfcE, which the rule withholds in GB only.
HIGHER_LOVE = "6oJ6le65B3SEqPwMRNXWjY"
HIGHER_LOVE_ALBUM = "4wquJImu8RtyEuDtIAsfcE"
BOHEMIAN_RHAPSODY = "4u7EnebtmKWzUH433cf5Qv"
UNKNOWN_TRACK = "0000000000000000000000"
COUNTED_AT = 1_700_000_000.0


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """Return the field names of the google.rpc.BadRequest details of a failed call."""
    status = rpc_status.from_call(error)
    fields: list[str] = []
    if status is None:
        return fields
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields.extend(violation.field for violation in bad_request.field_violations)
    return fields


@pytest.fixture(scope="module")
def rights(state: StatePaths) -> Iterator[Rights]:
    opened = Rights(state.rights)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def track_albums(state: StatePaths) -> dict[str, str]:
    """Album id of every catalog track, keyed by track id."""
    catalog = Catalog(state.catalog)
    albums = {track.track_id: track.album_id for track in catalog.iter_all()}
    catalog.close()
    return albums


# Rights rule


def test_rule_known_album() -> None:
    withheld_in = [market for market in MARKETS if album_withheld(HIGHER_LOVE_ALBUM, market)]

    assert withheld_in == ["GB"]


def test_rule_deterministic(track_albums: dict[str, str]) -> None:
    albums = sorted(set(track_albums.values()))[:500]

    first = [album_withheld(album, market) for album in albums for market in MARKETS]
    second = [album_withheld(album, market) for album in albums for market in MARKETS]

    assert first == second


def test_rule_withholds_about_8_percent(track_albums: dict[str, str]) -> None:
    albums = set(track_albums.values())
    pairs = len(albums) * len(MARKETS)

    withheld = sum(album_withheld(album, market) for album in albums for market in MARKETS)

    assert 0.07 < withheld / pairs < 0.09


def test_build_rights_same_result(tmp_path: Path, track_albums: dict[str, str]) -> None:
    pairs = sorted(track_albums.items())[:2_000]

    first = build_rights(pairs, tmp_path / "first.db")
    second = build_rights(pairs, tmp_path / "second.db")

    def withheld_rows(path: Path) -> list[tuple[str, str]]:
        db = sqlite3.connect(path)
        rows = db.execute("SELECT album_id, market FROM withheld ORDER BY album_id, market").fetchall()
        db.close()
        return rows

    assert first == second
    assert withheld_rows(tmp_path / "first.db") == withheld_rows(tmp_path / "second.db")


def test_stored_rights_follow_rule(rights: Rights, track_albums: dict[str, str]) -> None:
    sample = sorted(track_albums)[::500]

    for market in MARKETS:
        for decision in rights.check_many(sample, market):
            expected = not album_withheld(track_albums[decision.track_id], market)
            assert decision.allowed == expected, (decision, market)


def test_withheld_tracks_are_withheld(rights: Rights, track_albums: dict[str, str]) -> None:
    for market in MARKETS:
        tracks = rights.withheld_tracks(market, 20)
        assert len(tracks) == 20, market
        assert tracks == sorted(tracks), market
        assert all(album_withheld(track_albums[track_id], market) for track_id in tracks), market


# Rights lookups


def test_check_licensed(rights: Rights) -> None:
    decision = rights.check(HIGHER_LOVE, "US")

    assert decision.allowed is True
    assert decision.reason == "licensed"


def test_check_withheld(rights: Rights) -> None:
    decision = rights.check(HIGHER_LOVE, "GB")

    assert decision.allowed is False
    assert decision.reason == "album_withheld"
    assert decision.detail == f"album {HIGHER_LOVE_ALBUM} is withheld in GB"


def test_check_unknown_track(rights: Rights) -> None:
    with pytest.raises(NotFound, match=UNKNOWN_TRACK):
        rights.check(UNKNOWN_TRACK, "US")


def test_check_empty_track_id(rights: Rights) -> None:
    with pytest.raises(InvalidArgument) as raised:
        rights.check("", "US")

    assert raised.value.field == "track_id"


def test_check_unknown_market(rights: Rights) -> None:
    with pytest.raises(InvalidArgument) as raised:
        rights.check(HIGHER_LOVE, "FR")

    assert raised.value.field == "market"


def test_check_many_order(rights: Rights) -> None:
    decisions = rights.check_many([BOHEMIAN_RHAPSODY, UNKNOWN_TRACK, HIGHER_LOVE], "GB")

    assert [decision.track_id for decision in decisions] == [BOHEMIAN_RHAPSODY, UNKNOWN_TRACK, HIGHER_LOVE]
    assert [decision.reason for decision in decisions] == ["licensed", "unknown_track", "album_withheld"]
    assert [decision.allowed for decision in decisions] == [True, False, False]


def test_check_many_empty(rights: Rights) -> None:
    assert rights.check_many([], "US") == []


def test_check_many_over_limit(rights: Rights) -> None:
    with pytest.raises(InvalidArgument) as raised:
        rights.check_many([HIGHER_LOVE] * (MAX_BATCH + 1), "US")

    assert raised.value.field == "track_ids"


def test_check_many_unknown_market(rights: Rights) -> None:
    with pytest.raises(InvalidArgument) as raised:
        rights.check_many([HIGHER_LOVE], "")

    assert raised.value.field == "market"


# Ledger


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(ledger_path: Path) -> Iterator[Ledger]:
    opened = Ledger(ledger_path, clock=lambda: COUNTED_AT)
    yield opened
    opened.close()


def report(
    played_ms: int, playback_id: str = "pb-1", track_id: str = HIGHER_LOVE, market: str = "US"
) -> PlaybackReport:
    return PlaybackReport(playback_id, "u-free-us", track_id, market, played_ms)


def test_ledger_under_30s_not_counted(ledger: Ledger) -> None:
    result = ledger.record(report(STREAM_THRESHOLD_MS - 1))

    assert result.counted is False
    assert result.already_counted is False
    assert ledger.stream_count(HIGHER_LOVE) == 0


def test_ledger_at_30s_counted(ledger: Ledger) -> None:
    result = ledger.record(report(30_000))

    assert result.counted is True
    assert result.already_counted is False
    assert ledger.stream_count(HIGHER_LOVE) == 1


def test_ledger_repeat_counted_once(ledger: Ledger) -> None:
    ledger.record(report(45_000))

    result = ledger.record(report(45_000))

    assert result.counted is True
    assert result.already_counted is True
    assert ledger.stream_count(HIGHER_LOVE) == 1


def test_ledger_later_report_counts(ledger: Ledger) -> None:
    ledger.record(report(10_000))

    result = ledger.record(report(40_000))

    assert result.counted is True
    assert result.already_counted is False
    assert ledger.stream_count(HIGHER_LOVE) == 1


def test_ledger_playbacks_counted_separately(ledger: Ledger) -> None:
    ledger.record(report(30_000, playback_id="pb-1"))
    ledger.record(report(30_000, playback_id="pb-2"))
    ledger.record(report(30_000, playback_id="pb-3", track_id=BOHEMIAN_RHAPSODY))

    assert ledger.stream_count(HIGHER_LOVE) == 2
    assert ledger.stream_count(BOHEMIAN_RHAPSODY) == 1


def test_ledger_other_track_rejected(ledger: Ledger) -> None:
    ledger.record(report(30_000))

    with pytest.raises(InvalidArgument) as raised:
        ledger.record(report(30_000, track_id=BOHEMIAN_RHAPSODY))

    assert raised.value.field == "track_id"
    assert ledger.stream_count(BOHEMIAN_RHAPSODY) == 0


def test_ledger_persists_after_reopen(ledger: Ledger, ledger_path: Path) -> None:
    ledger.record(report(30_000))
    ledger.close()

    reopened = Ledger(ledger_path)
    count = reopened.stream_count(HIGHER_LOVE)
    result = reopened.record(report(30_000))
    reopened.close()

    assert count == 1
    assert result.already_counted is True


def test_ledger_row_fields(ledger: Ledger, ledger_path: Path) -> None:
    ledger.record(report(31_234, market="JP"))

    db = sqlite3.connect(ledger_path)
    row = db.execute("SELECT * FROM counted_streams").fetchone()
    db.close()

    assert row == ("pb-1", "u-free-us", HIGHER_LOVE, "JP", 31_234, COUNTED_AT)


def test_ledger_unknown_market(ledger: Ledger) -> None:
    with pytest.raises(InvalidArgument) as raised:
        ledger.record(report(30_000, market="XX"))

    assert raised.value.field == "market"


def test_ledger_negative_played_ms(ledger: Ledger) -> None:
    with pytest.raises(InvalidArgument) as raised:
        ledger.record(report(-1))

    assert raised.value.field == "played_ms"


@pytest.mark.parametrize("field", ["playback_id", "user_id", "track_id"])
def test_ledger_empty_id(ledger: Ledger, field: str) -> None:
    values = {"playback_id": "pb-1", "user_id": "u-free-us", "track_id": HIGHER_LOVE, field: ""}

    with pytest.raises(InvalidArgument) as raised:
        ledger.record(PlaybackReport(market="US", played_ms=30_000, **values))

    assert raised.value.field == field


# LicensingService over gRPC


@dataclass
class LicensingApi:
    stub: pb_grpc.LicensingServiceStub
    rights: Rights


@pytest.fixture
async def licensing_api(rights: Rights, ledger: Ledger) -> AsyncIterator[LicensingApi]:
    """LicensingServicer in an in-process server on a free loopback port, with a fresh ledger."""
    definition = ServiceDefinition.of(
        pb.DESCRIPTOR,
        "LicensingService",
        pb_grpc.add_LicensingServiceServicer_to_server,
        LicensingServicer(rights, ledger),
    )
    built = build_server("licensing", [definition], "127.0.0.1", 0)
    await built.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
        yield LicensingApi(pb_grpc.LicensingServiceStub(channel), rights)
    await built.stop(0)


def playback(played_ms: int, track_id: str = HIGHER_LOVE) -> pb.RecordPlaybackRequest:
    return pb.RecordPlaybackRequest(
        playback_id="pb-grpc-1", user_id="u-free-us", track_id=track_id, market="US", played_ms=played_ms
    )


async def test_check_license_allowed(licensing_api: LicensingApi) -> None:
    request = pb.CheckLicenseRequest(track_id=HIGHER_LOVE, market="US")

    response = await licensing_api.stub.CheckLicense(request)

    assert response.allowed is True
    assert response.reason == pb.LICENSE_REASON_LICENSED


async def test_check_license_withheld(licensing_api: LicensingApi) -> None:
    track_id = licensing_api.rights.withheld_tracks("DE", 1)[0]

    response = await licensing_api.stub.CheckLicense(pb.CheckLicenseRequest(track_id=track_id, market="DE"))

    assert response.allowed is False
    assert response.reason == pb.LICENSE_REASON_ALBUM_WITHHELD
    assert response.detail.endswith("is withheld in DE")


async def test_check_license_unknown_track(licensing_api: LicensingApi) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await licensing_api.stub.CheckLicense(pb.CheckLicenseRequest(track_id=UNKNOWN_TRACK, market="US"))

    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_check_license_unknown_market(licensing_api: LicensingApi) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await licensing_api.stub.CheckLicense(pb.CheckLicenseRequest(track_id=HIGHER_LOVE, market="FR"))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == ["market"]


async def test_check_licenses_order(licensing_api: LicensingApi) -> None:
    request = pb.CheckLicensesRequest(track_ids=[HIGHER_LOVE, UNKNOWN_TRACK, BOHEMIAN_RHAPSODY], market="GB")

    response = await licensing_api.stub.CheckLicenses(request)

    assert [decision.track_id for decision in response.decisions] == [
        HIGHER_LOVE, UNKNOWN_TRACK, BOHEMIAN_RHAPSODY
    ]
    assert [decision.reason for decision in response.decisions] == [
        pb.LICENSE_REASON_ALBUM_WITHHELD, pb.LICENSE_REASON_UNKNOWN_TRACK, pb.LICENSE_REASON_LICENSED
    ]


async def test_record_playback_idempotent(licensing_api: LicensingApi) -> None:
    first = await licensing_api.stub.RecordPlayback(playback(30_000))
    second = await licensing_api.stub.RecordPlayback(playback(30_000))

    assert first.counted is True
    assert first.already_counted is False
    assert second.counted is True
    assert second.already_counted is True


async def test_record_playback_short(licensing_api: LicensingApi) -> None:
    response = await licensing_api.stub.RecordPlayback(playback(29_999))

    assert response.counted is False
    assert response.already_counted is False


async def test_record_playback_other_track(licensing_api: LicensingApi) -> None:
    await licensing_api.stub.RecordPlayback(playback(30_000))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await licensing_api.stub.RecordPlayback(playback(30_000, track_id=BOHEMIAN_RHAPSODY))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == ["track_id"]


async def test_record_playback_negative(licensing_api: LicensingApi) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await licensing_api.stub.RecordPlayback(playback(-5))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == ["played_ms"]


async def test_get_stream_count(licensing_api: LicensingApi) -> None:
    await licensing_api.stub.RecordPlayback(playback(30_000))
    await licensing_api.stub.RecordPlayback(playback(30_000))

    counted = await licensing_api.stub.GetStreamCount(pb.GetStreamCountRequest(track_id=HIGHER_LOVE))
    other = await licensing_api.stub.GetStreamCount(pb.GetStreamCountRequest(track_id=BOHEMIAN_RHAPSODY))

    assert counted.stream_count == 1
    assert other.stream_count == 0


async def test_get_stream_count_empty_id(licensing_api: LicensingApi) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await licensing_api.stub.GetStreamCount(pb.GetStreamCountRequest(track_id=""))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == ["track_id"]
