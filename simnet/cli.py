"""The `simnet` command line. Every command has --help with an example. A bad argument, file or
scenario prints one line (what is wrong, and where) and exits with status 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
out_console = Console()
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="simnet")
def app():
    """Streaming transmission simulator with packet-loss recovery for a generative image codec."""


@app.group("train")
def train_app():
    """Train the tokenizer, its codebook levels, or the recovery transformer (resumable, CPU)."""


class UserError(Exception):
    """A problem with the user's input; printed as one line, exit status 2."""


def _expected_errors() -> tuple[type, ...]:
    from codec.bitstream import BitstreamError
    from codec.checkpoint import CheckpointError
    from codec.entropy import EntropyError
    from codec.images import ImageError
    from codec.packets import PacketError
    from recovery.base import RecoveryError

    from .loss_models import LossModelError
    from .mqtt.transport import MqttError
    from .results import ResultsError

    errors = [UserError, BitstreamError, CheckpointError, EntropyError, ImageError, PacketError,
              RecoveryError, LossModelError, ResultsError, MqttError]
    try:
        from .scenario import ScenarioError

        errors.append(ScenarioError)
    except ImportError:
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        result = app.main(args=argv, prog_name="simnet", standalone_mode=False)
        if isinstance(result, int):
            return result
    except click.UsageError as e:
        where = f" ({e.ctx.command_path})" if e.ctx else ""
        print(f"simnet: error: {e.format_message()}{where}", file=sys.stderr)
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.Abort:
        print("simnet: aborted", file=sys.stderr)
        return 130
    except Exception as e:  # the expected kinds become one line; anything else is a bug: traceback
        if isinstance(e, _expected_errors()):
            print(f"simnet: error: {e}", file=sys.stderr)
            return 2
        raise
    return 0


def _codec(weights: Path | None, precision: str = "bf16"):
    from codec.zoo import load_codec

    return load_codec(weights, precision=precision)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a file") from None


weights_option = click.option("--weights", type=Path, default=None,
                              help="Folder with tokenizer.safetensors and levels.safetensors "
                                   "(default: the shipped weights).")
codebook_option = click.option("--codebook", "-k", type=int, default=1024, show_default=True,
                               help="Codebook level K.")


@app.command()
@click.argument("image", type=Path)
@click.argument("out", type=Path)
@codebook_option
@weights_option
def encode(image: Path, out: Path, codebook: int, weights: Path | None):
    """Encode IMAGE to the .vqb bitstream OUT.

    \b
    Example: simnet encode photo.png photo.vqb --codebook 256
    """
    from codec.images import load_rgb

    codec = _codec(weights)
    rgb = load_rgb(image)
    codec.level(codebook) if codebook in codec.levels else _bad_level(codebook, codec)
    grid = codec.encode(rgb, codebook)
    data = codec.to_bytes(grid)
    out.write_bytes(data)
    pixels = rgb.shape[0] * rgb.shape[1]
    out_console.print(f"{image} -> {out}: {rgb.shape[1]}x{rgb.shape[0]}, K={codebook}, "
                      f"{len(data)} bytes, {len(data) * 8 / pixels:.4f} bpp")


def _bad_level(k, codec):
    raise UserError(f"--codebook {k}: not an available level (have {codec.level_sizes})")


@app.command()
@click.argument("bitstream", type=Path)
@click.argument("out", type=Path)
@weights_option
def decode(bitstream: Path, out: Path, weights: Path | None):
    """Decode the .vqb BITSTREAM to the image OUT (PNG recommended).

    \b
    Example: simnet decode photo.vqb photo.png
    """
    from codec.images import save_rgb

    codec = _codec(weights)
    header, grid = codec.from_bytes(_read_bytes(bitstream))
    try:
        save_rgb(codec.decode(grid), out)
    except (ValueError, OSError) as e:
        raise UserError(f"{out}: cannot write image ({e})") from None
    out_console.print(f"{bitstream} -> {out}: {header.width}x{header.height}, K={header.level}")


@app.command()
@click.argument("bitstream", type=Path)
@click.option("--json", "as_json", is_flag=True, help="Print the header as JSON.")
def info(bitstream: Path, as_json: bool):
    """Print the header of the .vqb file BITSTREAM (no weights needed).

    \b
    Example: simnet info photo.vqb
    """
    from codec.bitstream import read_header

    fields = read_header(_read_bytes(bitstream)).describe()
    if as_json:
        out_console.print_json(json.dumps(fields))
        return
    for k, v in fields.items():
        out_console.print(f"{k:>15}: {v}")


def _parse_floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{what}: expected comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 <= v <= 1 for v in values):
        raise UserError(f"{what}: every value must lie in [0, 1], got {text!r}")
    return values


@app.command("eval")
@click.option("--images", type=Path, required=True, help="Folder of images.")
@codebook_option
@click.option("--loss", default="0", show_default=True, help="Token loss rates, comma separated.")
@click.option("--methods", default="none,neighbour", show_default=True,
              help="Recovery methods, comma separated: none, neighbour, transformer, or "
              "transformer:STEPS[:argmax|mmse[:WINDOW|grid]] (transformer:1 is one-shot).")
@click.option("--burst", type=float, default=None, help="Lose whole packets (Gilbert-Elliott with "
              "this mean burst length, through the codec's interleaving) instead of random tokens.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Loss patterns per rate.")
@click.option("--seed", type=int, default=0, show_default=True, help="First seed.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N images.")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Also measure JPEG/WebP, and downscaled WebP at the VQ codec's rate.")
@click.option("--json", "json_out", type=Path, default=None, help="Write the results JSON here.")
@click.option("--precision", type=click.Choice(["bf16", "fp32"]), default="bf16", show_default=True,
              help="Convolution precision.")
@click.option("--rate-lambda", type=click.FloatRange(min=0), default=None,
              help="Rate-distortion trade-off of the code assignment (0: nearest code; default: the "
                   "level's shipped value).")
@click.option("--iqa", default=None, help="Also these pyiqa metrics, comma separated (e.g. "
              "fsim,vif,gmsd,lpips,dists); needs pyiqa's own environment (`make iqa`). A metric "
              "that cannot run here (weights not downloadable) is listed in meta.iqa, never filled in.")
@weights_option
def eval_cmd(images, codebook, loss, methods, burst, seeds, seed, limit, baselines, json_out,
             precision, rate_lambda, iqa, weights):
    """Codec (and recovery) quality on a folder of images: per image and mean.

    \b
    Example: simnet eval --images ../shared/data/kodak --codebook 1024 --loss 0,0.1,0.2 --json kodak.json
    """
    from rich.progress import Progress

    from codec.images import list_images
    from recovery import RecoveryError, parse_method

    from .evaluate import EvalOptions, evaluate_folder
    from .results import ResultsWriter, make_meta

    loss_rates = _parse_floats(loss, "--loss")
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    for m in method_list:
        try:
            parse_method(m)
        except RecoveryError as e:
            raise UserError(f"--methods: {e}") from None
    if burst is not None and burst < 1:
        raise UserError(f"--burst: mean burst length must be >= 1 packet, got {burst}")
    list_images(images)  # a missing or empty folder fails here, before the weights load
    extra_metrics = None
    if iqa:
        from .metrics_backends import IQAMetrics, MetricsUnavailable

        try:
            extra_metrics = IQAMetrics([m.strip() for m in iqa.split(",") if m.strip()])
        except MetricsUnavailable as e:
            raise UserError(f"--iqa: {e}") from None
        for name, why in extra_metrics.unavailable.items():
            console.print(f"[yellow]--iqa: {name} cannot run here and is left out ({why})[/]")
    codec = _codec(weights, precision)
    if codebook not in codec.levels:
        _bad_level(codebook, codec)
    opts = EvalOptions(level=codebook, loss_rates=loss_rates, methods=method_list, seeds=seeds,
                       seed=seed, burst=burst, baselines=baselines, rate_lambda=rate_lambda,
                       iqa=extra_metrics)
    out = json_out or Path("reports") / f"eval-{images.name}-k{codebook}.json"
    meta = make_meta(["simnet"] + sys.argv[1:], seed, {"codec": codec.checksum},
                     images=str(images), codebook=codebook, precision=precision,
                     rate_lambda=rate_lambda if rate_lambda is not None else codec.level(codebook).rate_lambda,
                     burst=burst, **({"iqa": extra_metrics.describe()} if extra_metrics else {}))
    mean_fields = tuple(extra_metrics.fields) if extra_metrics else ()
    with ResultsWriter(out, meta, mean_fields) as writer, Progress(console=console, transient=True) as progress:
        task = progress.add_task("evaluating", total=None)
        evaluate_folder(codec, images, opts, writer,
                        lambda i, n, name: progress.update(task, completed=i, total=n,
                                                           description=name), limit)
    summary = writer.summary()
    _print_summary(summary, mean_fields)
    out_console.print(f"wrote {out}")


def _print_summary(summary: list[dict], extra_fields: tuple[str, ...] = ()) -> None:
    several = len({row["scenario"] for row in summary}) > 1
    table = Table(title="mean over images")
    columns = (("scenario",) if several else ()) + ("method", "K", "loss", "packet loss", "bpp",
                                                    "PSNR dB", "MS-SSIM", "token acc.") + extra_fields
    for col in columns:
        table.add_column(col, justify="right")
    for row in summary:
        acc = row.get("token_accuracy")
        cells = [row["method"], str(row["codebook"] or "-"), f"{row['loss_rate_target']:.2f}",
                 f"{row.get('loss_rate_packets', 0):.3f}", f"{row['bpp_wire']:.4f}",
                 f"{row['psnr']:.2f}", f"{row['ms_ssim']:.4f}", "-" if acc is None else f"{acc:.3f}"]
        cells += [f"{row[f]:.4g}" if f in row else "-" for f in extra_fields]
        table.add_row(*([row["scenario"]] if several else []), *cells)
    out_console.print(table)


def _recoveries(names: list[str]) -> dict:
    from recovery import get_method

    return {name: get_method(name) for name in names}


def _scenario_meta(scenario) -> dict:
    return scenario.model_dump(mode="json", exclude={"path"})


@app.command()
@click.argument("scenario_file", type=Path)
@click.option("--out", type=Path, default=Path("reports"), show_default=True,
              help="Folder for NAME.json, NAME.pdf and NAME-images/.")
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option("--no-pdf", is_flag=True, help="Write the JSON only.")
def run(scenario_file: Path, out: Path, seed: int | None, no_pdf: bool):
    """Run one scenario: progress, a summary table, then OUT/NAME.json and OUT/NAME.pdf.

    \b
    Example: simnet run scenarios/lossy20.yaml --out reports
    """
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .report import render_report
    from .results import ResultsWriter, make_meta
    from .runner import run_scenario
    from .scenario import load_scenario

    scenario = load_scenario(scenario_file)
    seed = scenario.seed if seed is None else seed
    started = time.perf_counter()
    codec = _codec(scenario.resolve(scenario.codec.weights), scenario.codec.precision)
    if scenario.codec.codebook not in codec.levels:
        raise UserError(f"{scenario_file}: codec.codebook: level {scenario.codec.codebook} is not "
                        f"available (have {codec.level_sizes})")
    recoveries = _recoveries(scenario.receiver.recovery)
    checksums = {"codec": codec.checksum}
    for name, method in recoveries.items():
        if getattr(method, "checksum", None):
            checksums[name] = method.checksum
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{scenario.name}.json"
    meta = make_meta(["simnet", "run", str(scenario_file)] + (["--seed", str(seed)] if seed else []),
                     seed, checksums, scenario=_scenario_meta(scenario), methods=list(recoveries))
    writer = ResultsWriter(json_path, meta)
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with writer, Progress(*columns, console=console, transient=True) as progress:
        tasks = {}

        def report(stage, i, n):
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=n)
            progress.update(tasks[stage], completed=i)

        info = run_scenario(scenario, codec, recoveries, writer, out / f"{scenario.name}-images", seed,
                            report)
        timings = info.pop("timings")
        summary = writer.close(runs=info.pop("runs"), run_info=info)
    wall = time.perf_counter() - started
    _print_summary(summary)
    (out / f"{scenario.name}.profile.json").write_text(json.dumps(
        {"wall_s": round(wall, 3), **timings}, indent=1))
    out_console.print(f"wrote {json_path}")
    if not no_pdf:
        out_console.print(f"wrote {render_report(json_path)}")
    out_console.print(f"wall time {wall:.1f} s (encode {timings['encode_s']:.1f}, simulate "
                      f"{timings['simulate_s']:.1f}, recover {timings['recover_s']:.1f}, decode "
                      f"{timings['decode_s']:.1f}, metrics {timings['metrics_s']:.1f})")


@app.command()
@click.argument("scenario_files", type=Path, nargs=-1, required=True)
@click.option("--out", type=Path, default=Path("reports/sweep.json"), show_default=True,
              help="Merged results JSON; the PDF goes beside it.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local processes (default: one per core).")
@click.option("--scheduler", default=None, help="A Dask scheduler address, e.g. tcp://HOST:8786.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-pdf", is_flag=True, help="Write the JSON only.")
def sweep(scenario_files, out, workers, scheduler, seed, no_pdf):
    """Many scenarios x loss rates x seeds in parallel; one merged JSON and PDF.

    \b
    Example: simnet sweep scenarios/*.yaml --out reports/all.json
    Example: simnet sweep scenarios/lossy20.yaml --scheduler tcp://10.0.0.5:8786
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .report import render_report
    from .sweep import run_sweep

    if out.suffix != ".json":
        raise UserError(f"--out {out}: expected a .json path")
    columns = (TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("sweep", total=None)
        summary = run_sweep(list(scenario_files), out, seed, workers, scheduler,
                            ["simnet", "sweep"] + [str(p) for p in scenario_files],
                            lambda i, n: progress.update(task, completed=i, total=n))
    _print_summary(summary)
    out_console.print(f"wrote {out}")
    if not no_pdf:
        out_console.print(f"wrote {render_report(out)}")


@app.command()
@click.argument("results_json", type=Path)
@click.option("--out", type=Path, default=None, help="PDF path (default: beside the JSON).")
def report(results_json: Path, out: Path | None):
    """Re-render the PDF of a results JSON, without recomputing anything.

    \b
    Example: simnet report reports/lossy20.json
    """
    from .report import render_report

    out_console.print(f"wrote {render_report(results_json, out)}")


@app.command()
@click.argument("which", type=click.Choice(["all", "network", "codec", "memory"]), default="all")
def bench(which):
    """The performance figures, each as a ratio against a baseline measured in the same run
    (runs the scripts in benchmarks/ of a source checkout).

    \b
    Example: simnet bench network
    """
    import subprocess

    root = Path(__file__).resolve().parent.parent / "benchmarks"
    if not root.is_dir():
        raise UserError(f"{root}: benchmarks/ not found; run from a source checkout of simnet")
    script = {"all": "run_all.py", "network": "network_speed.py", "codec": "codec_speed.py",
              "memory": "long_run_memory.py"}[which]
    return subprocess.call([sys.executable, str(root / script)])


@train_app.command("tokenizer")
@click.option("--out", type=Path, default=Path("runs/tokenizer"), show_default=True,
              help="Run folder; resumes from OUT/last.pt if present.")
@click.option("--steps", type=click.IntRange(min=1), default=4400, show_default=True)
@click.option("--decay-start", type=click.IntRange(min=0), default=3000, show_default=True,
              help="Step where the learning rate starts its linear decay.")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--crop", type=click.IntRange(min=32), default=128, show_default=True)
@click.option("--lr", type=float, default=4e-4, show_default=True)
@click.option("--max-minutes", type=float, default=0, help="Stop (resumably) after this long.")
@click.option("--init", type=Path, default=None, help="Start from these weights (e.g. the shipped ones).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--l2-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of a squared-error term beside L1 and SSIM (serves PSNR).")
@click.option("--decoder-only", "decoder_levels", type=Path, default=None,
              help="Levels file: fine-tune the decoder only, fed the codec's own quantisation; the "
                   "encoder and codebook stay frozen so token grids (and the transformer) stay valid.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--norm-groups", type=click.IntRange(min=1), default=32, show_default=True,
              help="GroupNorm groups of a new model (taming's 32; at ch=32 that is one channel a group). "
                   "A resumed or --init run keeps its model's.")
def train_tokenizer(out, steps, decay_start, batch, crop, lr, max_minutes, init, seed, l2_weight,
                    decoder_levels, threads, norm_groups):
    """Train the tokenizer on the training split of ../shared/data (never Kodak).

    \b
    Example: nohup simnet train tokenizer --out runs/tokenizer --max-minutes 120 &
    """
    from codec.images import default_data_root
    from codec.train_tokenizer import TrainConfig, train

    if not (default_data_root() / "bsds500").is_dir():
        raise UserError(f"{default_data_root()}: training data not found (set SIMNET_DATA)")
    if crop % 16:
        raise UserError(f"--crop {crop}: must be a multiple of 16")
    if init is not None and not init.is_file():
        raise UserError(f"--init {init}: no such weights file")
    if decoder_levels is not None and not decoder_levels.is_file():
        raise UserError(f"--decoder-only {decoder_levels}: no such levels file")
    if decoder_levels is not None and init is None and not (out / "last.pt").exists():
        raise UserError("--decoder-only needs --init (the tokenizer whose encoder stays frozen)")
    from codec.tokenizer import TokenizerConfig

    try:
        model = TokenizerConfig(norm_groups=norm_groups)
    except ValueError as e:
        raise UserError(f"--norm-groups {norm_groups}: {e}") from None
    cfg = TrainConfig(out=str(out), steps=steps, decay_start=decay_start, batch=batch, crop=crop,
                      lr=lr, max_minutes=max_minutes, seed=seed, init=str(init) if init else None,
                      l2_weight=l2_weight, threads=threads, model=model,
                      decoder_only_levels=str(decoder_levels) if decoder_levels else None)
    train(cfg, log=lambda s: out_console.print(s, highlight=False))


@train_app.command("levels")
@click.option("--tokenizer", type=Path, required=True, help="Tokenizer weights (.safetensors).")
@click.option("--out", type=Path, required=True, help="Levels file to write.")
@click.option("--sizes", default="16,64,256,1024", show_default=True, help="Codebook levels.")
@click.option("--refine", type=click.IntRange(min=0), default=10, show_default=True,
              help="Lloyd steps on the training latents.")
@click.option("--target-bits", default="", help="Rate targets per level, K=BITS per token, comma "
              "separated (e.g. 1024=9.2): tunes each level's rate_lambda on the validation split.")
@click.option("--refine-base/--keep-base", default=False, show_default=True,
              help="Also refine the base level's codebook on the training latents.")
@click.option("--seed", type=int, default=0, show_default=True)
def train_levels(tokenizer, out, sizes, refine, target_bits, refine_base, seed):
    """Cluster the tokenizer's codebook into smaller levels and learn each level's prior.

    \b
    Example: simnet train levels --tokenizer runs/tokenizer/best.safetensors --out codec/weights/levels.safetensors
    """
    from codec.train_levels import make_levels

    try:
        level_sizes = tuple(int(s) for s in sizes.split(","))
    except ValueError:
        raise UserError(f"--sizes: expected comma-separated integers, got {sizes!r}") from None
    targets = {}
    for item in filter(None, (t.strip() for t in target_bits.split(","))):
        try:
            k, bits = item.split("=")
            targets[int(k)] = float(bits)
        except ValueError:
            raise UserError(f"--target-bits: expected K=BITS items, got {item!r}") from None
        if int(k) not in level_sizes:
            raise UserError(f"--target-bits {item}: level {k} is not among --sizes {sizes}")
    make_levels(tokenizer, out, level_sizes, refine, seed, log=lambda s: out_console.print(s),
                target_bits=targets, refine_base=refine_base)


@train_app.command("recovery")
@click.option("--out", type=Path, default=Path("runs/recovery"), show_default=True,
              help="Run folder; resumes from OUT/last.pt if present.")
@click.option("--steps", type=click.IntRange(min=1), default=3000, show_default=True)
@click.option("--decay-start", type=click.IntRange(min=0), default=2000, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--layers", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--width", type=click.IntRange(min=32), default=256, show_default=True)
@click.option("--max-minutes", type=float, default=0, help="Stop (resumably) after this long.")
@click.option("--init", type=Path, default=None, help="Start from these weights (e.g. the shipped ones).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="torch threads (1 when another training shares the two cores).")
@click.option("--code-vectors/--symbols-only", default=True, show_default=True,
              help="Give the model the codebook vectors (input and output), or indices only.")
@click.option("--vector-weight", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Weight of the mean-code-vector error beside the cross-entropy (code vectors only).")
@weights_option
def train_recovery(out, steps, decay_start, batch, lr, layers, width, max_minutes, init, seed, threads,
                   code_vectors, vector_weight, weights):
    """Train the recovery transformer on token grids of the training split (never Kodak).

    \b
    Example: nohup simnet train recovery --out runs/recovery --max-minutes 120 &
    """
    from codec.images import default_data_root
    from recovery.train_transformer import RecoveryTrainConfig, train
    from recovery.transformer import TransformerConfig

    from .recovery_data import training_grids, validation_grids

    if not (default_data_root() / "bsds500").is_dir():
        raise UserError(f"{default_data_root()}: training data not found (set SIMNET_DATA)")
    if width % 8:
        raise UserError(f"--width {width}: must be a multiple of 8 (the attention heads)")
    codec = _codec(weights)
    log = lambda s: out_console.print(s, highlight=False)
    grids = training_grids(codec, log=log)
    val = validation_grids(codec)
    if init is not None and not init.is_file():
        raise UserError(f"--init {init}: no such weights file")
    cfg = RecoveryTrainConfig(out=str(out), steps=steps, decay_start=decay_start, batch=batch, lr=lr,
                              max_minutes=max_minutes, seed=seed, init=str(init) if init else None,
                              threads=threads, vector_weight=vector_weight, model=TransformerConfig(
                                  n_layer=layers, n_embd=width,
                                  code_dim=codec.codebook(codec.level_sizes[-1]).shape[1] if code_vectors else 0,
                                  local_features=code_vectors))
    train(cfg, grids, val, log=log, extra_info={"codec_checksum": codec.checksum},
          codebooks={k: codec.codebook(k) for k in codec.level_sizes})


@app.group("mqtt")
def mqtt_app():
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
    from .mqtt.transport import ConnectionOptions, parse_broker

    host, port = parse_broker(broker)
    if ca_file is not None and not ca_file.is_file():
        raise UserError(f"--ca-file {ca_file}: no such file")
    return ConnectionOptions(host, port, username, password, str(ca_file) if ca_file else None,
                             client_id, qos, keepalive)


def _source_frames(images, size, count):
    from .runner import image_frames

    return image_frames(None if images in (None, "builtin") else Path(images), size, count)


def _channel_from(scenario_file, loss_rate, seed):
    from .mqtt.sender import LiveChannel
    from .scenario import load_scenario

    if scenario_file is None:
        return None
    scenario = load_scenario(scenario_file)
    return LiveChannel(scenario.channel, seed, loss_rate, scenario.path.parent)


@mqtt_app.command("send")
@_mqtt_options
@click.option("--images", default="builtin", show_default=True, help="builtin, or a folder of images.")
@click.option("--frames", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--fps", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
@click.option("--size", default="256x384", show_default=True, help="HEIGHTxWIDTH of every frame.")
@click.option("--codebook", "-k", type=int, default=1024, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=48, show_default=True)
@click.option("--channel", "channel_file", type=Path, default=None,
              help="Apply this scenario's loss and delay models before publishing.")
@click.option("--loss", type=click.FloatRange(0, 1), default=None, help="Override the channel's loss rate.")
@click.option("--seed", type=int, default=0, show_default=True)
@weights_option
def mqtt_send(broker, username, password, ca_file, client_id, qos, keepalive, stream, images, frames, fps,
              size, codebook, max_tokens, channel_file, loss, seed, weights):
    """Publish frames as packets on simnet/STREAM/packets; print the receiver's reports.

    \b
    Example: simnet mqtt send --broker 192.168.1.10 --stream cam1 --fps 5 --channel scenarios/lossy20.yaml
    """
    import asyncio

    from .mqtt.sender import send_stream

    options = _connection(broker, username, password, ca_file, client_id, qos, keepalive)
    frame_size = _parse_size(size)
    channel = _channel_from(channel_file, loss, seed)
    codec = _codec(weights)
    if codebook not in codec.levels:
        _bad_level(codebook, codec)
    stats = asyncio.run(send_stream(options, stream, _source_frames(images, frame_size, frames), codec,
                                    codebook, fps, channel, max_tokens=max_tokens,
                                    log=lambda s: console.print(s)))
    last = stats.feedback[-1] if stats.feedback else {}
    out_console.print(f"sent {stats.frames} frames, {stats.packets} packets ({stats.dropped} dropped by "
                      f"the channel model), {stats.bytes} bytes; receiver reports: {len(stats.feedback)}"
                      + (f", last: shown {last.get('frames_shown')}, loss {last.get('loss_rate', 0):.3f}"
                         if last else ""))


def _recovery_spec(ctx, param, value):
    from recovery import RecoveryError, parse_method

    try:
        parse_method(value)
    except RecoveryError as e:
        raise click.BadParameter(str(e)) from None
    return value


def _parse_size(text):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {text!r}: expected HEIGHTxWIDTH, e.g. 256x384") from None
    if not (16 <= h <= 4096 and 16 <= w <= 4096):
        raise UserError(f"--size {text!r}: each side must be 16..4096")
    return h, w


@mqtt_app.command("receive")
@_mqtt_options
@click.option("--deadline", type=click.FloatRange(min=1), default=150, show_default=True,
              help="Milliseconds after a frame's first packet; later packets count as lost.")
@click.option("--recovery", callback=_recovery_spec, default="neighbour", show_default=True,
              help="none, neighbour, transformer, or transformer:STEPS[:argmax|mmse[:WINDOW|grid]] (transformer:1 is "
                   "one-shot, the fast choice for live video).")
@click.option("--view-port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port of the live view (0: none).")
@click.option("--view-host", default="127.0.0.1", show_default=True)
@click.option("--save", type=Path, default=None, help="Save every decoded frame as PNG here.")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Stop after this many frames.")
@click.option("--idle-timeout", type=float, default=None, help="Stop after this many idle seconds.")
@weights_option
def mqtt_receive(broker, username, password, ca_file, client_id, qos, keepalive, stream, deadline, recovery,
                 view_port, view_host, save, frames, idle_timeout, weights):
    """Reassemble, recover and decode frames from simnet/STREAM/packets; serve a live view.

    \b
    Example: simnet mqtt receive --broker 192.168.1.10 --stream cam1 --recovery neighbour
    """
    import asyncio

    from recovery import get_method

    from .mqtt.receiver import StreamReceiver, receive_stream, serve_live_view

    options = _connection(broker, username, password, ca_file, client_id, qos, keepalive)
    codec = _codec(weights)
    receiver = StreamReceiver(codec, get_method(recovery), deadline / 1e3, stream, save)
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


@mqtt_app.command("relay")
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

    from .mqtt.sender import relay

    options = _connection(broker, username, password, ca_file, client_id, qos, keepalive)
    channel = _channel_from(channel_file, loss, seed)
    try:
        counts = asyncio.run(relay(options, stream, to_stream, channel, lambda s: console.print(s)))
    except KeyboardInterrupt:
        return
    out_console.print(json.dumps(counts))


@mqtt_app.command("demo")
@click.option("--frames", type=click.IntRange(min=1), default=60, show_default=True)
@click.option("--fps", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
@click.option("--loss", type=click.FloatRange(0, 0.95), default=0.2, show_default=True)
@click.option("--recovery", callback=_recovery_spec, default="neighbour", show_default=True,
              help="none, neighbour, transformer, or transformer:STEPS[:argmax|mmse[:WINDOW|grid]] (transformer:1 is "
                   "one-shot, the fast choice for live video).")
@click.option("--view-port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--size", default="256x384", show_default=True)
@weights_option
def mqtt_demo(frames, fps, loss, recovery, view_port, size, weights):
    """One machine: an embedded broker, a sender at LOSS packet loss (bursty, lossy20's channel),
    a receiver and its live view, from one command.

    \b
    Example: simnet mqtt demo --loss 0.2 --fps 5   (then open http://127.0.0.1:8765/)
    """
    import asyncio

    from .mqtt.demo import run_demo

    stats = asyncio.run(run_demo(_codec(weights), frames, fps, loss, recovery, view_port, _parse_size(size),
                                 log=lambda s: out_console.print(s)))
    out_console.print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    sys.exit(main())
