"""simnet: the network model, scenarios, runner, CLI, reports and MQTT transport.

Uses `codec` and `recovery`; neither of them uses simnet.
"""

__version__ = "0.1.0"
