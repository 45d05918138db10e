"""simnet: the network model (`network`), the experiment that runs images through it
(`experiment`), the command line (`cli`, `commands`) and the live MQTT transport (`mqtt`).

Uses `codec` and `recovery`; neither of them uses simnet.
"""

__version__ = "0.1.0"
