"""Model specs edited while the workers run: an edit is taken without a restart, a broken edit is not."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from driftloop.infra.spec import SpecCatalog, SpecError


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_edit_is_taken_once_the_file_is_looked_at_again(tmp_path: Path) -> None:
    path, clock = tmp_path / "fraud.toml", Clock()
    path.write_text('name = "fraud"\nowner = "risk-ml"\n')
    catalog = SpecCatalog(tmp_path, recheck_s=5.0, clock=clock)
    assert catalog.get("fraud").owner == "risk-ml"
    path.write_text('name = "fraud"\nowner = "payments-oncall"\nrunbook = "https://wiki/fraud"\n')
    clock.now = 4.9
    assert catalog.get("fraud").owner == "risk-ml"  # not looked at again yet: a stat once a model a while
    clock.now = 5.0
    edited = catalog.get("fraud")
    assert (edited.owner, edited.runbook) == ("payments-oncall", "https://wiki/fraud")
    clock.now = 10.0
    assert catalog.get("fraud") is edited  # unchanged: not read again
    path.write_text(path.read_text() + "# moved to the payments team\n")
    clock.now = 15.0
    assert catalog.get("fraud") is edited  # a comment: the same spec, which the workers need not take again


def test_a_file_added_removed_or_replaced_is_taken(tmp_path: Path) -> None:
    clock = Clock()
    catalog = SpecCatalog(tmp_path, recheck_s=1.0, clock=clock)
    assert catalog.get("m").owner == ""  # no file: the defaults
    path = tmp_path / "m.toml"
    path.write_text('name = "m"\nowner = "a"\n')
    clock.now = 1.0
    assert catalog.get("m").owner == "a"
    replacement = tmp_path / "m.toml.tmp"  # an editor's save: a new file renamed over the old one, same size
    replacement.write_text('name = "m"\nowner = "b"\n')
    replacement.replace(path)
    clock.now = 2.0
    assert catalog.get("m").owner == "b"
    path.unlink()
    clock.now = 3.0
    assert catalog.get("m").owner == ""


def test_an_edit_that_breaks_a_spec_keeps_the_last_good_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, clock = tmp_path / "m.toml", Clock()
    path.write_text('name = "m"\nowner = "a"\n[monitoring]\ncooldown_s = 60\n')
    catalog = SpecCatalog(tmp_path, recheck_s=1.0, clock=clock)
    good = catalog.get("m")
    path.write_text('name = "m"\nowner = "a"\n[monitoring]\ncooldown_s = "an hour"\n')
    with caplog.at_level(logging.ERROR, logger="driftloop.specs"):
        for second in range(1, 4):
            clock.now = second
            assert catalog.get("m") is good  # a worker goes on with what it had
    (error,) = [r for r in caplog.records if r.levelname == "ERROR"]  # once an edit, not once a look
    assert f"{path}: monitoring.cooldown_s" in error.fields["error"]
    path.write_text('name = "m"\nowner = "a"\n[monitoring]\ncooldown_s = 3600\n')
    clock.now = 4.0
    assert catalog.get("m").monitoring.cooldown_s == 3600


def test_a_spec_broken_from_its_first_read_is_an_error_each_time(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('name = "m"\ntask = "ranking"\n')
    catalog = SpecCatalog(tmp_path)
    for _ in range(2):
        with pytest.raises(SpecError, match="task"):
            catalog.get("m")
    path.write_text('name = "m"\ntask = "binary"\n')
    assert catalog.get("m").task == "binary"  # read again at once: there was nothing to keep


def test_a_spec_is_read_as_utf8_and_one_that_is_not_says_so(tmp_path: Path) -> None:
    """A byte-order mark (some Windows editors write one) was "not valid TOML ... line 1, column 1"; a file saved
    in Latin-1 raised a UnicodeDecodeError out of the catalog, which the detection process did not catch: the
    batch, every model's in it, failed."""
    path = tmp_path / "m.toml"
    path.write_bytes(b"\xef\xbb\xbf" + 'name = "m"\nowner = "José Núñez"\n'.encode())
    assert SpecCatalog(tmp_path).get("m").owner == "José Núñez"
    path.write_bytes('name = "m"\nowner = "José"\n'.encode("latin-1"))
    with pytest.raises(SpecError, match=r"m\.toml: not UTF-8 text \(byte 23\): save the spec as UTF-8"):
        SpecCatalog(tmp_path).get("m")


def test_an_edit_of_the_same_size_within_the_same_second_is_taken(tmp_path: Path) -> None:
    """A file system that keeps whole seconds (some network and container mounts) gives an edit of the same size
    in the same second the same mtime, size and inode: that edit was never taken. A file modified in the last
    two seconds is told by its content."""
    path = tmp_path / "m.toml"
    path.write_text('name = "m"\nowner = "risk-ml"\n')
    # a whole second, as such a file system keeps, a minute ahead (a clock a little off, as on a network mount):
    # the two looks below fall within its settling time however slow the machine
    second = (time.time_ns() // 1_000_000_000 + 60) * 1_000_000_000
    os.utime(path, ns=(second, second))
    catalog = SpecCatalog(tmp_path, recheck_s=0.0)
    assert catalog.get("m").owner == "risk-ml"
    path.write_text('name = "m"\nowner = "risk-ai"\n')  # in place: the same inode, the same size
    os.utime(path, ns=(second, second))
    assert catalog.get("m").owner == "risk-ai"
