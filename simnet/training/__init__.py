"""Training, out of the runtime packages: the shared resumable loop (`loop`), the tokenizer
(`tokenizer`, its adversarial term `discriminator`), the codebook levels (`levels`), the
concealing decoder (`conceal`), and the recovery transformer (`transformer`, its token grids made
with the codec in `recovery_data`). `simnet train ...` runs them."""
