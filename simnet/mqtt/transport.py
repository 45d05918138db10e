"""MQTT plumbing shared by sender, relay and receiver: broker addresses, connection options, the
payload envelope, a reconnecting client, and brokers (embedded amqtt, or a mosquitto process)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

# b"SM", version, the first 4 bytes of the sender's model checksum (a receiver with other weights
# drops the packet instead of decoding nonsense), the frame's capture time (sender clock, s)
ENVELOPE = struct.Struct("<2sB4sd")
ENVELOPE_VERSION = 2
MAX_PAYLOAD = 64 * 1024  # larger payloads on the packet topic are counted and dropped


class MqttError(ValueError):
    pass


class MqttRefused(MqttError):
    """The broker said no in a way retrying cannot change: wrong credentials, a certificate the
    CA does not vouch for, TLS against a plain port."""


# aiomqtt warns about every backlog of QoS 0 publishes; bursts of packets are normal here
_QUIET = logging.getLogger("simnet.mqtt.aiomqtt")
_QUIET.setLevel(logging.ERROR)


def packets_topic(stream: str) -> str:
    return f"simnet/{stream}/packets"


def feedback_topic(stream: str) -> str:
    return f"simnet/{stream}/feedback"


def model_tag(checksum: str) -> bytes:
    """The envelope's 4 bytes naming the weights that made a packet (a codec's hex checksum)."""
    return bytes.fromhex(checksum)[:4]


def wrap(packet: bytes, frame_time: float, model: bytes = bytes(4)) -> bytes:
    return ENVELOPE.pack(b"SM", ENVELOPE_VERSION, model[:4].ljust(4, b"\0"), frame_time) + packet


def unwrap(payload: bytes) -> tuple[float, bytes, bytes]:
    """-> (frame time, packet bytes, model checksum prefix); MqttError for anything else."""
    if len(payload) > MAX_PAYLOAD:
        raise MqttError(f"oversized payload ({len(payload)} B)")
    if len(payload) < ENVELOPE.size:
        raise MqttError("payload shorter than the envelope")
    magic, version, model, frame_time = ENVELOPE.unpack_from(payload)
    if magic != b"SM" or version != ENVELOPE_VERSION:
        raise MqttError("not a simnet packet envelope")
    if frame_time != frame_time or abs(frame_time) > 1e11:  # NaN, or no plausible clock
        raise MqttError("not a simnet packet envelope (bad frame time)")
    return frame_time, bytes(payload[ENVELOPE.size:]), model


def parse_broker(text: str, default_port: int = 1883) -> tuple[str, int]:
    """"HOST", "HOST:PORT" or "[v6]:PORT" -> (host, port)."""
    text = text.strip()
    if not text:
        raise MqttError("--broker: empty address")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":") or str(default_port)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, str(default_port)
    try:
        port_number = int(port)
    except ValueError:
        raise MqttError(f"--broker {text}: port {port!r} is not a number") from None
    if not 0 < port_number < 65536:
        raise MqttError(f"--broker {text}: port {port_number} out of range")
    return host, port_number


@dataclass
class ConnectionOptions:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    client_id: str | None = None
    qos: int = 0
    keepalive: int = 30
    max_backoff: float = 10.0
    connect_timeout: float = 5.0  # seconds for the broker to answer (TCP, TLS, CONNACK)

    def __repr__(self) -> str:  # never the password, wherever options get printed
        return (f"ConnectionOptions({self.host}:{self.port}, user={self.username!r}, "
                f"password={'***' if self.password else None}, tls={bool(self.ca_file)})")

    def client(self) -> aiomqtt.Client:
        tls = None
        if self.ca_file:
            if not Path(self.ca_file).is_file():
                raise MqttError(f"--ca-file {self.ca_file}: no such file")
            tls = aiomqtt.TLSParameters(ca_certs=self.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        return aiomqtt.Client(self.host, self.port, username=self.username, password=self.password,
                              identifier=self.client_id, keepalive=self.keepalive, tls_params=tls,
                              timeout=self.connect_timeout,
                              logger=_QUIET,
                              max_queued_incoming_messages=10_000, max_queued_outgoing_messages=10_000)


def refusal(error: Exception, options: "ConnectionOptions") -> str | None:
    """One line for a connection error that retrying cannot fix, or None (a broker that is down
    or restarting: retry). Never includes the password."""
    where = f"broker {options.host}:{options.port}"
    text = str(error)
    rc = getattr(error, "rc", None)
    if isinstance(error, aiomqtt.MqttCodeError) and rc is not None and str(rc) in (
            "Not authorized", "Bad user name or password", "Bad username or password"):
        who = f"user {options.username!r}" if options.username else "an anonymous client"
        return f"{where} refused the login of {who} ({rc}): check --username and --password"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (f"{where}: its TLS certificate is not signed by --ca-file {options.ca_file} "
                f"({text.split('certificate verify failed:')[-1].split('(_ssl')[0].strip()})")
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return f"{where} does not speak TLS on this port: drop --ca-file, or use the broker's TLS port"
    return None


async def with_reconnect(options: ConnectionOptions, session, log=print, stop: asyncio.Event | None = None):
    """Run `session(client)` and reconnect with exponential backoff whenever the broker goes away,
    until `session` returns or `stop` is set. A refusal (`refusal`) raises MqttRefused at once."""
    delay = 0.2
    while stop is None or not stop.is_set():
        try:
            async with options.client() as client:
                delay = 0.2
                return await session(client)
        except aiomqtt.MqttError as e:
            reason = refusal(e, options)
            if reason:
                raise MqttRefused(reason) from None
            text = str(e).lower()
            hint = ("; if the broker requires TLS, give --ca-file" if not options.ca_file and "timed out" in text
                    else "; if this port does not speak TLS, drop --ca-file" if options.ca_file
                    and "reset by peer" in text else "")
            log(f"broker {options.host}:{options.port} unavailable ({e}){hint}; retrying in {delay:.1f} s")
            await asyncio.sleep(delay)
            delay = min(options.max_backoff, delay * 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    """An MQTT broker inside this process (amqtt), for one-machine demos."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None):
        self.host, self.port = host, port or free_port()
        self._broker = None

    async def start(self):
        from amqtt.broker import Broker

        self._broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}}})
        await self._broker.start()
        return self

    async def stop(self):
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None


def mosquitto_binary() -> str | None:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class Mosquitto:
    """A mosquitto broker process listening on `host:port`, with its own config file; for tests,
    benchmarks and two-host setups (`prefix` runs it inside a network namespace)."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, prefix: list[str] | None = None,
                 settings: list[str] | None = None):
        """`settings`: further mosquitto.conf lines for the listener (TLS files, password_file,
        acl_file); with any of them, anonymous clients are refused."""
        self.settings = list(settings or [])
        self.binary = mosquitto_binary()
        if self.binary is None:
            raise MqttError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.host, self.port = host, port or free_port()
        self.prefix = prefix or []
        self.dir = Path(tempfile.mkdtemp(prefix="simnet-mosquitto-"))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 5.0) -> "Mosquitto":
        conf = self.dir / "mosquitto.conf"
        anonymous = "false" if any(line.startswith("password_file") for line in self.settings) else "true"
        conf.write_text(f"listener {self.port} {self.host}\nallow_anonymous {anonymous}\npersistence false\n"
                        f"max_queued_messages 10000\n" + "".join(line + "\n" for line in self.settings))
        self.proc = subprocess.Popen(self.prefix + [self.binary, "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise MqttError(f"mosquitto exited: {self.proc.stderr.read().decode()[-300:]}")
            if self.prefix or _port_open(self.host, self.port):
                if not self.prefix:
                    return self
                time.sleep(0.5)
                return self
            time.sleep(0.05)
        raise MqttError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *_):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
