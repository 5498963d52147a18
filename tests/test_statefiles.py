"""State files: atomic, private, and a corrupt one never stops the daemon."""

from __future__ import annotations

import logging

from minut2mqtt.storage import read_json, webhook_secret, write_json


def test_written_file_is_private_and_reads_back(tmp_path):
    path = tmp_path / "state" / "cursor.json"
    write_json(path, {"home1": "2026-11-22T10:00:00.000Z"})
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_json(path) == {"home1": "2026-11-22T10:00:00.000Z"}
    assert [p.name for p in path.parent.iterdir()] == ["cursor.json"], "no temporary left behind"


def test_missing_file_is_no_state_yet(tmp_path):
    assert read_json(tmp_path / "nothing.json") is None


def test_corrupt_file_is_reported_and_moved_aside(tmp_path, caplog):
    path = tmp_path / "seen.json"
    path.write_text('{"cut short')
    with caplog.at_level(logging.ERROR):
        assert read_json(path) is None
    assert not path.exists()
    [aside] = tmp_path.glob("seen.json.corrupt-*")
    assert aside.read_text() == '{"cut short'
    assert "is not valid JSON" in caplog.text and "moved aside" in caplog.text


def test_a_json_value_that_is_not_an_object_is_corrupt_too(tmp_path):
    path = tmp_path / "seen.json"
    path.write_text("[1, 2]")
    assert read_json(path) is None
    assert list(tmp_path.glob("seen.json.corrupt-*"))


def test_webhook_secret_is_created_once(tmp_path):
    first = webhook_secret(tmp_path)
    assert webhook_secret(tmp_path) == first
    assert (tmp_path / "webhook_secret").stat().st_mode & 0o777 == 0o600
