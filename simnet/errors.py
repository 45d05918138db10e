"""The error policy's vocabulary: the exceptions that mean "the user's input is wrong" and are
printed as one line with exit status 2, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (an argument, a file, a combination); one line, exit 2."""


def expected_errors() -> tuple[type, ...]:
    """Every exception type that reports a wrong input. Each names the problem and where (file,
    line, key or option) in its message; anything else reaching the entry point is a bug."""
    from codec.bitstream import BitstreamError
    from codec.checkpoint import CheckpointError
    from codec.colour import ColourError
    from codec.entropy import EntropyError
    from codec.hardware import HardwareError
    from codec.images import ImageError
    from codec.packets import PacketError
    from recovery.base import RecoveryError

    from .experiment.iqa import MetricsUnavailable
    from .experiment.metrics import MetricError
    from .experiment.results import ResultsError
    from .experiment.scenario import ScenarioError
    from .mqtt.transport import MqttError
    from .network.loss_models import LossModelError

    return (UserError, BitstreamError, CheckpointError, EntropyError, ImageError, PacketError,
            RecoveryError, LossModelError, ResultsError, ScenarioError, MqttError, MetricsUnavailable,
            HardwareError, MetricError, ColourError)
