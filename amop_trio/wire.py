"""The public sans-I/O codec: frames, AMOP bodies and JSON payloads of the ws protocol."""

from ._wire.status import Status as Status
from ._wire.status import describe_status as describe_status
from ._wire.ws import DEFAULT_MAX_FRAME_SIZE as DEFAULT_MAX_FRAME_SIZE
from ._wire.ws import EXT_RESPONSE as EXT_RESPONSE
from ._wire.ws import AmopBody as AmopBody
from ._wire.ws import Frame as Frame
from ._wire.ws import HandshakeRequest as HandshakeRequest
from ._wire.ws import HandshakeResponse as HandshakeResponse
from ._wire.ws import PacketType as PacketType
from ._wire.ws import decode_amop_body as decode_amop_body
from ._wire.ws import decode_frame as decode_frame
from ._wire.ws import decode_subtopic as decode_subtopic
from ._wire.ws import encode_amop_body as encode_amop_body
from ._wire.ws import encode_frame as encode_frame
from ._wire.ws import encode_subtopic as encode_subtopic
from ._wire.ws import new_seq as new_seq
