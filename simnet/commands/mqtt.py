"""`simnet mqtt send|receive|relay|demo`: the codec's packets over a real MQTT broker, with the
simulator's channel models applied by the application and a live view at the receiver."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import UserError
from .common import (check_luma_option, chroma_options, console, device_option, level_option, load_codec_at, out_console, parse_size,
                     precision_option, recovery_spec, say_compute, weights_option)


@click.group("mqtt")
def mqtt():
    """Send the codec's packets over a real MQTT broker, with a live view at the receiver."""


def _mqtt_options(f):
    for opt in reversed([
        click.option("--broker", default="127.0.0.1:1883", show_default=True, help="HOST[:PORT] of the broker."),
        click.option("--username", default=None), click.option("--password", default=None),
        click.option("--ca-file", type=Path, default=None, help="CA certificate: connect with TLS."),
        click.option("--client-id", default=None),
        click.option("--qos", type=click.IntRange(0, 2), default=0, show_default=True),
        click.option("--keepalive", type=click.IntRange(min=1), default=30, show_default=True),
        click.option("--stream", default="demo", show_default=True, help="Stream name (topic simnet/NAME/...)."),
    ]):
        f = opt(f)
    return f


def _connection(broker, username, password, ca_file, client_id, qos, keepalive):
    from ..mqtt.transport import ConnectionOptions, parse_broker

    host, port = parse_broker(broker)
    if ca_file is not None and not ca_file.is_file():
        raise UserError(f"--ca-file {ca_file}: no such file")
    return ConnectionOptions(host, port, username, password, str(ca_file) if ca_file else None,
                             client_id, qos, keepalive)


def _source_frames(images, size, count):
    from ..experiment.frames import image_frames

    return image_frames(None if images in (None, "builtin") else Path(images), size, count)


def _channel_from(scenario_file, loss_rate, seed):
    from ..mqtt.sender import LiveChannel
    from ..experiment.scenario import load_scenario

    if scenario_file is None:
        return None
    scenario = load_scenario(scenario_file)
    return LiveChannel(scenario.channel, seed, loss_rate, scenario.path.parent)


@mqtt.command("send")
@_mqtt_options
@click.option("--images", default="builtin", show_default=True, help="builtin, or a folder of images.")
@click.option("--frames", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--fps", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
@click.option("--size", default="256x384", show_default=True, help="HEIGHTxWIDTH of every frame.")
@level_option
@click.option("--max-tokens", type=click.IntRange(min=1), default=48, show_default=True)
@click.option("--channel", "channel_file", type=Path, default=None,
              help="Apply this scenario's loss and delay models before publishing.")
@click.option("--loss", type=click.FloatRange(0, 1), default=None, help="Override the channel's loss rate.")
@click.option("--seed", type=int, default=0, show_default=True)
@chroma_options
@click.option("--coarse", type=click.Choice(["0", "16", "64", "256"]), default="0", show_default=True,
              help="Send each frame's coarse layer too: its tokens' cells at this smaller level, in packets "
                   "of their own (protection; needs the base level); 0 = off.")
@weights_option
@device_option()
@precision_option()
def mqtt_send(broker, username, password, ca_file, client_id, qos, keepalive, stream, images, frames, fps,
              size, level, max_tokens, channel_file, loss, seed, chroma, chroma_step, luma, coarse, weights, device,
              precision):
    """Publish frames as packets on simnet/STREAM/packets; print the receiver's reports.

    \b
    Example: simnet mqtt send --broker 192.168.1.10 --stream cam1 --fps 5 --channel scenarios/lossy20.yaml
    """
    import asyncio

    from ..experiment.setup import check_coarse
    from ..mqtt.sender import send_stream

    check_luma_option(chroma, luma)
    options = _connection(broker, username, password, ca_file, client_id, qos, keepalive)
    frame_size = parse_size(size)
    channel = _channel_from(channel_file, loss, seed)
    codec = load_codec_at(weights, level, precision, device)
    check_coarse(level, int(coarse), codec.level_sizes, "--coarse")
    say_compute(codec.compute)
    stats = asyncio.run(send_stream(options, stream, _source_frames(images, frame_size, frames), codec,
                                    level, fps, channel, max_tokens=max_tokens,
                                    log=lambda s: console.print(s), chroma=chroma, chroma_step=chroma_step,
                                    luma=luma, coarse=int(coarse)))
    last = stats.feedback[-1] if stats.feedback else {}
    out_console.print(f"sent {stats.frames} frames, {stats.packets} packets ({stats.dropped} dropped by "
                      f"the channel model), {stats.bytes} bytes; receiver reports: {len(stats.feedback)}"
                      + (f", last: shown {last.get('frames_shown')}, loss {last.get('loss_rate', 0):.3f}"
                         if last else ""))


@mqtt.command("receive")
@_mqtt_options
@click.option("--deadline", type=click.FloatRange(min=1), default=150, show_default=True,
              help="Milliseconds after a frame's first packet; later packets count as lost.")
@click.option("--recovery", callback=recovery_spec, default="neighbour", show_default=True,
              help="none, neighbour, transformer, or transformer:STEPS[:argmax|mmse|sample@T[:WINDOW|grid]], any of them +conceal (transformer:1 is "
                   "one-shot, the fast choice for live video).")
@click.option("--view-port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port of the live view (0: none).")
@click.option("--view-host", default="127.0.0.1", show_default=True)
@click.option("--save", type=Path, default=None, help="Save every decoded frame as PNG here.")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Stop after this many frames.")
@click.option("--idle-timeout", type=float, default=None, help="Stop after this many idle seconds.")
@weights_option
@device_option()
@precision_option()
def mqtt_receive(broker, username, password, ca_file, client_id, qos, keepalive, stream, deadline, recovery,
                 view_port, view_host, save, frames, idle_timeout, weights, device, precision):
    """Reassemble, recover and decode frames from simnet/STREAM/packets; serve a live view.

    \b
    Example: simnet mqtt receive --broker 192.168.1.10 --stream cam1 --recovery neighbour
    """
    import asyncio

    from ..mqtt.receiver import LiveReceiver, receive_stream, serve_live_view

    options = _connection(broker, username, password, ca_file, client_id, qos, keepalive)
    codec = load_codec_at(weights, None, precision, device)
    from ..experiment.setup import check_concealer, recovery_for

    check_concealer(codec, [recovery])
    method = recovery_for(recovery, codec)
    say_compute(codec.compute)
    receiver = LiveReceiver(codec, method, deadline / 1e3, stream, save)
    server = None
    if view_port:
        try:
            server = serve_live_view(receiver.state, view_host, view_port)
        except OSError as e:
            raise UserError(f"--view-port {view_port}: cannot listen ({e.strerror})") from None
        out_console.print(f"live view: http://{view_host}:{view_port}/")
    try:
        stats = asyncio.run(receive_stream(options, stream, receiver, lambda s: console.print(s),
                                           frames=frames, idle_timeout=idle_timeout))
    except KeyboardInterrupt:
        stats = receiver.stats
    finally:
        if server:
            server.shutdown()
    out_console.print(json.dumps(stats, indent=1))
    if idle_timeout is not None and not stats["packets_received"]:
        who = f"user {username!r}" if username else "an anonymous client"
        raise UserError(f"no packet of stream {stream!r} arrived in {idle_timeout:g} s: no sender is streaming on "
                        f"simnet/{stream}/packets, or the broker's ACL does not let {who} read it")


@mqtt.command("relay")
@_mqtt_options
@click.option("--to-stream", required=True, help="Republish on simnet/TO_STREAM/packets.")
@click.option("--channel", "channel_file", type=Path, required=True, help="Scenario whose channel to apply.")
@click.option("--loss", type=click.FloatRange(0, 1), default=None, help="Override the channel's loss rate.")
@click.option("--seed", type=int, default=0, show_default=True)
def mqtt_relay(broker, username, password, ca_file, client_id, qos, keepalive, stream, to_stream,
               channel_file, loss, seed):
    """Subscribe to STREAM's packets, apply a scenario's loss and delay, republish on TO_STREAM.

    \b
    Example: simnet mqtt relay --broker 192.168.1.10 --stream cam1 --to-stream cam1-lossy --channel scenarios/lossy20.yaml
    """
    import asyncio

    from ..mqtt.sender import relay

    options = _connection(broker, username, password, ca_file, client_id, qos, keepalive)
    channel = _channel_from(channel_file, loss, seed)
    try:
        counts = asyncio.run(relay(options, stream, to_stream, channel, lambda s: console.print(s)))
    except KeyboardInterrupt:
        return
    out_console.print(json.dumps(counts))


@mqtt.command("demo")
@click.option("--frames", type=click.IntRange(min=1), default=60, show_default=True)
@click.option("--fps", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
@click.option("--loss", type=click.FloatRange(0, 0.95), default=0.2, show_default=True)
@click.option("--recovery", callback=recovery_spec, default="neighbour", show_default=True,
              help="none, neighbour, transformer, or transformer:STEPS[:argmax|mmse|sample@T[:WINDOW|grid]], any of them +conceal (transformer:1 is "
                   "one-shot, the fast choice for live video).")
@click.option("--view-port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--size", default="256x384", show_default=True)
@weights_option
@device_option()
@precision_option()
def mqtt_demo(frames, fps, loss, recovery, view_port, size, weights, device, precision):
    """One machine: an embedded broker, a sender at LOSS packet loss (bursty, lossy20's channel),
    a receiver and its live view, from one command.

    \b
    Example: simnet mqtt demo --loss 0.2 --fps 5   (then open http://127.0.0.1:8765/)
    """
    import asyncio

    from ..experiment.setup import check_concealer
    from ..mqtt.demo import run_demo

    codec = load_codec_at(weights, None, precision, device)
    check_concealer(codec, [recovery])
    stats = asyncio.run(run_demo(codec, frames, fps, loss, recovery, view_port, parse_size(size),
                                 log=lambda s: out_console.print(s)))
    out_console.print(json.dumps(stats, indent=1))
