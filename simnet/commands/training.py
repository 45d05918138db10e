"""`simnet train tokenizer|levels|recovery`: resumable training of the codec and the recovery
transformer on the training split of ../shared/data (never on Kodak)."""

from __future__ import annotations

from pathlib import Path

import click

from codec.tokens import MASK_PATTERNS

from ..errors import UserError
from .common import device_option, out_console, precision_option, weights_option


@click.group()
def train():
    """Train the tokenizer, its codebook levels, or the recovery transformer (resumable, CPU)."""


def _check_training_data() -> None:
    from codec.images import default_data_root

    if not (default_data_root() / "bsds500").is_dir():
        raise UserError(f"{default_data_root()}: training data not found (set SIMNET_DATA)")


@train.command("tokenizer")
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
@click.option("--ssim-weight", type=click.FloatRange(min=0), default=0.2, show_default=True,
              help="Weight of the (1 - SSIM) term beside L1 (serves structure: MS-SSIM, SSIMULACRA).")
@click.option("--l2-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of a squared-error term beside L1 and SSIM (serves PSNR).")
@click.option("--chroma-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of an L1 term on the chroma of 4x4-pixel averages (serves colour fidelity).")
@click.option("--gan-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="The VQGAN adversarial term (PatchGAN, hinge loss, adaptive weight); 0 = off.")
@click.option("--gan-start", type=click.IntRange(min=0), default=0, show_default=True,
              help="Step from which the generator's adversarial term counts; the discriminator trains "
                   "from the first step.")
@click.option("--disc-channels", type=click.IntRange(min=8), default=64, show_default=True,
              help="Width of the discriminator's first layer (taming's ndf).")
@click.option("--decoder-only", "decoder_levels", type=Path, default=None,
              help="Levels file: fine-tune the decoder only, fed the codec's own quantisation; the "
                   "encoder and codebook stay frozen so token grids (and the transformer) stay valid.")
@click.option("--restore-stats", is_flag=True,
              help="Give the decoder's last normalisation a learned path (starting at zero) that hands "
                   "back each channel's mean and scale, so the picture's overall colour has a way to the "
                   "output (an experiment: docs/models.md).")
@click.option("--train-only", default="", metavar="PREFIXES",
              help="Comma-separated parameter-name prefixes (e.g. decoder.norm_out,decoder.conv_out): "
                   "train only these, the rest frozen.")
@click.option("--loss-aware", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Train under token loss: each crop is also decoded with random tokens lost and "
                   "filled as `neighbour` fills them, and that decode's loss counts this many times; "
                   "encoder and decoder both learn from it. 0 = off.")
@click.option("--loss-aware-max", type=click.FloatRange(min=0.02, max=0.95), default=0.5, show_default=True,
              help="With --loss-aware: the share of lost tokens is drawn uniformly up to this.")
@click.option("--loss-aware-pattern", type=click.Choice(MASK_PATTERNS), default="mixed", show_default=True,
              help="With --loss-aware: which tokens are lost: scattered tokens, raster runs and "
                   "rectangles (mixed), or scattered tokens only, as the codec's interleaving "
                   "scatters lost packets.")
@click.option("--conceal", is_flag=True,
              help="With --loss-aware: the lossy decode is also told which tokens were lost (the "
                   "concealing decoder's mask channel, trained with everything else); writes "
                   "best-conceal.safetensors beside best.safetensors, for the '+conceal' methods "
                   "(copy it into the weights folder as conceal.safetensors).")
@click.option("--best-by", type=click.Choice(["psnr", "ciede2000", "lossy", "last"]), default="psnr",
              show_default=True,
              help="What picks best.safetensors: highest validation PSNR, lowest mean CIEDE2000, the "
                   "highest mean of the PSNR lossless and with 20% of tokens lost (for --loss-aware), or "
                   "the latest validation (for adversarial runs, which trade PSNR for sharpness).")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--norm-groups", type=click.IntRange(min=1), default=32, show_default=True,
              help="GroupNorm groups of a new model (taming's 32; at ch=32 that is one channel a group). "
                   "A resumed or --init run keeps its model's.")
@device_option()
@precision_option()
def train_tokenizer(out, steps, decay_start, batch, crop, lr, max_minutes, init, seed, ssim_weight, l2_weight, chroma_weight,
                    gan_weight, gan_start, disc_channels,
                    decoder_levels, restore_stats, train_only, loss_aware, loss_aware_max, loss_aware_pattern, conceal, best_by, threads, norm_groups, device, precision):
    """Train the tokenizer on the training split of ../shared/data (never Kodak).

    \b
    Example: nohup simnet train tokenizer --out runs/tokenizer --max-minutes 120 &
    """
    from simnet.training.discriminator import DiscriminatorConfig
    from simnet.training.tokenizer import TrainConfig, TrainingSetupError, train

    if loss_aware and decoder_levels is not None:
        raise UserError("--loss-aware trains the encoder with the decoder: it cannot go with --decoder-only")
    if conceal and not loss_aware:
        raise UserError("--conceal trains the concealing decoder under token loss: it needs --loss-aware")
    _check_training_data()
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
                      device=device, precision=precision,
                      ssim_weight=ssim_weight, l2_weight=l2_weight, chroma_weight=chroma_weight, threads=threads, model=model,
                      decoder_only_levels=str(decoder_levels) if decoder_levels else None,
                      restore_stats=restore_stats, best_by=best_by, loss_aware=loss_aware,
                      loss_aware_max=loss_aware_max, loss_aware_pattern=loss_aware_pattern, conceal=conceal, gan_weight=gan_weight, gan_start=gan_start,
                      disc=DiscriminatorConfig(channels=disc_channels),
                      train_only=tuple(p.strip() for p in train_only.split(",") if p.strip()))
    try:
        train(cfg, log=lambda s: out_console.print(s, highlight=False))
    except TrainingSetupError as e:
        raise UserError(str(e)) from None


@train.command("levels")
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
@device_option()
@precision_option()
def train_levels(tokenizer, out, sizes, refine, target_bits, refine_base, seed, device, precision):
    """Cluster the tokenizer's codebook into smaller levels and learn each level's prior.

    \b
    Example: simnet train levels --tokenizer runs/tokenizer/best.safetensors --out codec/weights/levels.safetensors
    """
    from simnet.training.levels import make_levels

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
                target_bits=targets, refine_base=refine_base, device=device, precision=precision)


@train.command("recovery")
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
@click.option("--video", is_flag=True,
              help="Train the spatio-temporal model on token streams of the training clips (split by clip: "
                   "akiyo, foreman and carphone are held out), each frame with the one before it.")
@device_option()
@precision_option()
def train_recovery(out, steps, decay_start, batch, lr, layers, width, max_minutes, init, seed, threads,
                   code_vectors, vector_weight, video, weights, device, precision):
    """Train the recovery transformer on token grids of the training split (never Kodak).

    \b
    Example: nohup simnet train recovery --out runs/recovery --max-minutes 120 &
    """
    from codec.zoo import load_codec
    from simnet.training.transformer import RecoveryTrainConfig, train
    from recovery.transformer import TransformerConfig

    from ..training.recovery_data import training_grids, validation_grids

    _check_training_data()
    if width % 8:
        raise UserError(f"--width {width}: must be a multiple of 8 (the attention heads)")
    codec = load_codec(weights, precision, device)
    log = lambda s: out_console.print(s, highlight=False)
    previous = None
    if video:
        from ..training.video_data import HELD_OUT_CLIPS, TRAINING_CLIPS, clip_streams, frame_pairs, level_pairs

        base, cache = codec.base_level, Path("runs/cache")
        grids, train_prev = level_pairs(codec, *frame_pairs(clip_streams(codec, TRAINING_CLIPS, base, cache, log=log), base))
        val, val_prev = level_pairs(codec, *frame_pairs(clip_streams(codec, HELD_OUT_CLIPS, base, cache, count=60, log=log),
                                                        base, every=3))
        previous = (train_prev, val_prev)
    else:
        grids = training_grids(codec, log=log)
        val = validation_grids(codec)
    if init is not None and not init.is_file():
        raise UserError(f"--init {init}: no such weights file")
    cfg = RecoveryTrainConfig(out=str(out), steps=steps, decay_start=decay_start, batch=batch, lr=lr,
                              max_minutes=max_minutes, seed=seed, init=str(init) if init else None,
                              threads=threads, vector_weight=vector_weight, device=device,
                              precision=precision, model=TransformerConfig(
                                  n_layer=layers, n_embd=width,
                                  code_dim=codec.codebook(codec.level_sizes[-1]).shape[1] if code_vectors else 0,
                                  local_features=code_vectors, temporal=video))
    info = {"codec_checksum": codec.checksum}
    if video:
        info.update(training_clips=list(TRAINING_CLIPS), held_out_clips=list(HELD_OUT_CLIPS))
    train(cfg, grids, val, log=log, extra_info=info,
          codebooks={k: codec.codebook(k) for k in codec.level_sizes}, previous=previous)


@train.command("conceal")
@click.option("--out", type=Path, default=Path("runs/conceal"), show_default=True,
              help="Run folder; resumes from OUT/last.pt if present.")
@click.option("--steps", type=click.IntRange(min=1), default=3000, show_default=True)
@click.option("--decay-start", type=click.IntRange(min=0), default=2000, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--crop", type=click.IntRange(min=32), default=128, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--fill", default="neighbour", show_default=True,
              help="The recovery method whose fills the decoder learns to conceal (none, neighbour or "
                   "transformer).")
@click.option("--train-levels", default="", metavar="K[,K...]",
              help="Train on grids of these codebook levels only (default: every level, the largest half "
                   "the time).")
@click.option("--lost-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Pixels of lost tokens count 1 + this many times in the pixel losses.")
@click.option("--max-ratio", type=click.FloatRange(0.05, 0.95), default=0.6, show_default=True,
              help="Training masks lose a share of tokens drawn uniformly up to this.")
@click.option("--max-minutes", type=float, default=0, help="Stop (resumably) after this long.")
@click.option("--init", type=Path, default=None, help="Start from these concealment weights.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="torch threads (1 when another job shares the two cores).")
@weights_option
@device_option()
@precision_option()
def train_conceal(out, steps, decay_start, batch, crop, lr, fill, train_levels, lost_weight, max_ratio, max_minutes, init, seed,
                  threads, weights, device, precision):
    """Train the concealing decoder: the tokenizer's decoder, told which tokens were lost, learns to
    render them from their surroundings (encoder and codebooks frozen; never Kodak).

    \b
    Example: nohup simnet train conceal --out runs/conceal --max-minutes 120 --threads 1 &
    """
    from codec.levels import load_levels
    from simnet.training.conceal import ConcealTrainConfig, train
    from simnet.training.tokenizer import TrainingSetupError
    from codec.zoo import LEVELS_FILE, TOKENIZER_FILE, weights_dir
    from recovery import RECOVERIES, RecoveryError, get_method

    _check_training_data()
    if crop % 16:
        raise UserError(f"--crop {crop}: must be a multiple of 16")
    if fill not in RECOVERIES:
        raise UserError(f"--fill {fill}: expected one of {', '.join(RECOVERIES)} (a fill that runs per crop)")
    if init is not None and not init.is_file():
        raise UserError(f"--init {init}: no such weights file")
    folder = Path(weights) if weights else weights_dir()
    try:
        method = get_method(fill)
    except RecoveryError as e:
        raise UserError(f"--fill: {e}") from None
    try:
        levels = tuple(int(k) for k in train_levels.split(",") if k.strip())
    except ValueError:
        raise UserError(f"--train-levels {train_levels}: expected codebook sizes such as 1024 or 256,1024") from None
    codebooks = load_levels(folder / LEVELS_FILE)
    if unknown := sorted(set(levels) - set(codebooks)):
        raise UserError(f"--train-levels: no level {unknown[0]} in {folder / LEVELS_FILE} "
                        f"(it has {', '.join(map(str, sorted(codebooks)))})")
    if fill == "transformer":
        try:
            for k in levels or codebooks:
                method.check_codebook(k, codebooks[k].codebook)
        except RecoveryError:
            raise UserError(f"--fill transformer: the shipped transformer was trained for another codec than "
                            f"{folder}'s; train one for it first (simnet train recovery --weights {folder})") from None
    cfg = ConcealTrainConfig(out=str(out), tokenizer=str(folder / TOKENIZER_FILE), levels=str(folder / LEVELS_FILE),
                             train_levels=levels, steps=steps, decay_start=decay_start, batch=batch, crop=crop, lr=lr,
                             lost_weight=lost_weight, max_ratio=max_ratio, max_minutes=max_minutes, init=str(init) if init else None,
                             seed=seed, threads=threads, device=device, precision=precision)
    try:
        train(cfg, method.recover, log=lambda s: out_console.print(s, highlight=False))
    except TrainingSetupError as e:
        raise UserError(str(e)) from None
