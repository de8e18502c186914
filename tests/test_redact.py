"""reclab redact: secrets masked, everything else byte-exact, output readable by Go."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentproto import (
    Direction,
    ExecMsg,
    FileOp,
    FileOpReq,
    FileOpResp,
    Frame,
    FrameType,
    LogEntry,
    Recorder,
    RecordType,
    iter_records,
    read_recording,
)
from reclab.cli import app
from reclab.model import open_recording
from reclab.redact import (
    MASKED_VALUE,
    RedactError,
    RedactionPolicy,
    is_secret_name,
    mask_argv,
    mask_bytes,
    mask_env,
    mask_text,
    redact_recording,
)
from tests.gotools import run_crosscheck

AWS = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PRIVATE_KEY = (
    b"-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1234\n-----END RSA PRIVATE KEY-----\n"
)
GH_TOKEN = b"ghp_" + b"a1B2c3D4e5" * 4
STDOUT = (
    b"PATH=/usr/bin\nAWS_SECRET_ACCESS_KEY=" + AWS + b"\nHOME=/root\n" + PRIVATE_KEY + b"done\n"
)
SPLIT = 40  # the AWS secret straddles two stdout frames


def write_secret_recording(path: Path) -> None:
    env = ["PATH=/usr/bin", "AWS_SECRET_ACCESS_KEY=" + AWS.decode(), "GITHUB_TOKEN=x", "LANG=C"]
    exec_msg = ExecMsg(
        path="/usr/bin/deploy",
        argv=["deploy", "--password", "hunter2", "API_KEY=s3cr3t", "--verbose", "plain"],
        env=env,
        cwd="/srv",
    )
    with Recorder(path) as rec:
        rec.write_session_header()
        seq = rec.write_command_start(exec_msg)
        rec.write_frame(seq, Direction.SEND, Frame(type=FrameType.EXEC, exec=exec_msg))
        rec.write_frame(
            seq, Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=STDOUT[:SPLIT])
        )
        rec.write_frame(
            seq, Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=STDOUT[SPLIT:])
        )
        rec.write_frame(
            seq, Direction.SEND, Frame(type=FrameType.DATA, stream=0, data=b"token: " + GH_TOKEN)
        )
        write = FileOpReq(req_id=1, op=FileOp.WRITE_AT, handle=3, data=b"password=" + b"topsecret1")
        rec.write_frame(seq, Direction.SEND, Frame(type=FrameType.FILE_OP, file_op=write))
        read = FileOpResp(req_id=2, data=b"Authorization: Bearer abcdefgh12345678", n=37)
        rec.write_frame(seq, Direction.RECV, Frame(type=FrameType.FILE_RESP, file_resp=read))
        log = LogEntry(level=0, msg="connecting", attrs=["url=https://bob:pa55word@db.example/"])
        rec.write_frame(seq, Direction.RECV, Frame(type=FrameType.LOG, log=log))
        rec.write_frame(seq, Direction.RECV, Frame(type=FrameType.EXIT, code=0))
        rec.write_command_end(seq, 0)


@pytest.fixture
def secret_recording(tmp_path: Path) -> Path:
    path = tmp_path / "secret.cbor"
    write_secret_recording(path)
    return path


def test_secret_names() -> None:
    assert is_secret_name("AWS_SECRET_ACCESS_KEY")
    assert is_secret_name("github_token")
    assert is_secret_name("DB_PASSWD")
    assert not is_secret_name("PATH")
    assert is_secret_name("MY_THING", ["MY_*"])
    assert is_secret_name("internal_x", ["/^internal_/"])
    assert mask_env(["A_TOKEN=1", "PATH=/bin", "odd"]) == [
        f"A_TOKEN={MASKED_VALUE}",
        "PATH=/bin",
        "odd",
    ]
    assert mask_env(["A_TOKEN=1"], reveal=True) == ["A_TOKEN=1"]


def test_redact_masks_every_secret_and_keeps_the_rest(
    secret_recording: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.cbor"
    summary = redact_recording(secret_recording, out, RedactionPolicy.build(argv=True))
    blob = out.read_bytes()
    for secret in (
        AWS,
        b"MIIEpAIBAAKCAQEA1234",
        GH_TOKEN,
        b"topsecret1",
        b"abcdefgh12345678",
        b"pa55word",
        b"hunter2",
        b"s3cr3t",
    ):
        assert secret not in blob, secret
    assert os.stat(out).st_mode & 0o777 == 0o600

    before, after = read_recording(secret_recording), read_recording(out)
    assert [r.type for r in before] == [r.type for r in after]
    with open_recording(out) as rec:
        cmd = rec.commands[1]
        assert cmd.exec.env == [
            "PATH=/usr/bin",
            f"AWS_SECRET_ACCESS_KEY={MASKED_VALUE}",
            f"GITHUB_TOKEN={MASKED_VALUE}",
            "LANG=C",
        ]
        assert cmd.argv == [
            "deploy",
            "--password",
            MASKED_VALUE,
            f"API_KEY={MASKED_VALUE}",
            "--verbose",
            "plain",
        ]
        stdout = rec.stream_bytes(1, 1)
        # same length, the same bytes around each secret, the secret itself starred
        assert len(stdout) == len(STDOUT)
        assert stdout.startswith(b"PATH=/usr/bin\nAWS_SECRET_ACCESS_KEY=" + b"*" * len(AWS) + b"\n")
        assert b"HOME=/root\n" in stdout and stdout.endswith(b"done\n")
        frames = [ref.frame for ref in rec.frames(1)]
    exec_frame = next(f for f in frames if f.type == FrameType.EXEC)
    assert exec_frame.exec is not None and MASKED_VALUE in exec_frame.exec.env[1]
    log = next(f for f in frames if f.type == FrameType.LOG).log
    assert log is not None and log.attrs == ["url=https://bob:********@db.example/"]
    resp = next(f for f in frames if f.type == FrameType.FILE_RESP).file_resp
    assert resp is not None and resp.n == 37 and resp.data.endswith(b"Bearer " + b"*" * 16)

    assert summary.records == len(before)
    assert summary.env_values == 4  # two in the start record, two in the exec frame
    assert summary.argv_items == 4
    assert summary.log_items == 1
    assert summary.data_matches["secret-assignment"] >= 2
    assert summary.data_matches["private-key"] == 1
    assert summary.data_matches["github-token"] == 1
    assert summary.stopped is None


def test_no_secret_means_byte_identical_output(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parent.parent / "sample-recordings" / "concurrent.cbor"
    out = tmp_path / "same.cbor"
    summary = redact_recording(sample, out)
    assert out.read_bytes() == sample.read_bytes()
    assert summary.data_bytes == summary.env_values == 0


def test_argv_is_kept_unless_asked(secret_recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.cbor"
    redact_recording(secret_recording, out, RedactionPolicy.build())
    with open_recording(out) as rec:
        assert "hunter2" in rec.commands[1].argv


def test_own_patterns_and_no_defaults(secret_recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.cbor"
    policy = RedactionPolicy.build(
        env_names=["LANG"], data=[r"HOME=(?P<secret>\S+)"], default_data=False
    )
    summary = redact_recording(secret_recording, out, policy)
    with open_recording(out) as rec:
        stdout = rec.stream_bytes(1, 1)
        assert b"HOME=*****\n" in stdout
        assert AWS in stdout  # no default patterns
        assert f"LANG={MASKED_VALUE}" in (rec.commands[1].exec.env or [])
    assert summary.data_matches == {"data-1": 1}
    with pytest.raises(RedactError, match="not a valid regular expression"):
        RedactionPolicy.build(data=["("])


def test_a_cut_recording_is_redacted_up_to_the_cut(secret_recording: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.cbor"
    cut.write_bytes(secret_recording.read_bytes()[:-7])
    out = tmp_path / "out.cbor"
    summary = redact_recording(cut, out)
    assert summary.stopped is not None and "cut at byte" in summary.stopped
    assert len(list(iter_records(out, require_footer=False))) == summary.records
    assert AWS not in out.read_bytes()


@pytest.mark.go
def test_go_reads_the_redacted_recording(secret_recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.cbor"
    redact_recording(secret_recording, out, RedactionPolicy.build(argv=True))
    result = run_crosscheck("check", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == str(len(read_recording(out)))


def test_cli(secret_recording: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out.cbor"
    result = runner.invoke(app, ["redact", str(secret_recording), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["output"] == str(out) and doc["env_values"] == 4 and doc["stopped"] is None

    again = runner.invoke(app, ["redact", str(secret_recording), "-o", str(out)])
    assert again.exit_code == 2
    assert again.stderr == f"reclab: error: {out}: already exists (give --force to overwrite it)\n"
    itself = runner.invoke(app, ["redact", str(out), "-o", str(out), "--force"])
    assert itself.exit_code == 2
    assert itself.stderr == (
        f"reclab: error: -o {out}: that is the recording itself; write the copy to another file\n"
    )
    forced = runner.invoke(app, ["redact", str(secret_recording), "-o", str(out), "--force"])
    assert forced.exit_code == 0 and "masked 4 environment values" in forced.stderr


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: (p.write_bytes(b"hello, not cbor\n"), p)[1], "not a recording"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path: Path, make: object, message: str) -> None:
    source = make(tmp_path / "in.cbor")  # type: ignore[operator]
    out = tmp_path / "out.cbor"
    result = CliRunner().invoke(app, ["redact", str(source), "-o", str(out)])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_cli_bad_regex(secret_recording: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["redact", str(secret_recording), "-o", str(tmp_path / "o.cbor"), "--data", "("]
    )
    assert result.exit_code == 2 and "not a valid regular expression" in result.stderr


def test_display_helpers() -> None:
    assert mask_argv(["mysql", "--password", "pw", "-u", "root", "TOKEN=abc", "x"]) == [
        "mysql",
        "--password",
        MASKED_VALUE,
        "-u",
        "root",
        f"TOKEN={MASKED_VALUE}",
        "x",
    ]
    assert mask_text("export GITHUB_TOKEN=abcdef123 done") == "export GITHUB_TOKEN=********* done"
    assert mask_text("nothing here") == "nothing here"
    assert mask_bytes(b"k: AKIAABCDEFGHIJKLMNOP.") == b"k: ********************."


def test_viewers_mask_secrets_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "env.cbor"
    argv = ["deploy", "--password", "hunter2", "--user", "me"]
    with Recorder(path) as rec:
        rec.write_session_header()
        seq = rec.write_command_start(ExecMsg(path="/bin/deploy", argv=argv, env=None))
        rec.write_frame(seq, Direction.SEND, Frame(type=FrameType.EXEC, exec=ExecMsg(argv=argv)))
        out = b"HOME=/root\nAWS_SECRET_ACCESS_KEY=" + AWS + b"\n"
        rec.write_frame(seq, Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=out))
        rec.write_command_end(seq, 0)
    runner = CliRunner()
    for args in (["commands", "--json"], ["commands"], ["timeline", "--seq", "1", "-W", "200"]):
        masked = runner.invoke(app, [*args, str(path)])
        assert masked.exit_code == 0, masked.output
        assert "hunter2" not in masked.stdout and AWS.decode() not in masked.stdout
        assert MASKED_VALUE in masked.stdout or "****" in masked.stdout
        shown = runner.invoke(app, [*args, str(path), "--show-secrets"])
        assert "hunter2" in shown.stdout
    timeline = runner.invoke(
        app, ["timeline", "--seq", "1", "-W", "200", str(path), "--show-secrets"]
    )
    assert AWS.decode()[:20] in timeline.stdout


def test_damage_in_the_middle_is_left_out_and_reading_goes_on(
    secret_recording: Path, tmp_path: Path
) -> None:
    data = bytearray(secret_recording.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = b"\xff" * 16
    damaged = tmp_path / "damaged.cbor"
    damaged.write_bytes(bytes(data))
    out = tmp_path / "out.cbor"
    summary = redact_recording(damaged, out)
    assert summary.stopped is None and len(summary.damage) == 1
    assert "unreadable bytes at byte" in summary.damage[0]
    records = read_recording(out)  # the footer after the damage is there: a whole recording
    assert records[-1].type == RecordType.SESSION_FOOTER
    assert len(records) == summary.records < len(read_recording(secret_recording))
    assert AWS not in out.read_bytes()
