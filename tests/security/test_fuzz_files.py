"""Hypothesis fuzzing of every file a broker reads at start: the TOML config, the commitlog
segments, the index (rocksdict: CURRENT, MANIFEST, tables, WAL, options), the TRUNCATING marker,
the epoch file and the controller identity.

Each corrupted file must give either a clear typed error naming the file (the broker then exits
with "cannot start: <file>: ..." instead of a traceback), or a store that opens with nothing
already stored lost: every message whose record lies before the first damaged byte is read
back, and no read returns a message that was never stored. In-process for the many examples, then
real `orbitmq broker` processes for one corruption of each kind."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from fuzzing import COUNTS, OUTCOMES
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orbitmq.broker.config import BrokerConfig
from orbitmq.broker.ha.epoch_file import EpochFile, EpochFileError
from orbitmq.broker.ha.epochs import EpochEntry, encode
from orbitmq.broker.store import Message, MessageStore, StoreConfig
from orbitmq.broker.store.errors import StoreError
from orbitmq.common import config as cfgmod
from orbitmq.common import net, proc
from orbitmq.controller.agent import IdentityError, read_identity
from orbitmq.protos import broker_pb2, broker_pb2_grpc

SEG = 64 * 1024
FUZZ = settings(max_examples=25, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
BODIES = [f"kept-{i:03d}-".encode() * 12 for i in range(120)]   # ~2 segments of 64 KiB


def count(target: str, outcome: str) -> None:
    COUNTS[f"files.{target}"] += 1
    OUTCOMES[f"files:{outcome}"] += 1


def make_store(d: Path) -> list[int]:
    """A store under `d` holding BODIES in topic T queue 0; returns each record's end offset."""
    s = MessageStore(StoreConfig(store_dir=str(d), segment_size=SEG, expiry_interval_s=0))
    s.open()
    s.put_topic_config("T", {"read_queues": 1, "write_queues": 1, "perm": 6, "order": False, "attributes": {}})
    ends = [s.put(Message(topic="T", body=b, queue_id=0)).end_offset for b in BODIES]
    s.close()
    return ends


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    d = tmp_path_factory.mktemp("pristine") / "store"
    ends = make_store(d)
    return d, ends


def read_back(d: Path) -> list[bytes]:
    s = MessageStore(StoreConfig(store_dir=str(d), segment_size=SEG, expiry_interval_s=0))
    s.open()
    try:
        # an index that lost entries is rebuilt by dispatching the log again: wait until it is caught up
        assert s.wait_dispatched(s.max_physical_offset, 60), "the index never caught up with the log"
        r = s.get_messages("T", 0, 0, 10_000, 1 << 30)
        return [m.body for m in r.messages]
    finally:
        s.close()


def check_open(d: Path, damaged_from: int, ends: list[int], names: str, target: str) -> None:
    """Open the damaged store: a StoreError naming `names`, or every record ending before
    `damaged_from` read back and nothing that was never stored."""
    try:
        got = read_back(d)
    except StoreError as e:
        assert names in str(e), f"error does not name {names}: {e}"
        count(target, "typed_error")
        return
    intact = [b for b, end in zip(BODIES, ends, strict=True) if end <= damaged_from]
    assert got[: len(intact)] == intact, f"lost stored messages ({len(got)} read, {len(intact)} intact)"
    assert set(got) <= set(BODIES), "a read returned a message that was never stored"
    count(target, "recovered")


def test_fuzz_commitlog_segments(pristine, tmp_path):
    src, ends = pristine
    segs = sorted((src / "commitlog").iterdir())

    @FUZZ
    @given(seg=st.integers(0, len(segs) - 1), how=st.sampled_from(["flip", "zero", "truncate", "garbage"]),
           data=st.data())
    def one(seg, how, data):
        d = tmp_path / "c"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(src, d)
        p = d / "commitlog" / segs[seg].name
        base = int(p.name)
        raw = bytearray(p.read_bytes())
        used = max(1, min(len(raw), ends[-1] - base)) if ends[-1] > base else len(raw)
        if how == "flip":
            pos = data.draw(st.lists(st.integers(0, used - 1), min_size=1, max_size=4))
            for i in pos:
                raw[i] ^= data.draw(st.integers(1, 255))
            first = base + min(pos)
        elif how == "zero":
            a = data.draw(st.integers(0, used - 1))
            b = data.draw(st.integers(a + 1, min(len(raw), a + 4096)))
            raw[a:b] = bytes(b - a)
            first = base + a
        elif how == "truncate":
            n = data.draw(st.integers(0, len(raw) - 1))
            raw = raw[:n]
            first = base + n
        else:
            raw = bytearray(data.draw(st.binary(min_size=0, max_size=300)))
            first = base
        p.write_bytes(bytes(raw))
        check_open(d, first, ends, str(p), "commitlog_segment")

    one()


def test_fuzz_index_files(pristine, tmp_path):
    src, ends = pristine
    names = sorted(p.name for p in (src / "index").iterdir() if p.name not in ("LOCK", "LOG"))

    @FUZZ
    @given(name=st.sampled_from(names), how=st.sampled_from(["flip", "empty", "garbage", "delete"]), data=st.data())
    def one(name, how, data):
        d = tmp_path / "i"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(src, d)
        p = d / "index" / name
        raw = bytearray(p.read_bytes())
        if how == "flip" and raw:
            for _ in range(data.draw(st.integers(1, 4))):
                raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
            p.write_bytes(bytes(raw))
        elif how == "empty":
            p.write_bytes(b"")
        elif how == "garbage":
            p.write_bytes(data.draw(st.binary(max_size=200)))
        else:
            p.unlink()
        # the index is derived from the commitlog, which is intact: nothing may be lost
        check_open(d, ends[-1], ends, str(d / "index"), "index_files")

    one()


def test_fuzz_truncating_marker(pristine, tmp_path):
    src, ends = pristine

    @FUZZ
    @given(content=st.binary(max_size=40) | st.integers(-(2**70), 2**70).map(lambda i: str(i).encode()))
    def one(content):
        d = tmp_path / "t"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(src, d)
        (d / "TRUNCATING").write_bytes(content)
        try:
            point = int(content.decode().strip())
        except (UnicodeDecodeError, ValueError):
            point = ends[-1]
        check_open(d, max(0, min(point, ends[-1])), ends, str(d / "TRUNCATING"), "truncating_marker")

    one()


def test_fuzz_epoch_file(tmp_path):
    valid = encode([EpochEntry(1, 0), EpochEntry(3, 4096), EpochEntry(7, 90000)])

    @FUZZ
    @given(content=st.binary(max_size=200) | st.none(), data=st.data())
    def one(content, data):
        if content is None:
            raw = bytearray(valid)
            for _ in range(data.draw(st.integers(1, 3))):
                raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
            content = bytes(raw)
        p = tmp_path / "epochs"
        p.write_bytes(content)
        try:
            entries = EpochFile(p).entries
        except EpochFileError as e:
            assert str(p) in str(e)
            count("epoch_file", "typed_error")
            return
        assert all(e.epoch >= 0 and e.start_offset >= 0 for e in entries)
        count("epoch_file", "loaded")

    one()


def test_fuzz_controller_identity(tmp_path):
    @FUZZ
    @given(content=st.binary(max_size=120) | st.tuples(st.text(max_size=8), st.text(max_size=8),
                                                       st.integers(-5, 2**64), st.text(max_size=8)).map(
        lambda t: "#".join(map(str, t)).encode()))
    def one(content):
        p = tmp_path / "controller-identity"
        p.write_bytes(content)
        try:
            cluster, bset, bid, code = read_identity(p)
        except IdentityError as e:
            assert str(p) in str(e)
            count("controller_identity", "typed_error")
            return
        assert bid >= 1
        count("controller_identity", "loaded")

    one()


TOML_VALUES = st.sampled_from(['""', "-1", "0", "1e400", "true", '"x"', "[1, 2]", '{a = 1}', "9223372036854775808",
                               '"127.0.0.1:99999"', '"::::"', "nan", '"sync"', '"\\u0000"'])


def test_fuzz_toml_config(tmp_path):
    keys = [f for f in BrokerConfig.__dataclass_fields__]

    @FUZZ
    @given(doc=st.one_of(
        st.binary(max_size=200),
        st.lists(st.tuples(st.sampled_from([*keys, "nope", "store"]), TOML_VALUES), max_size=5).map(
            lambda kv: "\n".join(f"{k} = {v}" for k, v in kv).encode()),
        st.text(max_size=100).map(str.encode)))
    @example(doc=b"max_message_size = 1e400")    # a float infinity for an integer (found by this test)
    @example(doc=b"max_message_size = nan")
    @example(doc=b"max_message_size = 1.5")
    def one(doc):
        p = tmp_path / "broker.toml"
        p.write_bytes(doc)
        try:
            cfgmod.load(BrokerConfig, p)
        except cfgmod.ConfigError as e:
            assert str(e)
            count("toml_config", "typed_error")
            return
        count("toml_config", "loaded")

    one()


# ---- real processes: one corruption of each kind -------------------------------------------------

def broker_argv(store: Path, *extra: str) -> list[str]:
    return proc.orbitmq_argv("broker", "--listen", f"127.0.0.1:{net.free_port()}", "--store-dir", str(store),
                             "--set", "segment_size=65536" if False else "log_level=INFO", *extra)


@pytest.mark.process
@pytest.mark.parametrize("kind", ["index_current", "epochs", "toml_binary", "segment_empty"])
def test_broker_process_names_the_corrupt_file(tmp_path, kind):
    store = tmp_path / "store"
    make_store(store)
    extra: list[str] = []
    if kind == "index_current":
        bad = store / "index" / "CURRENT"
        bad.write_bytes(b"\x00garbage")
        named = str(store / "index")
    elif kind == "epochs":
        bad = store / "epochs"
        bad.write_bytes(b"OEPOCHS 1 count=9 crc=1\nnot numbers\n")
        named = str(bad)
        extra = ["--set", "ha_mode=controller", "--set", f"ha_listen=127.0.0.1:{net.free_port()}",
                 "--set", f"controllers=127.0.0.1:{net.free_port()}"]
    elif kind == "toml_binary":
        bad = tmp_path / "broker.toml"
        bad.write_bytes(b"\xff\xfe\x00listen = 5\x81")
        named = str(bad)
        extra = ["--config", str(bad)]
    else:   # what a crash right after creating the next segment file leaves
        last = sorted((store / "commitlog").iterdir())[-1]
        bad = store / "commitlog" / f"{int(last.name) + last.stat().st_size:020d}"
        bad.write_bytes(b"")
        named = str(bad)
    before = bad.read_bytes()
    argv = broker_argv(store, *extra)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120) if kind != "segment_empty" else None
    if p is not None:
        out = p.stdout + p.stderr
        assert p.returncode == 2, out[-3000:]
        assert named in out and "Traceback" not in out, out[-3000:]
        assert bad.read_bytes() == before   # nothing rewritten
        count("process_start", "typed_error")
        if kind == "index_current":   # the documented recovery: move the index away, it is rebuilt
            shutil.move(str(store / "index"), str(tmp_path / "index.corrupt"))
            assert read_back(store) == BODIES
        return
    # an empty last segment (a crash right after a rollover) is recovered: the broker starts
    addr = argv[argv.index("--listen") + 1]
    child = proc.start("broker", argv, log_path=tmp_path / "broker.log")
    try:
        net.wait_for_port(addr, 60)
        with grpc.insecure_channel(addr) as ch:
            r = broker_pb2_grpc.BrokerStub(ch).PullMessage(broker_pb2.PullRequest(
                group="g", topic="T", queue_id=0, queue_offset=0, max_messages=1000), timeout=20)
            assert [m.body for m in r.messages] == BODIES
        count("process_start", "recovered")
    finally:
        child.stop()
