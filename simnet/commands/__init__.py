"""The command line's commands, one module per family: `coding` (encode, decode, info),
`evaluation` (eval), `scenarios` (run, sweep, report), `training` (train ...), `mqtt`
(mqtt ...) and `bench`. Each command parses and checks its arguments, then calls the package
that does the work; `common` holds what they share."""
