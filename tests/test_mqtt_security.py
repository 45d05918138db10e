"""Who gets in: mosquitto with a password file, an ACL and TLS made inside the test (openssl);
the right clients stream, the wrong ones are refused with one clear line, no password leaks."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simnet.mqtt.transport import Mosquitto, mosquitto_binary

needs_tools = pytest.mark.skipif(
    not (mosquitto_binary() and shutil.which("openssl") and shutil.which("mosquitto_passwd")),
    reason="needs mosquitto, mosquitto_passwd and openssl (Debian: mosquitto, openssl)")

PASSWORDS = {"sender": "s3nd-Pa55-x1", "receiver": "r3cv-Pa55-y2", "outsider": "0ut-Pa55-z3"}


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def secured():
    import tempfile

    # not under pytest's own folders: mosquitto drops root privileges and must reach the files
    d = Path(tempfile.mkdtemp(prefix="simnet-tls-"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=simnet test CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.crt",
             "-days", "2", "-subj", "/CN=another CA", cwd=d)
    (d / "passwd").touch()
    for user, password in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(d / "passwd"), user, password], check=True)
    (d / "acl").write_text("user sender\ntopic write simnet/cam/packets\ntopic read simnet/cam/feedback\n\n"
                           "user receiver\ntopic read simnet/cam/packets\ntopic write simnet/cam/feedback\n")
    for f in d.iterdir():  # mosquitto drops root privileges before reading them
        f.chmod(0o644)
    d.chmod(0o755)
    broker = Mosquitto(settings=[f"cafile {d / 'ca.crt'}", f"certfile {d / 'server.crt'}",
                                 f"keyfile {d / 'server.key'}", f"password_file {d / 'passwd'}",
                                 f"acl_file {d / 'acl'}"]).start()
    yield broker, d
    broker.stop()
    shutil.rmtree(d, ignore_errors=True)


def _cli(broker, user, *args, ca=None, password=None):
    cmd = [sys.executable, "-m", "simnet.cli", "mqtt", *args, "--broker", f"127.0.0.1:{broker.port}",
           "--stream", "cam", "--username", user, "--password", password or PASSWORDS[user]]
    return cmd + (["--ca-file", str(ca)] if ca else [])


def _no_password(*texts):
    for text in texts:
        for password in list(PASSWORDS.values()) + ["wrong-Pa55"]:
            assert password not in text


def _send(broker, d, tiny_weights, user="sender", **kw):
    return subprocess.run(_cli(broker, user, "send", "--frames", "8", "--fps", "8", "--size", "48x64",
                               "--weights", str(tiny_weights), "--level", "64", **kw),
                          capture_output=True, text=True, timeout=120)


def _receive_while_sending(broker, d, tiny_weights, user, idle):
    """A receiver as `user` (TLS), then a sender with the right credentials: -> (sent, receiver, out, err)."""
    rx = subprocess.Popen(_cli(broker, user, "receive", "--view-port", "0", "--idle-timeout", str(idle),
                               "--weights", str(tiny_weights), ca=d / "ca.crt"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)  # the receiver loads its model and subscribes first
    sent = _send(broker, d, tiny_weights, ca=d / "ca.crt")
    out, err = rx.communicate(timeout=60)
    return sent, rx, out, err


@needs_tools
def test_right_credentials_over_tls_stream_frames(secured, tiny_weights):
    broker, d = secured
    sent, rx, out, err = _receive_while_sending(broker, d, tiny_weights, "receiver", 20)
    assert sent.returncode == 0, sent.stderr
    assert rx.returncode == 0, err
    stats = json.loads(out[out.index("{"):])
    assert stats["frames_shown"] >= 6 and stats["wrong_model"] == 0 and stats["garbage"] == 0
    assert "sent 8 frames" in sent.stdout and "receiver reports" in sent.stdout
    _no_password(out, err, sent.stdout, sent.stderr)


@needs_tools
@pytest.mark.parametrize("case", ["wrong password", "wrong CA"])
def test_refused_clients_get_one_line_and_exit_2(secured, tiny_weights, case):
    broker, d = secured
    if case == "wrong password":
        done = _send(broker, d, tiny_weights, ca=d / "ca.crt", password="wrong-Pa55")
        expected = "refused the login of user 'sender'"
    else:
        done = _send(broker, d, tiny_weights, ca=d / "other.crt")
        expected = "TLS certificate is not signed by --ca-file"
    assert done.returncode == 2
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("compute:")]
    assert len(lines) == 1 and lines[0].startswith("simnet: error:") and expected in lines[0], done.stderr
    _no_password(done.stdout, done.stderr)


@needs_tools
def test_no_tls_is_logged_and_retried_with_backoff(secured, tiny_weights):
    broker, d = secured
    rx = subprocess.Popen(_cli(broker, "receiver", "receive", "--view-port", "0", "--weights", str(tiny_weights)),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(18)
    rx.terminate()
    out, err = rx.communicate(timeout=30)
    retries = [line for line in (out + err).splitlines() if "retrying in" in line]
    assert len(retries) >= 2, out + err
    assert "give --ca-file" in retries[0]
    delays = [float(line.rsplit("retrying in ", 1)[1].split()[0]) for line in retries]
    assert delays == sorted(delays) and delays[-1] > delays[0]  # exponential backoff
    _no_password(out, err)


@needs_tools
def test_a_client_outside_the_acl_reads_nothing_and_is_told_so(secured, tiny_weights):
    broker, d = secured
    sent, rx, out, err = _receive_while_sending(broker, d, tiny_weights, "outsider", 15)
    assert sent.returncode == 0
    assert rx.returncode == 2
    assert json.loads(out[out.index("{"):])["packets_received"] == 0
    lines = [line for line in err.strip().splitlines() if not line.startswith("compute:")]
    assert len(lines) == 1 and "ACL does not let user 'outsider' read it" in lines[0], err
    _no_password(out, err)
