"""The report's words: a scenario described in sentences, and its headline result in one sentence
with its numbers, both read from a results JSON alone."""

from __future__ import annotations

from ..network.loss_models import LOSS_MODELS
from ..units import format_rate, format_time


def _percent(x: float) -> str:
    return f"{100 * x:.3g}%"


def _loss(loss: dict) -> str:
    kind = LOSS_MODELS.get(loss.get("model", "none"))
    return kind.describe(loss) if kind else f"loss model {loss.get('model')}"


def describe_scenario(config: dict) -> list[str]:
    """A scenario configuration (as the results' meta holds it) in five sentences: source, codec,
    channel, receiver, sweep."""
    src, codec, packets = config.get("source", {}), config.get("codec", {}), config.get("packets", {})
    channel, receiver, sweep = config.get("channel", {}), config.get("receiver", {}), config.get("sweep", {})
    lines = []
    if src:
        what = f"the video {src['video']}" if src.get("video") else (
            "the builtin sample photos" if src.get("images") == "builtin" else f"the images in {src.get('images')}")
        size = f" fitted to {src['size'][1]}x{src['size'][0]} px" if src.get("size") else ""
        lines.append(f"Source: {src.get('count')} frames of {what}{size}, at {src.get('fps'):g} frames per second.")
    if codec:
        level = codec.get("level", codec.get("codebook"))
        weights = f", weights from {codec['weights']}" if codec.get("weights") else ", shipped weights"
        limit = f" and {packets['max_tokens']} tokens" if packets.get("max_tokens") else ""
        what = "Y/Cb/Cr" if codec.get("luma") else "Cb/Cr"
        side = (f", and the picture's colour as {what} means over {codec['chroma']}-pixel blocks in "
                f"{packets.get('colour_copies', 2)} packets of each frame" if codec.get("chroma") else "")
        if packets.get("coarse"):
            side += (f", and a coarse layer: each token's cell at K = {packets['coarse']} in packets of its own "
                     "(protection: a lost token is chosen among its cell's codes)")
        lines.append(f"Codec: VQ tokens at codebook level K = {level} ({codec.get('precision')}{weights}){side}; "
                     f"packets of at most {packets.get('mtu', 0):g} B{limit}, "
                     f"{'interleaved at random' if packets.get('interleave') == 'random' else 'in raster order'}.")
    if channel:
        delay = channel.get("delay", {})
        jitter = f" +- {format_time(delay['jitter'])} ({delay.get('distribution')})" if delay.get("jitter") else ""
        queue = channel.get("queue", {})
        limit = (f"a queue of {queue['packets']} packets" if queue.get("packets")
                 else f"a queue of {queue['bytes']:g} B" if queue.get("bytes") else "an unbounded queue")
        extras = []
        if channel.get("duplicate"):
            extras.append(f"{_percent(channel['duplicate'])} duplicated")
        if channel.get("bit_error_rate"):
            extras.append(f"bit error rate {channel['bit_error_rate']:g}")
        if channel.get("cross_traffic"):
            extras.append(f"{format_rate(channel['cross_traffic']['rate'])} of cross traffic")
        lines.append(f"Channel: {format_rate(channel.get('bandwidth', 0))}, {format_time(delay.get('base', 0))} delay{jitter}, "
                     f"{limit}, {_loss(channel.get('loss', {}))}" + "".join(f", {e}" for e in extras) + ".")
    if receiver:
        lines.append(f"Receiver: packets later than {format_time(receiver.get('deadline', 0))} after their frame's "
                     f"time count as lost; recovery methods compared: {', '.join(receiver.get('recovery', []))}.")
    if sweep.get("loss_rate"):
        lines.append(f"Sweep: target loss rates {', '.join(f'{r:g}' for r in sweep['loss_rate'])}; "
                     f"{sweep.get('seeds', 1)} seed(s) each.")
    return lines


def headline_rate(rows: list[dict], config: dict) -> float | None:
    """The loss rate the headline speaks of: the channel's configured rate where the results have
    it, else the highest rate they have."""
    rates = sorted({r["loss_rate_target"] for r in rows if r["method"] != "lossless" and r["loss_rate_target"] > 0})
    if not rates:
        return None
    configured = config.get("channel", {}).get("loss", {}).get("rate")
    return configured if configured in rates else rates[-1]


def headline(summary: list[dict], scenario: str | None = None, config: dict | None = None) -> str:
    """The result in one sentence: at the headline loss rate, the best method's PSNR and how far
    each other method is behind it, and the lossless ceiling."""
    rows = [r for r in summary if scenario is None or r.get("scenario") == scenario]
    ceiling = [r for r in rows if r["method"] == "lossless"]
    ceiling_text = (f"the lossless decode gives {ceiling[0]['psnr']:.2f} dB at "
                    f"{ceiling[0]['bpp_wire']:.4f} bpp on the wire" if ceiling else "")
    rate = headline_rate(rows, config or {})
    if rate is None:
        return (ceiling_text[0].upper() + ceiling_text[1:] + ".") if ceiling else "No results."
    at = sorted((r for r in rows if r["loss_rate_target"] == rate and r["method"] != "lossless"
                 and r.get("psnr") is not None), key=lambda r: -r["psnr"])
    if not at:
        return "No results at the headline loss rate."
    best, others = at[0], at[1:]
    measured = best.get("loss_rate_packets")
    measured_text = f" ({_percent(measured)} of packets lost as measured)" if measured is not None else ""
    behind = ", ".join(f"{best['psnr'] - r['psnr']:.2f} dB above {r['method']}" for r in others)
    sentence = (f"At {_percent(rate)} target loss{measured_text}, {best['method']} recovery gives "
                f"{best['psnr']:.2f} dB PSNR (MS-SSIM {best['ms_ssim']:.3f})")
    if behind:
        sentence += f", {behind}"
    if ceiling:
        sentence += (f"; {ceiling_text}, so {best['method']} loses "
                     f"{ceiling[0]['psnr'] - best['psnr']:.2f} dB to the loss")
    return sentence + "."
