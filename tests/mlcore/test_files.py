"""The one atomic writer and the one s3:// parser."""

import stat

import pytest

from mlcore.files import atomic_write, is_s3_uri, parse_s3_uri


def test_s3_uris_are_split_or_refused_with_the_reason():
    assert parse_s3_uri("s3://models/production/model.onnx") == ("models", "production/model.onnx")
    assert is_s3_uri("s3://b/k") and not is_s3_uri("/var/serving/model.onnx")
    for bad in ("s3://models", "s3:///key", "s3://models/", "/local/path"):
        with pytest.raises(ValueError, match="s3"):
            parse_s3_uri(bad)


def test_a_write_replaces_the_file_whole_and_readable(tmp_path):
    target = tmp_path / "deep" / "model.onnx"
    atomic_write(target, lambda handle: handle.write(b"first"))
    atomic_write(target, lambda handle: handle.write(b"second"))
    assert target.read_bytes() == b"second"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # the serving process, another user, reads it
    assert [p.name for p in target.parent.iterdir()] == ["model.onnx"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"the old model")

    def half_then_fail(handle):
        handle.write(b"half of the new")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"the old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
