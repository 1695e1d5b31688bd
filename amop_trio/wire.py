"""The public sans-I/O codec: frames, AMOP bodies and JSON payloads of the ws protocol."""

from ._wire.fisco3 import DEFAULT_MAX_FRAME_SIZE as DEFAULT_MAX_FRAME_SIZE
from ._wire.fisco3 import EXT_RESPONSE as EXT_RESPONSE
from ._wire.fisco3 import AmopBody as AmopBody
from ._wire.fisco3 import Frame as Frame
from ._wire.fisco3 import HandshakeRequest as HandshakeRequest
from ._wire.fisco3 import HandshakeResponse as HandshakeResponse
from ._wire.fisco3 import PacketType as PacketType
from ._wire.fisco3 import decode_amop_body as decode_amop_body
from ._wire.fisco3 import decode_frame as decode_frame
from ._wire.fisco3 import decode_subtopic as decode_subtopic
from ._wire.fisco3 import encode_amop_body as encode_amop_body
from ._wire.fisco3 import encode_frame as encode_frame
from ._wire.fisco3 import encode_subtopic as encode_subtopic
from ._wire.fisco3 import new_seq as new_seq
from ._wire.status import Status as Status
from ._wire.status import describe_status as describe_status
