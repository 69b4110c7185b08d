"""The bytes of a generation's output video: a function of the generation's id and its inputs.

`output_size` bytes, served at `/_sim/syncso/outputs/{id}.mp4`: an ISO BMFF `ftyp` box, a `free` box
whose payload is a text manifest naming the generation and the SHA-256 and size of each input, then
filler: 64 KiB blocks of shake_256(f"{seed}:{i}"), where seed is the hex SHA-256 of the two boxes.
A smaller `output_size` cuts the boxes short. So the output of a generation given other inputs differs
everywhere, and a job fed this output can be traced back to the generation (and its inputs) that made it.

Manifest, one line each (an input whose bytes the simulator never saw, a URL it did not fetch, gives
the SHA-256 of its URL instead):

    genq-sim sync.so generation <id>
    video sha256=<hex> bytes=<n>
    audio url-sha256=<hex>
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator, Sequence

from simulators.media import MediaInput

OUTPUT_CHUNK_BYTES = 64 * 1024
# A minimal ISO BMFF `ftyp` box (24 bytes: size, "ftyp", major brand, minor version, two compatible brands).
FTYP_BOX = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp42"
Inputs = Sequence[tuple[str, MediaInput]]


def manifest(generation_id: str, inputs: Inputs) -> bytes:
    """The text the output's `free` box carries."""
    lines = [f"genq-sim sync.so generation {generation_id}"]
    for field, media in inputs:
        if media.sha256 is not None:
            lines.append(f"{field} sha256={media.sha256} bytes={media.size}")
        elif media.url is not None:
            lines.append(f"{field} url-sha256={hashlib.sha256(media.url.encode()).hexdigest()}")
        else:
            lines.append(f"{field} unseen")
    return ("\n".join(lines) + "\n").encode()


def header(generation_id: str, inputs: Inputs) -> bytes:
    """The `ftyp` box and the `free` box holding the manifest."""
    text = manifest(generation_id, inputs)
    return FTYP_BOX + struct.pack(">I", 8 + len(text)) + b"free" + text


def output_blocks(generation_id: str, inputs: Inputs, size: int) -> Iterator[bytes]:
    """The output's `size` bytes, in blocks of at most 64 KiB (none empty)."""
    head = header(generation_id, inputs)
    seed = hashlib.sha256(head).hexdigest()
    for start in range(0, min(size, len(head)), OUTPUT_CHUNK_BYTES):
        yield head[start : min(start + OUTPUT_CHUNK_BYTES, size)]
    rest = size - len(head)
    for index, start in enumerate(range(0, max(rest, 0), OUTPUT_CHUNK_BYTES)):
        yield hashlib.shake_256(f"{seed}:{index}".encode()).digest(min(OUTPUT_CHUNK_BYTES, rest - start))


def output_bytes(generation_id: str, inputs: Inputs, size: int) -> bytes:
    """The whole output at once (for tests and small sizes)."""
    return b"".join(output_blocks(generation_id, inputs, size))
