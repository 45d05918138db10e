"""The experiment: a scenario (`scenario`), the set-up that `run`, `sweep` and `eval` share
(`setup`), the frames it sends (`frames`), running it through the network model (`runner`),
evaluating on a folder of images (`evaluate`, with the classical baselines of `codec.classical` and
pyiqa's optional metrics in `iqa`), many of them at once (`sweep`), and the results JSON
(`results`) and PDF (`report`, its words in `narrative`)."""
