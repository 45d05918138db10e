"""Fuzzing at volume: the `.vqb` parser, the packet parser (full and compact forms, behind the
transport shim; intra and P-frame packets), the depacketizer, the scenario loader (colour sections
included) and the video source (clip files through PyAV), each driven with generated and mutated
inputs. The test suite runs every target at a small volume (tests/test_fuzz.py), so the harness
cannot rot. A failure is an input that raises anything but the parser's own error (the clear one-line
errors a user sees); distinct failures are counted by exception type and the line that raised.

    python benchmarks/fuzz.py --inputs 100000            # every target, 100,000 inputs each
    python benchmarks/fuzz.py --targets packet --inputs 20000 --seed 3

Mutations of valid seeds (bit flips, byte overwrite/insert/delete, truncation, extension, splicing
two inputs, header fields set to edge values) and fresh random inputs; the seeds are real
bitstreams and packets of the shipped codec's priors (random token grids at every level) and the
shipped scenarios. Prints a JSON line per target: inputs, accepted, rejected, failures, seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def mutate(rng: np.random.Generator, data: bytes, pool: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        op = int(rng.integers(9))
        if op == 0 and b:  # flip a bit
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))
        elif op == 1 and b:  # overwrite a byte
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        elif op == 2:  # insert bytes
            i = int(rng.integers(len(b) + 1))
            b[i:i] = rng.bytes(int(rng.integers(1, 9)))
        elif op == 3 and b:  # delete a run
            i = int(rng.integers(len(b)))
            del b[i:i + int(rng.integers(1, 9))]
        elif op == 4:  # truncate
            b = b[:int(rng.integers(len(b) + 1))]
        elif op == 5:  # extend
            b += rng.bytes(int(rng.integers(1, 64)))
        elif op == 6 and pool:  # splice with another seed
            other = pool[int(rng.integers(len(pool)))]
            i, j = int(rng.integers(len(b) + 1)), int(rng.integers(len(other) + 1))
            b = b[:i] + other[j:]
        elif op == 7 and len(b) >= 2:  # an edge value in a 16-bit field
            i = int(rng.integers(len(b) - 1))
            b[i:i + 2] = (0, 0) if rng.random() < 0.3 else (255, 255) if rng.random() < 0.5 else rng.bytes(2)
        elif op == 8 and len(b) >= 4:  # an edge value in a 32-bit field
            i = int(rng.integers(len(b) - 3))
            b[i:i + 4] = bytes(4) if rng.random() < 0.5 else b"\xff\xff\xff\xff"
    return bytes(b)


def fix_crc(data: bytes) -> bytes:
    """The trailing CRC32 recomputed, so a mutation reaches the checks behind it (.vqb, packets)."""
    if len(data) < 4:
        return data
    return data[:-4] + zlib.crc32(data[:-4]).to_bytes(4, "little")


def inputs(rng: np.random.Generator, seeds: list[bytes], n: int, crc: bool = False):
    """n inputs: 85% mutated seeds (half of them with a valid CRC again where `crc`), 15% fresh
    random bytes of random length."""
    for _ in range(n):
        if rng.random() < 0.15:
            yield rng.bytes(int(rng.integers(0, 200)))
        else:
            data = mutate(rng, seeds[int(rng.integers(len(seeds)))], seeds)
            yield fix_crc(data) if crc and rng.random() < 0.5 else data


def run_target(name: str, check, expected: tuple[type, ...], items) -> dict:
    """`check(item)` must return or raise one of `expected`; anything else is a failure."""
    started = time.perf_counter()
    tried = accepted = rejected = 0
    failures: dict[str, dict] = {}
    for item in items:
        tried += 1
        try:
            check(item)
            accepted += 1
        except expected:
            rejected += 1
        except Exception as e:  # noqa: BLE001 - counting what escapes is the point
            tb = traceback.extract_tb(e.__traceback__)[-1]
            key = f"{type(e).__name__} at {Path(tb.filename).name}:{tb.lineno}"
            if key not in failures:
                failures[key] = {"count": 0, "example": (item.hex() if isinstance(item, bytes) else str(item))[:200],
                                 "message": str(e)[:200]}
            failures[key]["count"] += 1
    return {"target": name, "inputs": tried, "accepted": accepted, "rejected": rejected,
            "distinct_failures": len(failures), "failures": failures,
            "seconds": round(time.perf_counter() - started, 2)}


def codec_seeds(rng):
    from codec.bitstream import write_bitstream
    from codec.levels import load_levels
    from codec.packets import UPDATE_BYTES, packetize, packetize_update
    from codec.tokens import TokenGrid
    from codec.zoo import weights_dir

    levels = load_levels(weights_dir() / "levels.safetensors")
    priors = {k: lvl.prior for k, lvl in levels.items()}
    from codec import colour

    files, packets, grids = [], [], []
    for k, prior in priors.items():
        for h, w in ((16, 16), (48, 64), (256, 384), (20, 36)):
            gh, gw = -(-h // 16), -(-w // 16)
            idx = rng.choice(k, size=(gh, gw), p=prior.probabilities / prior.probabilities.sum())
            grid = TokenGrid(idx, k, (h, w))
            grids.append(grid)
            files.append(write_bitstream(grid, prior, bytes(32)))
            # the colour side channel too: version-2 files and packets that carry its section
            picture = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
            plane = colour.measure(picture, 64, 2, luma=bool(rng.integers(2)))
            files.append(write_bitstream(grid, prior, bytes(32), plane))
            for mode in ("random", "none"):
                packets += packetize(grid, prior, frame=int(rng.integers(100)), mtu=120, interleave=mode,
                                     seed=int(rng.integers(2**32)))
            packets += packetize(grid, prior, frame=int(rng.integers(100)), mtu=400,
                                 seed=int(rng.integers(2**32)), colour=colour.to_bytes(plane), colour_copies=2)
            # P-frame packets: a share of the tokens changed against the frame before
            frame = int(rng.integers(1, 100))
            changed = rng.random((gh, gw)) < rng.choice([0.02, 0.3, 1.0])
            packets += packetize_update(grid, changed, frame - 1, prior, frame=frame, mtu=120,
                                        seed=int(rng.integers(2**32)), overhead=28 + UPDATE_BYTES,
                                        max_tokens=int(rng.choice([8, 64])))
    return priors, files, packets


def video_seeds(rng) -> list[bytes]:
    """Small real clips (H.264 in mp4, VP9 in webm, raw y4m) made with PyAV, as bytes."""
    import io

    import av

    out = []
    for container, codec, pix in (("mp4", "libx264", "yuv420p"), ("webm", "libvpx-vp9", "yuv420p"),
                                  ("yuv4mpegpipe", "rawvideo", "yuv420p")):
        buffer = io.BytesIO()
        with av.open(buffer, "w", format=container) as c:
            s = c.add_stream(codec, rate=10)
            s.width, s.height, s.pix_fmt = 32, 32, pix
            for i in range(4):
                picture = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                for packet in s.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                    c.mux(packet)
            for packet in s.encode():
                c.mux(packet)
        out.append(buffer.getvalue())
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--targets", default="vqb,vqv,packet,compact,depacketizer,scenario,video")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    from codec.bitstream import BitstreamError, read_bitstream
    from codec.packets import PacketError, Session, parse_compact, parse_packet
    from simnet.stream.reassembly import Depacketizer
    from simnet.experiment.scenario import ScenarioError, load_scenario
    from simnet.network.protection import ProtectionError, parse_shim, protect

    priors, files, packets = codec_seeds(rng)

    def prior(k: int):  # as ImageCodec.prior: a level it lacks is a ValueError
        if k not in priors:
            raise ValueError(f"codebook level {k} is not available")
        return priors[k]

    wire = [p.to_bytes() for p in packets]
    results = []
    targets = set(args.targets.split(","))
    if "vqb" in targets:
        results.append(run_target("vqb (read_bitstream)", lambda d: read_bitstream(d, prior), (BitstreamError,),
                                  inputs(rng, files, args.inputs, crc=True)))
    if "vqv" in targets:
        from codec.clipfile import ClipFileError, ClipHeader, read_clip, write_clip

        clips = [write_clip(ClipHeader(64, 48, 32, 25.0, bytes(4), n), [wire[i:i + 3] for i in range(0, 3 * n, 3)])
                 for n in (1, 4, 9)]
        results.append(run_target("vqv clip (read_clip)", read_clip, (ClipFileError,),
                                  inputs(rng, clips, args.inputs)))
    if "packet" in targets:
        results.append(run_target("packet (parse_packet)", parse_packet, (PacketError,),
                                  inputs(rng, wire, args.inputs, crc=True)))
    if "compact" in targets:
        shimmed = [protect([p.to_compact()], p.frame)[0][0] for p in packets
                   if not p.update or p.reference == (p.frame - 1) % 2**32]
        sessions = {p.frame: Session(0, p.level, p.image_size, p.interleave, (p.seed - p.frame) % 2**32) for p in packets}
        depack = Depacketizer(prior)

        def compact(data):
            shim, body = parse_shim(data)
            session = sessions.get(shim.frame % 100) or next(iter(sessions.values()))
            depack.add_packet(parse_compact(body, session, shim.frame, shim.index, shim.sources))
            depack.frames.clear()

        results.append(run_target("compact packet (shim + parse_compact + decode)", compact,
                                  (ProtectionError, PacketError), inputs(rng, shimmed, args.inputs)))
    if "depacketizer" in targets:
        depack = Depacketizer(prior)
        counter = {"n": 0}

        def feed(data):
            status = depack.add(data)  # never raises, by contract
            if status not in ("ok", "corrupt", "duplicate", "inconsistent"):
                raise AssertionError(f"unknown status {status!r}")
            counter["n"] += 1
            if counter["n"] % 50 == 0:  # assemble what it holds, then start over (bounded memory)
                for stream, frame, coarse in list(depack.frames):
                    if coarse:
                        depack.cells(stream, frame)
                    else:
                        depack.assemble(stream, frame)
                        depack.update(stream, frame)
                        depack.chroma(stream, frame)
                depack.frames.clear()

        results.append(run_target("depacketizer (add + assemble)", feed, (), inputs(rng, wire, args.inputs, crc=True)))
    if "scenario" in targets:
        import tempfile

        texts = [p.read_bytes() for p in sorted((ROOT / "scenarios").glob("*.yaml"))]
        folder = Path(tempfile.mkdtemp(prefix="simnet-fuzz-"))
        (folder / "traces").mkdir()
        for trace in (ROOT / "scenarios" / "traces").glob("*"):
            (folder / "traces" / trace.name).write_bytes(trace.read_bytes())
        path = folder / "fuzz.yaml"

        def load(data):
            path.write_bytes(data)
            load_scenario(path)

        results.append(run_target("scenario loader (load_scenario)", load, (ScenarioError,),
                                  inputs(rng, texts, args.inputs)))
    if "video" in targets:
        import tempfile

        from codec.video import VideoError, read_frames

        clips = video_seeds(rng)
        folder = Path(tempfile.mkdtemp(prefix="simnet-fuzz-video-"))
        names = [folder / f"clip{i}.{ext}" for i, ext in enumerate(("mp4", "webm", "y4m"))]

        def read(data):
            path = names[len(data) % len(names)]
            path.write_bytes(data)
            for rgb in read_frames(path, 8):
                if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                    raise AssertionError(f"a frame of shape {rgb.shape} {rgb.dtype}")

        results.append(run_target("video source (read_frames)", read, (VideoError,), inputs(rng, clips, args.inputs)))
    for r in results:
        print(json.dumps(r))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if any(r["distinct_failures"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
