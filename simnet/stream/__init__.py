"""A stream of frames: the codecs that turn a frame into units and back (registered by name), the
one sender and the one receiver that every path (run, comparisons, eval, MQTT) uses."""

from . import pillow, vq  # noqa: F401  (each registers its codecs)
from .codec import CODECS, Codec, DecodedFrame, EncodedFrame, FrameStatus, codec_names, make_codec, register_codec
from .receiver import StreamReceiver
from .sender import CoarseLayer, Framing, StreamSender, WireFrame

__all__ = ["CODECS", "CoarseLayer", "Codec", "DecodedFrame", "EncodedFrame", "FrameStatus", "Framing",
           "StreamReceiver", "StreamSender", "WireFrame", "codec_names", "make_codec", "register_codec"]
