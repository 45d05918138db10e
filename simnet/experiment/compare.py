"""Methods side by side at equal bandwidth: every frame is coded by every method so that all it
puts on the wire (payload, headers, parities, retransmissions) fits the same budget, sent through
the same channel under its protection (simnet.network.protected), and shown as its receiver would.

A VQ frame decodes whatever arrives (lost tokens filled by the method's recovery); an AVIF or WebP
frame with a packet missing after protection cannot be decoded, so the receiver shows the last
frame it decoded (grey before the first) and the metrics score what is shown.

A frame that no choice fits into the budget is skipped by the sender (nothing goes on the wire;
the receiver shows the last frame). The sender sizes each frame from what the receiver reports (the sweep's loss rate): the codebook
level (VQ) or the quality (AVIF, WebP) is the largest whose packets and parities fit the budget,
less a share equal to the reported loss kept for retransmissions where the method uses NACKs.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace

import numpy as np

from codec.metrics import quality

from ..network.protected import FrameResult, ProtectedFrame, ProtectionOptions, simulate_protected
from ..network.protection import SHIM_BYTES, adaptive_parity, parity_count
from ..seeds import element_seed
from ..stream import CoarseLayer, EncodedFrame, Framing, StreamReceiver, StreamSender, make_codec
from ..stream.vq import TokenArrival
from .frames import frames as load_frames
from .scenario import MethodConfig, Scenario
from .setup import Setup

GREY = 128  # what a receiver shows before its first decoded frame


@dataclass
class CodedFrame:
    """One frame as one method sends it."""
    frame: EncodedFrame  # as the method's codec (and its layers) coded it
    parities: int
    fec: str
    parity_setting: float
    wire_bytes: int  # sources and parities with their shims
    retransmit_budget: int
    budget: int

    @property
    def sources(self) -> list[bytes]:
        """The codec's packets, before the shim (none where the frame was skipped)."""
        return self.frame.units

    @property
    def codec_header(self) -> int:
        """Bytes of codec header in each source packet (compact 4, full 28, avif/webp 0)."""
        return self.frame.unit_header

    @property
    def choice(self) -> str:
        return "skipped" if self.frame.skipped else self.frame.choice

    @property
    def level(self) -> int | None:
        return self.frame.level


def wire_bytes(sources: list[bytes], fec: str, parity: float) -> tuple[int, int]:
    """(bytes on the wire of a frame's sources and parities with their shims, parity count)."""
    m = parity_count(fec, len(sources), parity)
    longest = max(len(s) for s in sources) + 2 if m else 0
    return sum(len(s) + SHIM_BYTES for s in sources) + m * (SHIM_BYTES + longest), m


def uses_nack(method: MethodConfig, rtt: float, deadline: float, jitter: float) -> bool:
    """NACK where asked; `auto` (hybrid) only where a request and its answer fit before the
    deadline: the frame's arrival, then a round trip, with a margin for jitter."""
    if method.nack == "auto":
        return 1.5 * rtt + 6 * jitter < deadline
    return bool(method.nack)


def method_sender(method: MethodConfig, setup: Setup, scenario: Scenario, grids: dict | None = None) -> StreamSender:
    """A method's sender: its codec (looked up by name), its coarse layer, and the shim with its FEC."""
    cfg = scenario.packets
    if method.codec == "vq":
        codec = make_codec("vq", image_codec=setup.codec, level=setup.level, mtu=cfg.mtu,
                           max_tokens=cfg.max_tokens, interleave=cfg.interleave, seed=cfg.seed,
                           header=method.header, framing=SHIM_BYTES, chroma=method.chroma,
                           chroma_step=method.chroma_step, luma=method.luma, colour_copies=method.colour_copies,
                           grids=grids)
    else:
        codec = make_codec(method.codec, piece=int(cfg.mtu) - SHIM_BYTES, downscale=method.downscale)
    layers = [CoarseLayer(method.coarse)] if method.coarse else []
    return StreamSender(codec, layers, Framing(shim=True, fec=method.fec))


class MethodCoder:
    """Codes frames for one method at a byte budget, and decodes what its receiver holds."""

    def __init__(self, method: MethodConfig, setup: Setup, scenario: Scenario, grids: dict | None = None):
        self.method, self.setup = method, setup
        self.recovery = setup.recoveries.get(method.recovery)
        self.sender = method_sender(method, setup, scenario, grids)
        self._decodes: dict[tuple, np.ndarray] = {}
        self._coded: dict[tuple, CodedFrame] = {}
        self.decode_s = 0.0
        self.recover_s = 0.0

    def _parity(self, n: int, loss: float) -> float:
        if self.method.parity == "adaptive":  # at most one parity per source, as WebRTC caps its FEC
            return min(n, adaptive_parity(n, loss)) / n
        return float(self.method.parity)

    def receiver(self) -> StreamReceiver:
        return StreamReceiver(self.sender.codec, self.sender.framing)

    def protected(self, coded: CodedFrame) -> ProtectedFrame:
        wire = self.sender.framing(coded.frame, coded.fec, coded.parity_setting)  # a skipped frame: nothing
        assert len(wire.parities) == coded.parities
        return ProtectedFrame(wire.sources, wire.parities, coded.retransmit_budget)

    def code(self, frame: int, rgb: np.ndarray, budget: int, loss: float, nack: bool) -> CodedFrame:
        """The best level (VQ) or the least downscaling and then the highest quality (AVIF, WebP,
        from the method's downscale on) whose packets and parities fit `budget`, less the NACK
        reserve. Where nothing fits, the cheapest choice with as many parities as fit (none if need
        be); a frame that does not fit even so is skipped. Chosen once per (frame, budget, reported
        loss, NACK), whatever the loss process and seed."""
        key = (frame, budget, loss, nack)
        if key not in self._coded:
            self._coded[key] = self._choose(frame, rgb, budget, loss, nack)
        return self._coded[key]

    def _choose(self, index: int, rgb: np.ndarray, budget: int, loss: float, nack: bool) -> CodedFrame:
        allowed = int(budget * (1 - loss)) if nack else budget
        fec = self.method.fec

        def candidate(frame: EncodedFrame, parity=None) -> CodedFrame:
            if parity is None:
                parity = self._parity(len(frame.units), loss) if fec != "none" else 0.0
            total, m = wire_bytes(frame.units, fec, parity)
            return CodedFrame(frame, m, fec, parity, total, max(0, budget - total) if nack else 0, budget)

        best = candidate(self.sender.fit(index, rgb, allowed, lambda f: candidate(f).wire_bytes))
        if best.wire_bytes <= allowed:
            return best
        cheapest = best
        if cheapest.parities and fec != "xor_grid":  # trim the parities to what fits
            plain, _ = wire_bytes(cheapest.sources, "none", 0.0)
            each = SHIM_BYTES + max(len(x) for x in cheapest.sources) + 2
            m = max(0, (allowed - plain) // each)
            n = len(cheapest.sources)
            cheapest = candidate(cheapest.frame, m / n if m else 0.0)
            if m == 0:
                cheapest.fec = "none"
        if cheapest.wire_bytes > budget:  # not even the cheapest fits: the sender skips the frame
            skipped = replace(cheapest.frame, units=[], payload_bytes=0)
            return CodedFrame(skipped, 0, "none", 0.0, 0, budget if nack else 0, budget)
        return cheapest

    def decode(self, receiver: StreamReceiver, index: int, rgb: np.ndarray, coded: CodedFrame,
               got: dict[int, bytes]) -> tuple[np.ndarray | None, float | None]:
        """What `receiver` makes of the units that arrived (`got`: index -> unit): (the picture,
        or None where the frame cannot be decoded; the share of tokens lost, vq only)."""
        frame = coded.frame
        if frame.skipped:
            return None, None
        codec = self.sender.codec
        receiver.expect(index, codec.signal(frame))
        for i, unit in got.items():
            receiver.put(index, i, len(frame.units), unit)
        arrival = receiver.take(index)
        if not isinstance(arrival, TokenArrival):  # a file: whole or nothing, no recovery
            return receiver.decode(arrival, None).rgb, None
        lossy = arrival.lossy
        if not lossy.missing.any():
            filled = lossy.grid.indices
        else:
            t0 = time.perf_counter()
            filled = receiver.recover(arrival, self.recovery)
            self.recover_s += time.perf_counter() - t0
        concealed = self.recovery.conceal and lossy.missing.any()
        key = (index, frame.level, filled.tobytes(), lossy.missing.tobytes() if concealed else b"",
               arrival.chroma is None)
        if key not in self._decodes:
            t0 = time.perf_counter()
            self._decodes[key] = codec.render(arrival, filled, concealed)
            self.decode_s += time.perf_counter() - t0
        return self._decodes[key], lossy.loss_rate


def _channel(scenario: Scenario, variant, rtt: float):
    """The scenario's channel with this comparison point's loss process and one-way delay."""
    ch = scenario.channel
    loss = {"model": variant.model, "rate": 0.0, **({"burst": variant.burst} if variant.burst else {})}
    return ch.model_copy(update={
        "delay": ch.delay.model_copy(update={"base": rtt / 2}),
        "loss": type(ch.loss).model_validate(loss)})


def run_comparison(scenario: Scenario, setup: Setup, writer, seed: int, progress=None) -> dict:
    """Every method x loss process x round-trip time x loss rate x seed; records streamed to
    `writer`; returns the per-point summary and run statistics."""
    comp = scenario.comparison
    frames = list(load_frames(scenario))  # every method codes every frame at each point: kept
    codec = setup.codec
    timings = {"encode_s": 0.0, "simulate_s": 0.0, "recover_s": 0.0, "decode_s": 0.0, "metrics_s": 0.0}
    t0 = time.perf_counter()
    levels = [k for k in codec.level_sizes if k <= setup.level]
    grids = {(i, k): codec.encode(rgb, k) for i, (_, rgb) in enumerate(frames) for k in levels}
    reference = MethodCoder(MethodConfig(name="reference"), setup, scenario, grids)
    budgets = []
    for i, (_, rgb) in enumerate(frames):
        sources = reference.sender.encode(i, None).units
        budget = wire_bytes(sources, "none", 0)[0] if comp.budget == "reference" else comp.budget
        budgets.append(int(budget * comp.budget_scale))
    timings["encode_s"] += time.perf_counter() - t0
    coders = {m.name: MethodCoder(m, setup, scenario, grids) for m in comp.methods}
    metric_cache: dict[tuple, dict] = {}
    rates, seeds = scenario.loss_rates(), scenario.sweep.seeds
    points = [(v, rtt, rate, s) for v in comp.loss_models for rtt in comp.rtt for rate in rates for s in range(seeds)]
    runs, done = [], 0
    deadline, jitter = scenario.receiver.deadline, scenario.channel.delay.jitter
    pixels = frames[0][1].shape[0] * frames[0][1].shape[1]
    for variant, rtt, rate, s in points:
        channel = _channel(scenario, variant, rtt)
        run_seed = element_seed(seed, s)
        for method in comp.methods:
            coder = coders[method.name]
            nack = uses_nack(method, rtt, deadline, jitter)
            t0 = time.perf_counter()
            coded = [coder.code(i, rgb, budgets[i], rate, nack) for i, (_, rgb) in enumerate(frames)]
            timings["encode_s"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            options = ProtectionOptions(nack=nack, max_retries=comp.max_retries,
                                        nack_after_fec=method.fec != "none", reverse_delay=rtt / 2,
                                        reverse_loss=rate if comp.reverse_loss == "same" else comp.reverse_loss)
            results, stats = simulate_protected(channel, [coder.protected(c) for c in coded],
                                                scenario.source.fps, deadline, rate, run_seed, options,
                                                scenario.path.parent if scenario.path else None)
            timings["simulate_s"] += time.perf_counter() - t0
            run = {"method": method.name, "loss_model": variant.label, "rtt_ms": rtt * 1e3,
                   "loss_rate_target": rate, "seed": seed + s, "nack": nack, **stats,
                   "bits_wire": 0, "bits_budget": 0}
            runs.append(run)
            shown = np.full_like(frames[0][1], GREY)
            receiver = coder.receiver()
            for i, ((name, rgb), c, r) in enumerate(zip(frames, coded, results)):
                image, token_loss = coder.decode(receiver, i, rgb, c, r.recovered)
                decoded = image is not None
                if decoded:
                    shown = image
                t0 = time.perf_counter()
                key = (i, hashlib.sha1(shown.tobytes()).digest())
                if key not in metric_cache:
                    metric_cache[key] = quality(rgb, shown, setup.metrics or None)
                timings["metrics_s"] += time.perf_counter() - t0
                rec = _record(scenario, name, i, seed + s, variant.label, rtt, rate, method, c, r,
                              decoded, token_loss, metric_cache[key], pixels)
                run["bits_wire"] += rec["bits_wire"]
                run["bits_budget"] += rec["bits_budget"]
                writer.add(rec)
            # the stream's total against its frames' budgets: at most one packet's rounding over
            run["over_budget_bits"] = run["bits_wire"] - run["bits_budget"]
            run["largest_packet_bits"] = 8 * max((len(x) + SHIM_BYTES for c in coded for x in c.sources), default=0)
            run["frames_skipped"] = sum(1 for c in coded if not c.sources)
            done += 1
        if progress:
            progress("simulate", done // len(comp.methods), len(points))
    for coder in coders.values():
        timings["decode_s"] += coder.decode_s
        timings["recover_s"] += coder.recover_s
    return {"runs": runs, "timings": {k: round(v, 3) for k, v in timings.items()},
            "frames": len(frames), "frame_size": list(frames[0][1].shape[:2]),
            "budget_bytes_per_frame": budgets}


def _record(scenario, image, frame, seed, loss_model, rtt, rate, method: MethodConfig, coded: CodedFrame,
            result: FrameResult, decoded: bool, token_loss, q: dict, pixels: int) -> dict:
    header_first = len(coded.sources) * (SHIM_BYTES + coded.codec_header) + coded.parities * SHIM_BYTES
    payload_first = sum(len(s) for s in coded.sources) - len(coded.sources) * coded.codec_header
    retrans_header = result.retransmissions * (SHIM_BYTES + coded.codec_header)
    bits_header = 8 * (header_first + retrans_header)
    bits_source = 8 * payload_first
    bits_parity = 8 * (result.bytes_parity - coded.parities * SHIM_BYTES)
    bits_retransmitted = 8 * (result.bytes_retransmitted - result.retransmissions * (SHIM_BYTES + coded.codec_header))
    wire = bits_header + bits_source + bits_parity + bits_retransmitted
    latency = result.shown_at
    return {"scenario": scenario.name, "image": image, "frame": frame, "seed": seed, "method": method.name,
            "codec": method.codec, "codebook": coded.level, "choice": coded.choice,
            "loss_model": loss_model, "rtt_ms": rtt * 1e3, "loss_rate_target": rate,
            "loss_rate_packets": 1 - result.arrived_sources / result.sources if result.sources else None,
            "residual_loss": result.residual_loss, "loss_rate_tokens": token_loss,
            "decoded": decoded, "frame_latency_ms": latency * 1e3,
            "latency_ms_p50": latency * 1e3, "latency_ms_p95": latency * 1e3,
            "bits_source": bits_source, "bits_parity": bits_parity, "bits_retransmitted": bits_retransmitted,
            "bits_header": bits_header, "bits_wire": wire, "bits_budget": 8 * coded.budget,
            "header_share": bits_header / wire if wire else 0.0,
            "bpp_payload": bits_source / pixels, "bpp_wire": wire / pixels,
            "retransmissions": result.retransmissions, "parity_packets": coded.parities,
            "protected": method.fec != "none" or method.nack is not False or bool(method.coarse), **q}


def summarise(records: list[dict], fields: tuple[str, ...] = ("psnr", "ms_ssim")) -> list[dict]:
    """Per (method, loss process, RTT, loss rate): means over frames and seeds, the spread of the
    per-seed means (min, max: the report's bands), frames decoded, residual loss, p95 frame latency."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["method"], r["loss_model"], r["rtt_ms"], r["loss_rate_target"]), []).append(r)
    rows = []
    for (method, model, rtt, rate), recs in groups.items():
        row = {"method": method, "loss_model": model, "rtt_ms": rtt, "loss_rate_target": rate,
               "records": len(recs), "codec": recs[0]["codec"], "protected": any(r["protected"] for r in recs)}
        for f in fields:
            vals = [r[f] for r in recs if r.get(f) is not None]
            if not vals:
                continue
            row[f] = float(np.mean(vals))
            per_seed = {}
            for r in recs:
                if r.get(f) is not None:
                    per_seed.setdefault(r["seed"], []).append(r[f])
            means = [float(np.mean(v)) for v in per_seed.values()]
            row[f + "_min"], row[f + "_max"] = min(means), max(means)
        row["frames_decoded"] = float(np.mean([r["decoded"] for r in recs]))
        row["residual_loss"] = float(np.mean([r["residual_loss"] for r in recs]))
        row["frame_latency_ms_p95"] = float(np.percentile([r["frame_latency_ms"] for r in recs], 95))
        for f in ("bits_wire", "bits_budget", "bits_header", "bits_parity", "bits_retransmitted", "bits_source"):
            row[f] = float(np.mean([r[f] for r in recs]))
        row["header_share"] = row["bits_header"] / row["bits_wire"] if row["bits_wire"] else 0.0
        row["over_budget_bits_max"] = float(max(r["bits_wire"] - r["bits_budget"] for r in recs))
        rows.append(row)
    rows.sort(key=lambda r: (r["loss_model"], r["rtt_ms"], r["method"], r["loss_rate_target"]))
    return rows


def answer(rows: list[dict], metric: str = "psnr") -> str:
    """The comparison's answer in one sentence with its numbers: at how many of the lossy points
    generative recovery alone (a VQ method without FEC, NACK or a coarse layer) beats every protected method,
    and the margins at the middle loss rate."""
    lossy = [r for r in rows if r["loss_rate_target"] > 0 and r.get(metric) is not None]
    if not lossy:
        return "No lossy point was run."
    from .metrics import METRICS

    lower = {m.field for m in METRICS.values() if m.lower_is_better}
    sign = -1 if metric in lower else 1
    points = sorted({(r["loss_model"], r["rtt_ms"], r["loss_rate_target"]) for r in lossy})
    wins, total, margins = [], 0, []
    for p in points:
        here = [r for r in lossy if (r["loss_model"], r["rtt_ms"], r["loss_rate_target"]) == p]
        gen = [r for r in here if not r["protected"]]
        prot = [r for r in here if r["protected"]]
        if not gen or not prot:
            continue
        g = max(gen, key=lambda r: sign * r[metric])
        c = max(prot, key=lambda r: sign * r[metric])
        total += 1
        margins.append((p, g, c))
        if sign * g[metric] > sign * c[metric]:
            wins.append(p)
    if not total:
        return "The comparison needs both an unprotected VQ method and a protected one."
    rates = sorted({p[2] for p in points})
    mid = rates[len(rates) // 2]
    at_mid = [(p, g, c) for p, g, c in margins if p[2] == mid]
    detail = "; ".join(f"{p[0]}, RTT {p[1]:g} ms: {g['method']} {g[metric]:.2f} against {c['method']} {c[metric]:.2f}"
                       for p, g, c in at_mid)
    where = (f" (at loss {', '.join(sorted({f'{p[2]:.0%}' for p in wins}))}; RTT {', '.join(sorted({f'{p[1]:g} ms' for p in wins}))})"
             if wins else "")
    name = metric.upper().replace("_", "-")
    gen_p95 = max(g["frame_latency_ms_p95"] for _, g, _ in margins)
    prot_p95 = max(c["frame_latency_ms_p95"] for _, _, c in margins)
    return (f"At equal bandwidth, generative recovery alone beats the best protected method in {name} at "
            f"{len(wins)} of {total} lossy points{where}; at {mid:.0%} loss: {detail}; the generative receiver "
            f"shows frames by {gen_p95:.0f} ms (p95, worst point), the best protected ones by up to {prot_p95:.0f} ms.")
